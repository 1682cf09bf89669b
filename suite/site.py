"""`suite site --runs leaderboards/runs --out site/`: a static leaderboard (HTML, no server), generated only
from run records, published-number files and committed studies.

Pages: ``index.html`` (families and plots), one page per benchmark family (the suite's own datasets, D4RL,
generative), each with a sortable table (mean ± std, IQM, bootstrap 95% CI, seeds, updates) whose every value
links to the page of its run records (config, provenance, evaluation curve, the raw JSON); measured and
published numbers are in separate tables, never one column. Plots (learning curves, aggregate IQM, studies)
are embedded as PNGs copied beside the pages.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

from .leaderboard import (
    aggregate_rows,
    latest_per_seed,
    load_published,
    seed_count,
    seeds_legend,
    table_rows,
    task_label,
    trusted,
)
from .results import iter_records
from .stats import MIN_SEEDS

STUDIES = Path(__file__).resolve().parent.parent / "leaderboards" / "studies"

SORT_JS = """
function sortTable(th) {
  const table = th.closest('table'), idx = Array.from(th.parentNode.children).indexOf(th);
  const body = table.tBodies[0], rows = Array.from(body.rows);
  const asc = th.dataset.order !== 'asc';
  const key = r => { const c = r.cells[idx]; const v = c.dataset.value !== undefined ? c.dataset.value : c.textContent;
                     const n = parseFloat(v); return isNaN(n) ? v : n; };
  rows.sort((a, b) => { const x = key(a), y = key(b); return (x > y ? 1 : x < y ? -1 : 0) * (asc ? 1 : -1); });
  rows.forEach(r => body.appendChild(r));
  table.querySelectorAll('th').forEach(h => delete h.dataset.order);
  th.dataset.order = asc ? 'asc' : 'desc';
}
"""
CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}table{border-collapse:collapse;"
       "margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px;font-size:13px}th{background:#eee;cursor:pointer}"
       "th[data-order=asc]::after{content:' ▲'}th[data-order=desc]::after{content:' ▼'}img{max-width:100%}"
       "pre{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:12px}.pub{background:#fff8e6}")

FAMILIES = {"suite": "The suite's own datasets (rebuilt from shipped behaviour policies)",
            "d4rl": "D4RL (imported hdf5 files; evaluated on Gymnasium v4)",
            "generative": "Generative: sampling and restoration tasks"}


def family(task_id: str, kind: str) -> str:
    if kind in ("generation", "restoration"):
        return "generative"
    return "d4rl" if task_id.startswith("d4rl/") else "suite"


def _page(title: str, body: str, depth: int = 0) -> str:
    up = "../" * depth
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style><script>{SORT_JS}</script></head><body>"
            f"<p><a href='{up}index.html'>leaderboard home</a></p><h1>{html.escape(title)}</h1>{body}</body></html>")


def _slug(s: str) -> str:
    """A file name for a task id or label (ids: '/' becomes '_'; a label's data variant: 'task_data_34a07493')."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", s.replace(" [data ", "_data_")).strip("_")


def _record_page(out: Path, method: str, task: str, runs: list) -> str:
    """Write the page of one (method, task) cell's records; return its path relative to ``out``."""
    rel = Path("records") / method / f"{_slug(task)}.html"
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    parts = []
    for path, rec in runs:
        raw = out / "records" / method / _slug(task) / f"{rec.run_id}.json"
        raw.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, raw)
        curve = "".join(f"<tr><td>{p.step}</td><td>{p.mean_return:.2f}</td><td>"
                        f"{'' if p.normalized_score is None else f'{p.normalized_score:.2f}'}</td></tr>"
                        for p in rec.curve)
        metrics = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.6g}</td></tr>" for k, v in sorted(rec.metrics.items()))
        parts.append(
            f"<h2 id='{html.escape(rec.run_id)}'>seed {rec.seed} · {html.escape(rec.run_id)} · {rec.status}</h2>"
            f"<p>final score {rec.final_score} · steps {rec.steps} · <a href='{_slug(task)}/{rec.run_id}.json'>"
            f"record JSON</a></p>"
            + (f"<table><thead><tr><th>update</th><th>mean return</th><th>normalised</th></tr></thead>"
               f"<tbody>{curve}</tbody></table>" if curve else "")
            + (f"<table><tbody>{metrics}</tbody></table>" if metrics else "")
            + f"<h3>config</h3><pre>{html.escape(json.dumps(rec.config, indent=1, sort_keys=True))}</pre>"
            "<h3>provenance</h3><pre class='provenance'>"
            f"{html.escape(json.dumps(rec.provenance, indent=1, sort_keys=True))}</pre>")
    (out / rel).write_text(_page(f"{method} on {task}", "".join(parts), depth=2))
    return rel.as_posix()


def build_site(runs_dir: str | Path, out: str | Path, seeds_wanted: int | None = None) -> Path:
    """The site's pages under `out`; returns index.html. With `seeds_wanted` (a grid's seeds per cell), a cell
    with fewer finished seeds shows its count as `n/wanted`, as `suite table --seeds-wanted` does."""
    from .plots import plot_runs

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # a site built inside the runs folder holds copies of the records: they are not runs of their own
    pairs = [(p, r) for p, r in iter_records(runs_dir) if not p.resolve().is_relative_to(out.resolve())]
    records = [r for _, r in pairs]
    paths = {id(r): p for p, r in pairs}
    cells = latest_per_seed(records)
    rows = table_rows(records)
    published = load_published()
    plots = plot_runs(runs_dir, out / "plots")
    pages = {}
    for fam, title in FAMILIES.items():
        fam_rows = [r for r in rows if family(r["task"], _kind(cells, r)) == fam]
        body = [f"<p>{len(fam_rows)} measured cells. Click a column header to sort; every value links to its "
                f"run records. † fewer than {MIN_SEEDS} seeds.{seeds_legend(seeds_wanted)}</p>",
                "<table id='measured'><thead><tr>" + "".join(
                    f"<th onclick='sortTable(this)'>{h}</th>" for h in
                    ("method", "task", "metric", "mean", "± std", "IQM", "95% CI", "seeds", "updates")) +
                "</tr></thead><tbody>"]
        for r in fam_rows:
            runs = [(paths[id(rec)], rec) for rec in cells[(r["method"], r["task"], r["data"])].values()]
            link = _record_page(out, r["method"], task_label(r), runs)
            fmt = ".1f" if r["metric"] in ("final_score", "best_score") else ".4g"
            mean = "—" if not r["n"] else f"{r['mean']:{fmt}}"
            ci = f"[{r['ci_low']:{fmt}}, {r['ci_high']:{fmt}}]" if r["n"] > 1 and r["ci_low"] == r["ci_low"] else "—"
            body.append(
                f"<tr><td>{html.escape(r['method'])}</td><td>{html.escape(task_label(r))}</td><td>{r['metric']}</td>"
                f"<td data-value='{r['mean'] if r['n'] else ''}'><a class='value' href='{link}'>{mean}</a></td>"
                f"<td>{r['std']:{fmt}}</td><td>{r['iqm']:{fmt}}</td><td>{ci}</td>"
                f"<td>{seed_count(r['n'], seeds_wanted)}</td>"
                f"<td>{', '.join(map(str, r['steps']))}</td></tr>")
        body.append("</tbody></table>")
        if fam != "generative":
            agg = [a for a in aggregate_rows(fam_rows)]
            if agg:
                body.append("<h2>Aggregate IQM over tasks</h2><table><thead><tr><th>method</th><th>datasets</th>"
                            "<th>tasks</th>"
                            "<th>runs</th><th>IQM</th><th>95% CI (stratified bootstrap)</th></tr></thead><tbody>")
                for a in agg:
                    ci = f"[{a['ci_low']:.1f}, {a['ci_high']:.1f}]" if a["ci_low"] == a["ci_low"] else "—"
                    body.append(f"<tr><td>{a['method']}</td><td>{a['group']}</td><td>{a['n_tasks']}</td>"
                                f"<td>{a['n_runs']}</td>"
                                f"<td>{a['iqm']:.1f}</td><td>{ci}</td></tr>")
                body.append("</tbody></table>")
        pub = [e for e in published if (fam == "d4rl" and e.get("dataset_family") == "d4rl")
               or (fam == "generative" and e.get("dataset_family") not in ("d4rl", None))]
        if pub:
            body.append("<h2>Published (not measured here)</h2><table class='pub' id='published'><thead><tr>"
                        "<th onclick='sortTable(this)'>method</th><th onclick='sortTable(this)'>task</th>"
                        "<th onclick='sortTable(this)'>score</th><th>source</th></tr></thead><tbody>")
            for e in pub:
                sc = f"{e['score']:.2f}" + (f" ± {e['std']:.2f}" if e.get("std") is not None else "")
                if e.get("nfe") is not None:
                    sc += f" (NFE {e['nfe']})"
                body.append(f"<tr><td>{html.escape(e['method'])}</td><td>{html.escape(e['task'])}</td>"
                            f"<td data-value='{e['score']}'>{sc}</td><td>{html.escape(e['source'])}</td></tr>")
            body.append("</tbody></table>")
        fam_plots = [p for p in plots if fam != "generative" and any(
            p.name == f"curve_{_slug(r['task'])}.png" for r in fam_rows)]
        if fam == "suite":
            fam_plots += [p for p in plots if p.name == "aggregate_iqm.png"]
        if fam == "generative" and STUDIES.exists():
            (out / "studies").mkdir(exist_ok=True)
            for f in sorted(STUDIES.iterdir()):
                shutil.copyfile(f, out / "studies" / f.name)
                if f.suffix == ".png":
                    body.append(f"<h3>{html.escape(f.stem)}</h3><p><a href='studies/{f.stem}.json'>data</a></p>"
                                f"<img src='studies/{f.name}' alt='{html.escape(f.stem)}'>")
        for p in fam_plots:
            body.append(f"<img src='plots/{p.name}' alt='{p.stem}'>")
        name = f"{fam}.html"
        (out / name).write_text(_page(title, "".join(body)))
        pages[fam] = (name, len(fam_rows))
    items = "".join(f"<li><a href='{n}'>{html.escape(FAMILIES[f])}</a> ({k} cells)</li>" for f, (n, k) in pages.items())
    (out / "index.html").write_text(_page("odice-suite leaderboard", f"<ul>{items}</ul><p>Generated from "
                                          f"{len(records)} run records in {html.escape(str(runs_dir))}.</p>"))
    return out / "index.html"


def _kind(cells, row) -> str:
    rec = next(iter(cells[(row["method"], row["task"], row["data"])].values()))
    return rec.task_spec.get("kind", "")


__all__ = ["build_site", "family", "trusted"]
