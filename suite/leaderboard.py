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
from .stats import summarize

PUBLISHED_DIR = Path(__file__).resolve().parent.parent / "leaderboards" / "published"


def latest_per_seed(records: list[RunRecord]) -> dict[tuple[str, str], dict[int, RunRecord]]:
    groups: dict[tuple[str, str], dict[int, RunRecord]] = defaultdict(dict)
    for rec in sorted(records, key=lambda r: r.run_id):
        groups[(rec.method, rec.task)][rec.seed] = rec
    return groups


def table_rows(records: list[RunRecord], metric: str = "final_score") -> list[dict]:
    rows = []
    for (method, task), by_seed in sorted(latest_per_seed(records).items()):
        ok = [r for r in by_seed.values() if r.status == "ok" and getattr(r, metric) is not None]
        other = len(by_seed) - len(ok)
        s = summarize([getattr(r, metric) for r in ok])
        rows.append({
            "method": method, "task": task, "n": s["n"], "mean": s["mean"], "std": s["std"], "iqm": s["iqm"],
            "excluded": other, "steps": sorted({r.steps for r in ok}),
            "wall_time_s": sum(r.wall_time_s for r in ok) / len(ok) if ok else None,
        })
    return rows


def load_published(path: Path | None = None) -> list[dict]:
    """Entries {method, task, score, source} from every JSON file in leaderboards/published/."""
    root = path or PUBLISHED_DIR
    out = []
    for f in sorted(Path(root).glob("*.json")):
        doc = json.loads(f.read_text())
        for e in doc.get("entries", []):
            out.append({**e, "source": doc.get("source", f.stem), "dataset_family": doc.get("dataset_family")})
    return out


def markdown_table(runs_dir: str | Path, metric: str = "final_score", published: bool = True) -> str:
    records = [r for _, r in iter_records(runs_dir)]
    rows = table_rows(records, metric)
    label = {"final_score": "final normalised score", "best_score": "best normalised score (optimistic)"}[metric]
    lines = [
        f"Measured: {label}, mean ± std over seeds (n = seeds with status ok; excluded = diverged/failed/unfinished).",
        "",
        "| method | task | score | n | excluded | steps |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        score = f"{r['mean']:.1f} ± {r['std']:.1f}" if r["n"] else "—"
        lines.append(f"| {r['method']} | {r['task']} | {score} | {r['n']} | {r['excluded']} | "
                     f"{', '.join(map(str, r['steps'])) or '—'} |")
    if published:
        pub = load_published()
        if pub:
            lines += ["", "Published (not measured here; different data — D4RL v2 — never comparable column-for-column):",
                      "", "| method | dataset | score | source |", "|---|---|---|---|"]
            for e in pub:
                sc = f"{e['score']:.1f}" + (f" ± {e['std']:.1f}" if e.get("std") is not None else "")
                lines.append(f"| {e['method']} | {e['task']} | {sc} | {e['source']} |")
    return "\n".join(lines) + "\n"
