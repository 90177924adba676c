"""`amplification study summary | figures | sync-mlflow`: study-level tables, figures and tracking,
all read from the per-iteration metrics.json files (the source of truth).

    summary      results/summary.csv   one row per (task, method, seed): final accuracy and its
                                       95% interval on the test set; steps, training examples and
                                       H calls to reach 95%; wall time
                 results/metrics.csv   one row per iteration, every metric flattened
                 results/summary.json  means over seeds per task and method (DVC metrics)
                 results/curves/<task>.csv  mean accuracy per iteration and method (DVC plots)
    figures      four PNGs (matplotlib, Agg) in --out
    sync-mlflow  re-log every metrics.json into MLflow, idempotently
"""
from __future__ import annotations

import json
import math
import os
import sys

HEADLINE = "accuracy/teacher/greedy"  # the reported accuracy: the teacher X, greedy decoding
TARGET = 0.95  # "to reach 95%"
ID_COLUMNS = ["task", "method", "seed", "iteration", "config"]
PARAM_COLUMNS = ["size", "steps", "examples", "h_calls"]
METHOD_STYLE = {"amplification": ("tab:blue", "-"), "supervised": ("tab:orange", "--")}


# ---- reading --------------------------------------------------------------------------------------
def load_records(cfg: dict) -> list[dict]:
    from ..tracking import iter_records

    return [rec for _, rec in iter_records(cfg)]


def flatten(record: dict) -> dict:
    row = {k: record.get(k) for k in ID_COLUMNS}
    params = record.get("params") or {}
    row.update({k: params.get(k) for k in PARAM_COLUMNS})
    row.update(record.get("metrics") or {})
    return row


def metrics_frame(records: list[dict]):
    import pandas as pd

    df = pd.DataFrame([flatten(r) for r in records])
    if df.empty:
        return df
    metric_cols = sorted(c for c in df.columns if c not in ID_COLUMNS + PARAM_COLUMNS)
    df = df[ID_COLUMNS + PARAM_COLUMNS + metric_cols]
    return df.sort_values(["task", "method", "seed", "iteration"], kind="stable").reset_index(drop=True)


def _col(df, name, fallback=None):
    """A column as floats, or NaN when absent (supervised runs have no H' metrics, etc.)."""
    import numpy as np

    if name in df.columns:
        return df[name].astype(float)
    if fallback is not None and fallback in df.columns:
        return df[fallback].astype(float)
    return df["iteration"].astype(float) * np.nan


# ---- tables ---------------------------------------------------------------------------------------
def accuracy_interval(accuracy: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of an accuracy measured on n test questions: how far the test set
    alone lets the true accuracy lie (1,024 questions: about +-1.3 points near 95%)."""
    from scipy.stats import binomtest

    ci = binomtest(int(round(accuracy * n)), n).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def run_summary(df, test_questions: int | None = None):
    """One row per (task, method, seed) from the per-iteration frame; with `test_questions` (the
    test set's size) also the 95% interval of the final accuracy."""
    import pandas as pd

    pct = int(round(TARGET * 100))
    rows = []
    for (task, method, seed), g in df.groupby(["task", "method", "seed"], sort=False):
        g = g.sort_values("iteration")
        acc = _col(g, HEADLINE)
        steps = _col(g, "steps/cumulative", "steps")
        examples = _col(g, "examples/cumulative", "examples")
        hcalls = _col(g, "h_calls/cumulative", "h_calls")
        reached = (acc >= TARGET).to_numpy().nonzero()[0]
        first = reached[0] if len(reached) else None
        at = lambda s: float(s.iloc[first]) if first is not None else math.nan  # noqa: E731
        last = lambda s: float(s.iloc[-1])  # noqa: E731
        lo, hi = accuracy_interval(last(acc), test_questions) if test_questions else (math.nan, math.nan)
        rows.append({
            "task": task, "method": method, "seed": int(seed), "config": g["config"].iloc[-1],
            "iterations": len(g), "final_iteration": int(g["iteration"].iloc[-1]),
            "final_size": last(_col(g, "size")),
            "final_accuracy": last(acc),
            "final_accuracy_ci_low": lo, "final_accuracy_ci_high": hi,
            "final_accuracy_sampled": last(_col(g, "accuracy/teacher/sampled")),
            "final_student_accuracy": last(_col(g, "accuracy/student/greedy")),
            "final_targets_accuracy": last(_col(g, "accuracy/targets")),
            f"steps_to_{pct}": at(steps), f"examples_to_{pct}": at(examples), f"h_calls_to_{pct}": at(hcalls),
            "steps": last(steps), "examples": last(examples), "h_calls": last(hcalls),
            "wall_time": last(_col(g, "wall_time/cumulative")),
        })
    return pd.DataFrame(rows)


def _num(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 6)


def summary_json(summary) -> dict:
    """Means over seeds, {task: {method: {...}}}: what `dvc metrics show/diff` compares."""
    out: dict = {}
    # (a mean of per-seed intervals is no interval: they stay in summary.csv)
    keys = [c for c in summary.columns if c not in ("task", "method", "seed", "config", "final_iteration")
            and not c.startswith("final_accuracy_ci")]
    for (task, method), g in summary.groupby(["task", "method"], sort=False):
        d = {k: _num(g[k].astype(float).mean()) for k in keys}
        d["final_accuracy_min"] = _num(g["final_accuracy"].astype(float).min())
        d["seeds"] = len(g)
        # the *_to_95 means are over the seeds that reached 95%; this says how many did
        d[f"seeds_reached_{int(round(TARGET * 100))}"] = int(g[f"steps_to_{int(round(TARGET * 100))}"].notna().sum())
        out.setdefault(task, {})[method] = d
    return out


def curves(df, task: str, methods: list[str]):
    """Mean headline accuracy and mean X steps per iteration, one column pair per method."""
    import pandas as pd

    g = df[df["task"] == task]
    out = pd.DataFrame({"iteration": sorted(g["iteration"].unique())})
    for m in methods:
        gm = g[g["method"] == m]
        out[m] = out["iteration"].map(_col(gm, HEADLINE).groupby(gm["iteration"]).mean())
        out[f"{m}_steps"] = out["iteration"].map(_col(gm, "steps/cumulative", "steps").groupby(gm["iteration"]).mean())
    return out


def _atomic(path: str, write) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    write(tmp)
    os.replace(tmp, path)


def write_summary(cfg: dict) -> dict:
    """Write summary.csv, metrics.csv, summary.json and curves/<task>.csv under results_dir."""
    records = load_records(cfg)
    if not records:
        raise FileNotFoundError(f"no metrics.json under {cfg['results_dir']}/ for the configured study "
                                "(run the study first: snakemake --cores all)")
    df = metrics_frame(records)
    summ = run_summary(df, cfg["test_set"]["contexts"] * cfg["test_set"]["questions_per_context"])
    res = cfg["results_dir"]
    out = {
        "summary": os.path.join(res, "summary.csv"),
        "metrics": os.path.join(res, "metrics.csv"),
        "summary_json": os.path.join(res, "summary.json"),
    }
    _atomic(out["metrics"], lambda p: df.to_csv(p, index=False))
    _atomic(out["summary"], lambda p: summ.to_csv(p, index=False))

    def dump_json(p):
        with open(p, "w") as fh:
            json.dump(summary_json(summ), fh, indent=1, sort_keys=True)
            fh.write("\n")

    _atomic(out["summary_json"], dump_json)
    for task in cfg["tasks"]:
        path = os.path.join(res, "curves", f"{task}.csv")
        _atomic(path, lambda p, t=task: curves(df, t, list(cfg["methods"])).to_csv(p, index=False))
    return {"records": len(records), "runs": len(summ), **out}


# ---- figures --------------------------------------------------------------------------------------
def _titles() -> dict:
    try:
        from ..tasks import TASKS

        return {name: getattr(cls, "title", name) for name, cls in TASKS.items()}
    except Exception:  # noqa: BLE001 - titles are cosmetic
        return {}


def _grid(plt, tasks: list[str], title: str):
    n = max(1, len(tasks))
    cols = 3 if n > 2 else n
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows + 0.8), squeeze=False,
                             layout="constrained")
    fig.suptitle(title, fontsize=10 if cols == 1 else 12)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.axis("off")
    names = _titles()
    from matplotlib.ticker import MaxNLocator

    for ax, task in zip(flat, tasks):
        ax.set_title(names.get(task, task))
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, flat[:n], flat[n:]


def _band(ax, g, x, y, label, color, ls):
    """Mean line and min-max band over seeds, aligned by iteration."""
    if g.empty:
        return False
    xs, ys = _col(g, x, None), _col(g, y)
    frame = g[["iteration"]].assign(x=xs.to_numpy(), y=ys.to_numpy()).dropna()
    if frame.empty:
        return False
    a = frame.groupby("iteration").agg(x=("x", "mean"), mean=("y", "mean"), lo=("y", "min"), hi=("y", "max"))
    ax.plot(a["x"], a["mean"], ls, color=color, label=label, marker=".", ms=4)
    if (a["hi"] > a["lo"]).any():
        ax.fill_between(a["x"], a["lo"], a["hi"], color=color, alpha=0.2, lw=0)
    return True


def _legend(fig, spare, axes):
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if not handles:
        return
    if spare:
        spare[0].legend(handles, labels, loc="center", frameon=False)
    else:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), frameon=False)


def write_figures(cfg: dict, out_dir: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = load_records(cfg)
    if not records:
        raise FileNotFoundError(f"no metrics.json under {cfg['results_dir']}/ for the configured study")
    df = metrics_frame(records)
    tasks, methods = list(cfg["tasks"]), list(cfg["methods"])
    written = []

    def save(fig, name):
        path = os.path.join(out_dir, f"{name}.png")
        _atomic(path, lambda p: fig.savefig(p, format="png", dpi=110))
        plt.close(fig)
        written.append(path)

    # 1. accuracy against X training steps, amplification vs supervised
    fig, axes, spare = _grid(plt, tasks, f"Teacher accuracy (greedy) vs X training steps\n[config {cfg['name']}]")
    for ax, task in zip(axes, tasks):
        for m in methods:
            color, ls = METHOD_STYLE.get(m, (None, "-"))
            _band(ax, df[(df.task == task) & (df.method == m)], "steps/cumulative", HEADLINE, m, color, ls)
        ax.set_xlabel("X training steps")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
    _legend(fig, spare, axes)
    save(fig, "accuracy_vs_steps")

    # 2. accuracy by difficulty class per iteration
    prefix = f"{HEADLINE}/class/"
    fig, axes, spare = _grid(plt, tasks, "Teacher accuracy (greedy) by difficulty class\n(amplification solid, supervised dashed)")
    cmap = plt.get_cmap("viridis")
    for ax, task in zip(axes, tasks):
        g = df[df.task == task]
        classes = [c[len(prefix):] for c in g.columns if c.startswith(prefix) and g[c].notna().any()]
        for k, cls in enumerate(classes):
            color = cmap(k / max(1, len(classes) - 1))
            for m in methods:
                ls = "-" if m == "amplification" else "--"
                gm = g[g.method == m]
                _band(ax, gm, "iteration", prefix + cls, cls if m == methods[0] else None, color, ls)
        ax.set_xlabel("iteration")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        if classes:
            ax.legend(fontsize=6, ncol=2, loc="lower right")
    save(fig, "accuracy_by_class")

    # 3. teacher (X) accuracy vs the accuracy of its targets
    fig, axes, spare = _grid(plt, tasks, "Teacher X vs its training targets (amplification)")
    for ax, task in zip(axes, tasks):
        m = "amplification" if "amplification" in methods else methods[0]
        g = df[(df.task == task) & (df.method == m)]
        _band(ax, g, "iteration", HEADLINE, "teacher X (greedy)", "tab:blue", "-")
        _band(ax, g, "iteration", "accuracy/teacher/sampled", "teacher X (sampled)", "tab:cyan", ":")
        _band(ax, g, "iteration", "accuracy/targets", f"targets ({'Amplify(X)' if m == 'amplification' else m})",
              "tab:red", "--")
        ax.set_xlabel("iteration")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
    _legend(fig, spare, axes)
    save(fig, "teacher_vs_targets")

    # 4. cumulative H calls vs accuracy
    fig, axes, spare = _grid(plt, tasks, "Human effort: cumulative H calls vs teacher accuracy\n(amplification)")
    for ax, task in zip(axes, tasks):
        g = df[(df.task == task) & (df.method == "amplification")]
        if not _band(ax, g, "h_calls/cumulative", HEADLINE, "amplification", "tab:blue", "-"):
            ax.text(0.5, 0.5, "no amplification runs", ha="center", va="center", transform=ax.transAxes)
        ax.axhline(TARGET, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("cumulative H calls")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
    _legend(fig, spare, axes)
    save(fig, "hcalls_vs_accuracy")
    return written


# ---- commands -------------------------------------------------------------------------------------
def _config(args) -> dict:
    from ..config import load_config

    return load_config(args.config)


def cmd_summary(args) -> int:
    out = write_summary(_config(args))
    print(f"summary: {out['records']} iterations of {out['runs']} runs -> {out['summary']}, {out['metrics']}",
          file=sys.stderr)
    return 0


def cmd_figures(args) -> int:
    for p in write_figures(_config(args), args.out):
        print(f"wrote {p}", file=sys.stderr)
    return 0


def cmd_sync(args) -> int:
    from ..stages import write_json
    from ..tracking import sync, tracking_uri

    cfg = _config(args)
    select = {k: getattr(args, k) for k in ("task", "method", "seed") if getattr(args, k) is not None}
    for k, known in (("task", cfg["tasks"]), ("method", cfg["methods"]), ("seed", cfg["seeds"])):
        if k in select and select[k] not in known:
            raise ValueError(f"--{k} {select[k]} is not in the config's {k}s: {', '.join(map(str, known))}")
    ok, failed = sync(cfg, **select)
    print(f"sync-mlflow: logged {ok} iterations to {tracking_uri(cfg)}; {failed} failed", file=sys.stderr)
    if args.marker:  # the track rule's output: what was logged, where
        write_json(args.marker, {"logged": ok, "failed": failed, "tracking_uri": tracking_uri(cfg), **select})
    return 1 if failed and not args.warn_only else 0


def add_parser(sub) -> None:
    p = sub.add_parser("study", help="study tables, figures and MLflow re-sync from the metrics.json files")
    s = p.add_subparsers(dest="study_command", required=True, metavar="ACTION")
    for name, func, help_ in [
        ("summary", cmd_summary, "summary.csv (per run), metrics.csv (per iteration), summary.json, curves"),
        ("figures", cmd_figures, "the study's figures as PNG"),
        ("sync-mlflow", cmd_sync, "re-log every metrics.json into MLflow (idempotent)"),
    ]:
        q = s.add_parser(name, help=help_)
        q.add_argument("--config", required=True, help="config YAML (e.g. config/config.yaml)")
        if name == "figures":
            q.add_argument("--out", required=True, help="output folder of the PNG files")
        if name == "sync-mlflow":
            q.add_argument("--task", help="only this task's runs")
            q.add_argument("--method", choices=["amplification", "supervised"], help="only this method's runs")
            q.add_argument("--seed", type=int, help="only this seed's runs")
            q.add_argument("--marker", help="write a JSON record of what was logged here (the track rule's output)")
            q.add_argument("--warn-only", action="store_true",
                           help="exit 0 even when some iterations could not be logged (they stay in metrics.json)")
        q.set_defaults(func=func)
