"""D4RL's reference returns (random, expert), the normalisation constants of every D4RL-normalised score in the
suite — once (Fu et al. 2020, ``d4rl/infos.py``; the same values in REFERENCE.md)."""

D4RL_REFERENCE_RETURNS = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}


METADATA_REFERENCES = "minari dataset metadata"  # TaskSpec.extra["references_from"]: read at load time


def resolve_references(spec, dataset_metadata: dict):
    """The task's normalisation references, from the one place the task declares: its own `references`, or —
    for a task with ``extra["references_from"] == METADATA_REFERENCES`` (Minari's remote datasets, whose
    reference scores ship with the data) — the dataset's ``ref_min_score`` / ``ref_max_score``. Returns the
    spec with its references filled (unchanged for every other task)."""
    import dataclasses

    from . import References

    if spec.references is not None or spec.extra.get("references_from") != METADATA_REFERENCES:
        return spec
    lo, hi = dataset_metadata.get("ref_min_score"), dataset_metadata.get("ref_max_score")
    if lo is None or hi is None:
        return spec
    return dataclasses.replace(spec, references=References(float(lo), float(hi), METADATA_REFERENCES))


def d4rl_normalized_score(env_id: str, ret: float) -> float | None:
    """100 * (return - random) / (expert - random) with D4RL's reference returns, or None for other tasks."""
    base = env_id.split("/")[-1].split("-")[0].lower()
    if base not in D4RL_REFERENCE_RETURNS:
        return None
    lo, hi = D4RL_REFERENCE_RETURNS[base]
    return 100.0 * (ret - lo) / (hi - lo)
