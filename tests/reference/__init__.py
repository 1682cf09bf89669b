"""Re-creations of other projects' code, written as they run: the official O-DICE update (`odice_official`),
CORL's TD3+BC, IQL and CQL (`corl`), CleanRL's SAC (`cleanrl_sac`). They are test oracles (one update of a
suite agent against the reference's, from the same weights) and the contenders `suite bench agents` times;
they are not part of the installed packages."""
