"""D4RL's reference returns (random, expert), the normalisation constants of every D4RL-normalised score in the
suite — once (Fu et al. 2020, ``d4rl/infos.py``; the same values in REFERENCE.md)."""

D4RL_REFERENCE_RETURNS = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}


def d4rl_normalized_score(env_id: str, ret: float) -> float | None:
    """100 * (return - random) / (expert - random) with D4RL's reference returns, or None for other tasks."""
    base = env_id.split("/")[-1].split("-")[0].lower()
    if base not in D4RL_REFERENCE_RETURNS:
        return None
    lo, hi = D4RL_REFERENCE_RETURNS[base]
    return 100.0 * (ret - lo) / (hi - lo)
