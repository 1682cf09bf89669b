"""Leaderboard tables from run records (and, beside them, published numbers with citations).

Every number in a generated table is computed from run records: per (method, task) the latest record of
each seed with status ``ok`` is used (reruns of a seed replace earlier ones); diverged, failed and
unfinished runs are counted in a separate column, never averaged. Published numbers (leaderboards/published/)
are shown in their own columns, labelled with their source, and never mixed with measured ones.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from .results import RunRecord, iter_records
from .stats import MIN_SEEDS, aggregate_iqm, summarize

PUBLISHED_DIR = Path(__file__).resolve().parent.parent / "leaderboards" / "published"
# The final evaluation alone can mislead where evaluations swing from one to the next (O-DICE on
# hopper-medium-v0 jumps between ~6 and ~77): tables also show each run's mean over its last TAIL_EVALS
# evaluations, averaged over seeds.
TAIL_EVALS = 5


def dataset_checksum(rec: RunRecord) -> str:
    return str(rec.provenance.get("dataset_checksum") or "")


def data_variants(records: list[RunRecord]) -> dict[str, set[str]]:
    """Per task, the dataset checksums its records were trained on. More than one means the task's data was
    not the same everywhere: a suite dataset is rebuilt on each machine, and its build is bit-identical on one
    machine class but not across CPUs (the policy's float32 forward pass takes CPU-specific kernels, and one
    flipped bit changes the rest of an episode: measured 2026-12-07, hopper-medium-v1 is 34a07493… on Intel
    Xeon (AVX-512) and 17a8e7de… in the records made on AMD EPYC)."""
    out: dict[str, set[str]] = defaultdict(set)
    for rec in records:
        out[rec.task].add(dataset_checksum(rec))
    return out


def latest_per_seed(records: list[RunRecord]) -> dict[tuple[str, str, str], dict[int, RunRecord]]:
    """Per cell (method, task, data), the latest record of each seed. `data` is "" where the task's records
    all used one dataset and that dataset is the task's canonical build (or the task has none), else the first
    8 hex digits of the dataset checksum: runs on different data are separate cells, never pooled or compared,
    and a cell whose only data is not the canonical build says so too (it is not the task everyone else runs)."""
    from .data.store import task_canonical_checksum

    variants = data_variants(records)
    canonical = {task: task_canonical_checksum(task) for task in variants}
    groups: dict[tuple[str, str, str], dict[int, RunRecord]] = defaultdict(dict)
    for rec in sorted(records, key=lambda r: r.run_id):
        checksum, want = dataset_checksum(rec), canonical[rec.task]
        labelled = len(variants[rec.task]) > 1 or (want is not None and checksum != want)
        groups[(rec.method, rec.task, checksum[:8] if labelled else "")][rec.seed] = rec
    return groups


def data_label(data: str) -> str:
    """How tables, the site and plots mark a cell's data variant ("" where its task has one dataset)."""
    return f" [data {data}…]" if data else ""


def seed_count(n: int, wanted: int | None = None) -> str:
    """A cell's seed count as the table and the site show it: `n`, `n/wanted` where a grid asks for more
    seeds than have finished, and † where there are too few for a spread to mean much."""
    count = f"{n}/{wanted}" if wanted and n < wanted else str(n)
    return count + ("†" if 0 < n < MIN_SEEDS else "")


def seeds_legend(wanted: int | None) -> str:
    """The sentence that explains `seed_count`'s n/wanted (empty without a wanted count)."""
    return f" n/{wanted}: a cell with fewer than the {wanted} seeds the grid asks for (unfinished)." if wanted else ""


def task_label(row: dict) -> str:
    """A row's task as tables show it: the id, and its data variant where the task has several."""
    return row["task"] + data_label(row.get("data", ""))


def headline(rec: RunRecord, metric: str = "final_score") -> float | None:
    """The number a table shows for a run: its normalised score (RL), or its task's headline metric
    (generation tasks name it in `extra["metric"]`, e.g. the exact MMD² to the target mixture)."""
    value = getattr(rec, metric)
    if value is None:
        name = rec.task_spec.get("extra", {}).get("metric")
        value = rec.metrics.get(name) if name else None
    return value


def tail_score(rec: RunRecord, k: int = TAIL_EVALS) -> float | None:
    """Mean normalised score of a run's last `k` evaluations (fewer if it has fewer); None without scores."""
    scores = [p.normalized_score for p in rec.curve[-k:] if p.normalized_score is not None]
    return sum(scores) / len(scores) if scores else None


def trusted(rec: RunRecord) -> bool:
    """A record whose digest (when it has one) matches its content and whose scores match its curve; any
    other is counted as excluded, never averaged."""
    from dataclasses import asdict

    from .results import content_digest
    from .validate import score_problems

    if rec.digest is not None and content_digest(asdict(rec)) != rec.digest:
        return False
    return not score_problems(rec)


def table_rows(records: list[RunRecord], metric: str = "final_score") -> list[dict]:
    rows = []
    for (method, task, data), by_seed in sorted(latest_per_seed(records).items()):
        ok = [r for r in by_seed.values() if r.status == "ok" and headline(r, metric) is not None and trusted(r)]
        other = len(by_seed) - len(ok)
        s = summarize([headline(r, metric) for r in ok])
        tails = [tail_score(r) for r in ok]
        tail = summarize(tails) if ok and None not in tails else None  # generation tasks have no scores
        first = next(iter(by_seed.values()))
        rows.append(
            {
                "method": method,
                "task": task,
                "data": data,
                "n": s["n"],
                "mean": s["mean"],
                "std": s["std"],
                "iqm": s["iqm"],
                "ci_low": s["ci_low"],
                "ci_high": s["ci_high"],
                "scores": [headline(r, metric) for r in ok],
                "tail_mean": tail["mean"] if tail else None,
                "tail_std": tail["std"] if tail else None,
                "metric": first.task_spec.get("extra", {}).get("metric") or metric,
                "excluded": other,
                "steps": sorted({r.steps for r in ok}),
                "wall_time_s": sum(r.wall_time_s for r in ok) / len(ok) if ok else None,
            }
        )
    return rows


def dataset_group(task_id: str) -> str:
    """Which datasets a task's scores may be pooled with in an aggregate: 'd4rl', 'minari', or the suite's own
    datasets of one version ('suite v0', 'suite v1': different behaviour policies, never pooled)."""
    head = task_id.split("/")[0]
    if head in ("d4rl", "minari"):
        return head
    _, sep, version = task_id.rpartition("-v")
    return f"suite v{version}" if sep and version.isdigit() else "suite"


def aggregate_rows(rows: list[dict]) -> list[dict]:
    """Per (method, dataset group), the aggregate IQM over the RL tasks it has scores on (normalised scores
    only); tasks of different groups (`dataset_group`: D4RL, suite v0, suite v1, ...) are never pooled. A task
    whose records ran on several data variants counts once, with its canonical data; where none of its variants
    is the canonical build it is left out (pooling two variants would count the task twice)."""
    from .data.store import task_canonical_checksum

    by_method: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in rows:
        if r.get("data") and r["data"] != (task_canonical_checksum(r["task"]) or "")[:8]:
            continue
        if r["metric"] in ("final_score", "best_score") and r["scores"]:
            by_method.setdefault((r["method"], dataset_group(r["task"])), {})[task_label(r)] = r["scores"]
    return [{"method": m, "group": g, **aggregate_iqm(t)}
            for (m, g), t in sorted(by_method.items(), key=lambda kv: (kv[0][1], kv[0][0])) if len(t) > 1]


def separations(rows: list[dict], method: str) -> list[dict]:
    """Per task, `method` against every other method measured there: 'higher' / 'lower' when the two 95%
    bootstrap CIs of the mean do not overlap, 'overlap' otherwise, 'too few seeds' below `MIN_SEEDS`."""
    by_task: dict[str, dict[str, dict]] = {}
    for r in rows:  # a task's data variants are separate tasks here: runs on different data are never compared
        by_task.setdefault(task_label(r), {})[r["method"]] = r
    out = []
    for task, cells in by_task.items():
        if method not in cells:
            continue
        a = cells[method]
        for other, b in sorted(cells.items()):
            if other == method:
                continue
            if min(a["n"], b["n"]) < MIN_SEEDS or a["ci_low"] != a["ci_low"] or b["ci_low"] != b["ci_low"]:
                verdict = "too few seeds"
            elif a["ci_low"] > b["ci_high"]:
                verdict = "higher"
            elif a["ci_high"] < b["ci_low"]:
                verdict = "lower"
            else:
                verdict = "overlap"
            out.append({"task": task, "method": method, "other": other, "verdict": verdict,
                        "ci": (a["ci_low"], a["ci_high"]), "other_ci": (b["ci_low"], b["ci_high"]),
                        "mean": a["mean"], "other_mean": b["mean"]})
    return out


def load_published(path: Path | None = None) -> list[dict]:
    """Entries {method, task, score, source} from every JSON file in leaderboards/published/."""
    root = path or PUBLISHED_DIR
    out = []
    for f in sorted(Path(root).glob("*.json")):
        doc = json.loads(f.read_text())
        for e in doc.get("entries", []):
            out.append({**e, "source": doc.get("source", f.stem), "dataset_family": doc.get("dataset_family")})
    return out


def task_family_name(task_id: str) -> str:
    """The dataset name shared across families and versions: 'd4rl/hopper-medium-v2', 'hopper-medium-v0' and
    'minari/mujoco/hopper/medium-v0' -> 'hopper-medium'."""
    parts = task_id.split("/")
    name = "-".join(parts[-2:]) if len(parts) >= 3 else parts[-1]
    stem, _, version = name.rpartition("-v")
    return stem if stem and version.isdigit() else name


def related_published(entries: list[dict], measured_tasks: list[str]) -> list[dict]:
    """Published entries for the datasets of the measured tasks (any family), or all when nothing is measured:
    a table of suite hopper-medium runs shows D4RL's hopper-medium numbers below it, not every D4RL task."""
    if not measured_tasks:
        return entries
    names = {task_family_name(t) for t in measured_tasks}
    return [e for e in entries if task_family_name(e["task"]) in names]


def task_filter(patterns: str | None):
    """A predicate on task ids: comma-separated ids or shell patterns (None: every task)."""
    import fnmatch

    pats = [p.strip() for p in (patterns or "").split(",") if p.strip()]
    return lambda task: not pats or any(fnmatch.fnmatchcase(task, p) for p in pats)


def markdown_table(runs_dir: str | Path, metric: str = "final_score", published: bool = True,
                   tasks: str | None = None, versus: str | None = None, seeds_wanted: int | None = None) -> str:
    """The Markdown leaderboard of the records under `runs_dir` (of the tasks matching `tasks`, see
    `task_filter`: never mix dataset versions in one table, since the aggregate pools tasks). With
    `seeds_wanted` (a grid's seeds per cell), a cell with fewer finished seeds shows its count as `n/wanted`."""
    keep = task_filter(tasks)
    records = [r for _, r in iter_records(runs_dir) if keep(r.task)]
    rows = table_rows(records, metric)
    label = {"final_score": "final normalised score", "best_score": "best normalised score (optimistic)"}[metric]
    lines = [
        f"Measured: {label} for RL tasks, the task's headline metric for generation tasks; mean ± std over seeds "
        f"(n = seeds with status ok; excluded = diverged/failed/unfinished). last {TAIL_EVALS} evals: each run's "
        f"mean normalised score over its last {TAIL_EVALS} evaluations, mean ± std over seeds (RL tasks).",
        "",
        f"IQM: interquartile mean over seeds; 95% CI: percentile bootstrap of the mean (scipy, seed 0); values from "
        f"fewer than {MIN_SEEDS} seeds are marked † (their spread and CI say little)." + seeds_legend(seeds_wanted),
        "",
        f"| method | task | metric | value | IQM | 95% CI | last {TAIL_EVALS} evals | n | excluded | steps |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def mean_std(mean, std, n, fmt):
        if not n or mean is None:
            return "—"
        return f"{mean:{fmt}} ± {std:{fmt}}" if n > 1 else f"{mean:{fmt}} (one seed)"  # one seed: no spread

    for r in rows:
        fmt = ".1f" if r["metric"] in ("final_score", "best_score") else ".4g"
        score = mean_std(r["mean"], r["std"], r["n"], fmt)
        tail = mean_std(r["tail_mean"], r["tail_std"], r["n"], ".1f")
        ci = f"[{r['ci_low']:{fmt}}, {r['ci_high']:{fmt}}]" if r["n"] > 1 and r["ci_low"] == r["ci_low"] else "—"
        iq = f"{r['iqm']:{fmt}}" if r["n"] else "—"
        lines.append(
            f"| {r['method']} | {task_label(r)} | {r['metric']} | {score} | {iq} | {ci} | {tail} | "
            f"{seed_count(r['n'], seeds_wanted)} | "
            f"{r['excluded']} | {', '.join(map(str, r['steps'])) or '—'} |"
        )
    if any(r["data"] for r in rows):
        lines += ["", "[data …]: this task's records were trained on datasets with different checksums, or on one "
                  "that is not the task's canonical build (suite/data/canonical.json; a suite dataset is rebuilt on "
                  "each machine, and unpinned builds differed across CPUs), shown as separate cells and never pooled "
                  "or compared."]
    agg = aggregate_rows(rows)
    if agg:
        lines += ["", "Aggregate over tasks (normalised scores): IQM of every (task, seed) run pooled, 95% CI by "
                  "a stratified bootstrap (runs resampled within each task; rliable's protocol); tasks of "
                  "different dataset families or versions are never pooled, and a task run on several data "
                  "variants counts once, with its canonical data (runs on other data only: left out).", "",
                  "| method | datasets | tasks | runs | IQM | 95% CI |", "|---|---|---|---|---|---|"]
        for a in agg:
            ci = f"[{a['ci_low']:.1f}, {a['ci_high']:.1f}]" if a["ci_low"] == a["ci_low"] else "—"
            lines.append(f"| {a['method']} | {a['group']} | {a['n_tasks']} | {a['n_runs']} | {a['iqm']:.1f} | {ci} |")
    if versus:
        sep = separations(rows, versus)
        lines += ["", f"{versus} against each method, per task: higher / lower where the two 95% bootstrap CIs of "
                  f"the mean do not overlap, overlap otherwise (cells with fewer than {MIN_SEEDS} seeds: too few "
                  "seeds).", "", f"| task | {versus} | vs | other | verdict |", "|---|---|---|---|---|"]
        for e in sep:
            def cell(mean, ci):
                return f"{mean:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]" if ci[0] == ci[0] else f"{mean:.1f}"
            lines.append(f"| {e['task']} | {cell(e['mean'], e['ci'])} | {e['other']} | "
                         f"{cell(e['other_mean'], e['other_ci'])} | {e['verdict']} |")
        if sep:
            counts = {v: sum(e["verdict"] == v for e in sep) for v in ("higher", "lower", "overlap", "too few seeds")}
            lines += ["", f"{versus}: " + ", ".join(f"{k} in {n}" for k, n in counts.items() if n) + " comparisons."]
    if published:
        pub = related_published(load_published(), [r["task"] for r in rows])
        if pub:
            lines += [
                "",
                "Published (not measured here; different data — D4RL v2 — never comparable column-for-column):",
                "",
                "| method | dataset | score | source |",
                "|---|---|---|---|",
            ]
            for e in pub:
                sc = f"{e['score']:.1f}" + (f" ± {e['std']:.1f}" if e.get("std") is not None else "")
                lines.append(f"| {e['method']} | {e['task']} | {sc} | {e['source']} |")
    return "\n".join(lines) + "\n"
