"""`python -m suite study mrs`: the MRS claim in our setting — how many times fewer network calls does MR
Sampler need than IR-SDE's posterior sampling and reverse SDE for the same restoration quality?

For every restoration task it runs each MRS variant (ODE / SDE x order 1 / 2, data form, uniform log-SNR)
at each NFE of ``--nfes`` and both baselines at each NFE of ``--baseline-nfes`` (100 is theirs), on the
same trained model (one per task, cached by content hash) and the same test images and seeds. Baselines
here are right at every step count (``generative.samplers.mrs``), unlike the official ones, so the ratio is
against a fair baseline. Metrics: PSNR and SSIM (scikit-image) against the clean images.

``speedup`` in the summary, per task and baseline: the target is the baseline's PSNR at 100 NFE (minus
``--tolerance`` dB); the fewest NFE at which the baseline reaches it divided by the fewest at which any MRS
variant does. ``posterior-official`` is the official baseline (one training index per strided step), the one
the paper compared against.

Writes ``mrs_study.json`` (rows as they finish; ``--resume`` skips rows already there), ``mrs_study.png``
(PSNR and SSIM against NFE, one column per task) and ``mrs_grid_<task>.png`` (degraded / MRS at the smallest
NFE / posterior at 100 / clean) into ``--out``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .results import write_json_atomic

DEFAULT_TASKS = ("mnist-denoise50-v0", "mnist-inpaint-v0", "mnist-sr4-v0")
DEFAULT_NFES = (5, 10, 20)
DEFAULT_BASELINE_NFES = (10, 20, 50, 100)
MRS_VARIANTS = {"mrs-ode-1": {"solver": "ode", "order": 1}, "mrs-ode-2": {"solver": "ode", "order": 2},
                "mrs-sde-1": {"solver": "sde", "order": 1}, "mrs-sde-2": {"solver": "sde", "order": 2}}
# name -> (method, overrides): our baselines (right at every step count) and the official posterior baseline
BASELINES = {"posterior": ("ir-posterior", {}), "reverse-sde": ("ir-sde", {}),
             "posterior-official": ("ir-posterior", {"official_unit_step": True})}


def _run(method: str, task: str, overrides: dict, seed: int, out: Path):
    from .runner import RunOptions, run

    return run(method, task, RunOptions(seed=seed, out=out, overrides={k: str(v) for k, v in overrides.items()},
                                        progress=False))


def run_study(out: str | Path = "results/mrs", tasks=DEFAULT_TASKS, nfes=DEFAULT_NFES,
              baseline_nfes=DEFAULT_BASELINE_NFES, seeds=(0,), n_test: int = 500, train_steps: int | None = None,
              tolerance: float = 0.1, resume: bool = False, variants=None, log=print) -> dict:
    from .tasks import get_task

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "mrs_study.json"
    rows = json.loads(path.read_text())["rows"] if resume and path.exists() else []
    done = {(r["task"], r["variant"], r["nfe"], r["seed"]) for r in rows}
    common = {"n_test": n_test, **({"train_steps": train_steps} if train_steps else {})}
    for task in tasks:
        spec = get_task(task)
        plan = [(name, "mrs", {**ov, "form": "data"}, n) for name, ov in MRS_VARIANTS.items() for n in nfes]
        plan += [(name, m, ov, n) for name, (m, ov) in BASELINES.items() for n in baseline_nfes]
        if variants:
            plan = [p for p in plan if p[0] in variants]
        for variant, method, ov, nfe in plan:
            for seed in seeds:
                if (spec.id, variant, nfe, seed) in done:
                    continue
                t0 = time.perf_counter()
                rec = _run(method, spec.id, {**common, **ov, "nfe": nfe}, seed, out / "runs")
                m = rec.metrics
                row = {"task": spec.id, "variant": variant, "method": method, "nfe": nfe, "seed": seed,
                       "status": rec.status, "wall_s": time.perf_counter() - t0,
                       **{k: m[k] for k in ("psnr", "ssim", "psnr_degraded", "ssim_degraded",
                                            "sample_wall_time_s", "n_test") if k in m},
                       "grid_png": rec.provenance.get("sample_grid_png")}
                rows.append(row)
                log(json.dumps(row))
                _write(path, rows, tolerance)
    result = _write(path, rows, tolerance)
    plot(result, out / "mrs_study.png")
    grids(result, out)
    return result


def summarise(rows: list[dict], tolerance: float = 0.1) -> dict:
    """Mean over seeds per (task, variant, NFE), and per task the NFE speed-up of the best MRS variant."""
    import statistics

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["status"] == "ok":
            groups.setdefault((r["task"], r["variant"], r["nfe"]), []).append(r)
    table = []
    for (task, variant, nfe), rs in sorted(groups.items()):
        s = {"task": task, "variant": variant, "nfe": nfe, "n_seeds": len(rs)}
        for k in ("psnr", "ssim", "psnr_degraded", "ssim_degraded"):
            vals = [r[k] for r in rs if r.get(k) is not None]
            if vals:
                s[k] = statistics.fmean(vals)
        table.append(s)
    speedups = {}
    for task in sorted({s["task"] for s in table}):
        cells = [s for s in table if s["task"] == task and "psnr" in s]

        def first_nfe(pred, cells=cells):
            hits = sorted((s["nfe"], s["variant"]) for s in cells if pred(s))
            return hits[0] if hits else (None, None)

        for base in BASELINES:
            ref = [s for s in cells if s["variant"] == base and s["nfe"] == 100]
            if not ref:
                continue
            target = ref[0]["psnr"] - tolerance
            base_nfe, _ = first_nfe(lambda s, b=base, t=target: s["variant"] == b and s["psnr"] >= t)
            mrs_nfe, mrs_variant = first_nfe(lambda s, t=target: s["variant"].startswith("mrs") and s["psnr"] >= t)
            speedups.setdefault(task, {})[base] = {
                "target_psnr": target, "tolerance_db": tolerance, "baseline_psnr_at_100": ref[0]["psnr"],
                "baseline_nfe_needed": base_nfe, "mrs_nfe_needed": mrs_nfe, "mrs_variant": mrs_variant,
                "speedup": base_nfe / mrs_nfe if base_nfe and mrs_nfe else None}
    return {"table": table, "speedup": speedups}


def _write(path: Path, rows: list[dict], tolerance: float) -> dict:
    result = {"rows": rows, "summary": summarise(rows, tolerance)}
    write_json_atomic(path, result, indent=2, allow_nan=True)
    return result


def plot(result: dict, png: str | Path) -> Path:
    from .plots import _plt, save_panels

    plt = _plt()

    table = result["summary"]["table"]
    tasks = sorted({s["task"] for s in table})
    metrics = [m for m in ("psnr", "ssim") if any(m in s for s in table)]
    fig, axes = plt.subplots(len(metrics), max(1, len(tasks)), figsize=(4.3 * max(1, len(tasks)), 3.4 * len(metrics)),
                             squeeze=False)
    for j, task in enumerate(tasks):
        for i, metric in enumerate(metrics):
            ax = axes[i][j]
            variants = sorted({s["variant"] for s in table if s["task"] == task})
            for v in variants:
                pts = sorted((s["nfe"], s[metric]) for s in table if s["task"] == task and s["variant"] == v
                             and metric in s)
                if pts:
                    xs, ys = zip(*pts, strict=True)
                    ax.plot(xs, ys, "-o" if v.startswith("mrs") else "--s", ms=4, label=v)
            deg = [s.get(f"{metric}_degraded") for s in table if s["task"] == task and f"{metric}_degraded" in s]
            if deg:
                ax.axhline(deg[0], color="grey", lw=0.8, ls=":", label="degraded input")
            ax.set_xscale("log")
            ax.set_xlabel("NFE per image")
            ax.set_title(f"{task}: {metric}", fontsize=9)
    return save_panels(fig, axes, png)


def grids(result: dict, out: Path) -> list[Path]:
    """One PNG per task: degraded / MRS (best variant at the smallest NFE) / posterior at 100 / clean."""
    from PIL import Image

    made = []
    for task in sorted({r["task"] for r in result["rows"]}):
        rows = [r for r in result["rows"] if r["task"] == task and r["status"] == "ok" and r.get("grid_png")]
        mrs = sorted((r for r in rows if r["variant"].startswith("mrs")), key=lambda r: (r["nfe"], -r["psnr"]))
        post = [r for r in rows if r["variant"] == "posterior" and r["nfe"] == 100]
        if not mrs or not post:
            continue
        a, b = Image.open(mrs[0]["grid_png"]), Image.open(post[0]["grid_png"])
        h = a.height // 3  # each run grid is degraded / restored / clean
        canvas = Image.new(a.mode, (a.width, 4 * h))
        canvas.paste(a.crop((0, 0, a.width, 2 * h)), (0, 0))  # degraded, MRS
        canvas.paste(b.crop((0, h, b.width, 3 * h)), (0, 2 * h))  # posterior, clean
        p = out / f"mrs_grid_{task}.png"
        canvas.save(p)
        made.append(p)
    return made
