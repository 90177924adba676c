"""Shortest path: what targets do the unreachable pairs get, iteration by iteration?

For `distance a b` with b unreachable from a, the decomposition answers 1 + X's `distance c b`
for the step c that X names. Nothing the oracle says contradicts a finite answer there: if X
believes d(c, b) = k, the target is k + 1, X learns that, and the next iteration's target is one
more again, until it passes max_dist and reads `inf` (distance-vector routing's "count to
infinity"). This script reads a finished run's sampled questions and targets and prints, per
iteration, the targets of the unreachable pairs' distance questions: how many are `inf`, and how
the wrong finite ones spread over 0..max_dist. A band of wrong values that moves up by one per
iteration is the count; X's held-out accuracy on the unreachable class is printed beside it.

    python experiments/shortest_path_unreachable.py --seed 1
    python experiments/shortest_path_unreachable.py --config my-study.yaml --results /elsewhere/results --seed 2
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np


def unreachable_targets(cfg: dict, seed: int) -> list[dict]:
    """One row per finished iteration of the study's shortest path amplification run: size, the
    number of unreachable `distance` questions, the share whose target is `inf`, counts of each
    wrong finite target, and X's held-out greedy accuracy on class Dinf (None if not evaluated)."""
    from amplification import paths, stages

    task = stages.Ctx(cfg, "shortest_path", "amplification", seed, 0).task
    run = paths.run_dir(cfg.get("results_dir", "results"), "shortest_path", "amplification", seed)
    if not os.path.exists(os.path.join(run, "iter0", "targets.npz")):
        raise FileNotFoundError(f"no shortest path amplification targets for seed {seed} under {run}")
    rows, i = [], 0
    while os.path.exists(os.path.join(run, f"iter{i}", "targets.npz")):
        d = os.path.join(run, f"iter{i}")
        s = np.load(os.path.join(d, "sample.npz"))
        t = np.load(os.path.join(d, "targets.npz"))["targets"][..., 0]
        q, a = s["questions"], s["answers"][..., 0]
        sel = (q[..., 0] == task.kD) & (a == task.inf)
        tg = t[sel]
        finite = tg[(tg >= task.dist0) & (tg < task.inf)] - task.dist0
        acc = None
        mpath = os.path.join(d, "metrics.json")
        if os.path.exists(mpath):
            with open(mpath) as f:
                acc = json.load(f)["metrics"].get("accuracy/teacher/greedy/class/Dinf")
        rows.append({"iter": i, "size": int(s["size"]), "n": int(sel.sum()),
                     "inf": float((tg == task.inf).mean()) if len(tg) else float("nan"),
                     "finite": np.bincount(finite, minlength=task.max_dist + 1).tolist(),
                     "other": int(len(tg) - len(finite) - (tg == task.inf).sum()), "x_dinf": acc})
        i += 1
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config/config.yaml", help="the study's config (its task parameters)")
    ap.add_argument("--results", help="the study's results folder (default: the config's results_dir)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from amplification.config import load_config

    try:
        cfg = load_config(args.config, overrides={"results_dir": args.results} if args.results else None)
        rows = unreachable_targets(cfg, args.seed)
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}")
    k = len(rows[0]["finite"]) if rows else 0
    print("targets of `distance a b` questions with b unreachable, by iteration (counts of each wrong finite target)")
    print(f"{'iter':>4s} {'size':>4s} {'n':>5s} {'inf':>6s} " + " ".join(f"{d:>5d}" for d in range(k)) + f" {'other':>5s} {'X Dinf':>6s}")
    for r in rows:
        x = "-" if r["x_dinf"] is None else f"{r['x_dinf']:.2f}"
        print(f"{r['iter']:4d} {r['size']:4d} {r['n']:5d} {r['inf']:6.3f} " + " ".join(f"{c:5d}" for c in r["finite"])
              + f" {r['other']:5d} {x:>6s}")


if __name__ == "__main__":
    main()
