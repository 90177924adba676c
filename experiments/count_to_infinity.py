"""Wrong answers that count up by one per iteration ("count to infinity"), in a finished run.

Two decompositions add 1 to X's answer about another element, and nothing the oracle says can
contradict a wrong belief that is consistent with itself:

- shortest path, `distance a b` with b unreachable: H answers 1 + X's `distance c b` for the step
  c that X names. If X believes d(c, b) = k, the target is k + 1; X learns it, and the next
  iteration's target is one more again, until it passes max_dist and reads `inf` (as in
  distance-vector routing). `--task shortest_path` prints, per iteration, how many of these
  questions get the target `inf` and how the wrong finite targets spread over 0..max_dist.
- union find, `depth x`: H answers 1 + X's `depth y` for y = X's `parent x`. If X names a child
  of x as its parent, and that child's parent as x, each depth is one more than the other's, and
  both rise every iteration (up to the largest depth token). `--task union_find` prints, per
  iteration, how far above the truth the targets of `depth x` are, for x at `--depth`.

A band of wrong values that moves up by one per iteration is the count. X's held-out greedy
accuracy on the class (Dinf, or D<depth>) is printed beside it.

`--sources I` (shortest path) recomputes iteration I's targets, Amplify^{H'}(X_{I-1}) as the study
did, on `--contexts` of its sampled contexts, and sorts each wrong finite target of an unreachable
pair by the step X named: b itself, another vertex that is no out-neighbour of a, or a true
out-neighbour (whose distance X then got wrong). Only the first two are caught by the
`check_step` deviation.

    python experiments/count_to_infinity.py --task shortest_path --seed 0
    python experiments/count_to_infinity.py --task union_find --depth 2
    python experiments/count_to_infinity.py --config my-study.yaml --results /elsewhere/results --seed 1
    python experiments/count_to_infinity.py --results /elsewhere/results --seed 1 --sources 2
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np


def _iterations(cfg: dict, task_name: str, seed: int):
    """(task, [(i, sample arrays, targets [C, Q], held-out metrics or {})]) of a finished run."""
    from amplification import paths, stages

    task = stages.Ctx(cfg, task_name, "amplification", seed, 0).task
    run = paths.run_dir(cfg.get("results_dir", "results"), task_name, "amplification", seed)
    if not os.path.exists(os.path.join(run, "iter0", "targets.npz")):
        raise FileNotFoundError(f"no {task_name} amplification targets for seed {seed} under {run}")
    out, i = [], 0
    while os.path.exists(os.path.join(run, f"iter{i}", "targets.npz")):
        d = os.path.join(run, f"iter{i}")
        metrics = {}
        if os.path.exists(os.path.join(d, "metrics.json")):
            with open(os.path.join(d, "metrics.json")) as f:
                metrics = json.load(f)["metrics"]
        out.append((i, np.load(os.path.join(d, "sample.npz")), np.load(os.path.join(d, "targets.npz"))["targets"][..., 0], metrics))
        i += 1
    return task, out


def unreachable_targets(cfg: dict, seed: int) -> list[dict]:
    """Shortest path, one row per iteration: size, the number n of `distance` questions with b
    unreachable, the share whose target is `inf`, counts of each wrong finite target 0..max_dist,
    the other targets (unknown or malformed), and X's held-out accuracy on class Dinf."""
    task, its = _iterations(cfg, "shortest_path", seed)
    rows = []
    for i, s, t, metrics in its:
        q, a = s["questions"], s["answers"][..., 0]
        tg = t[(q[..., 0] == task.kD) & (a == task.inf)]
        finite = tg[(tg >= task.dist0) & (tg < task.inf)] - task.dist0
        n_inf = int((tg == task.inf).sum())
        rows.append({"iter": i, "size": int(s["size"]), "n": len(tg), "inf": n_inf / max(len(tg), 1),
                     "finite": np.bincount(finite, minlength=task.max_dist + 1).tolist(),
                     "other": len(tg) - len(finite) - n_inf, "x": metrics.get("accuracy/teacher/greedy/class/Dinf")})
    return rows


def depth_overestimates(cfg: dict, seed: int, depth: int) -> list[dict]:
    """Union find, one row per iteration: size, the number n of `depth x` questions with x at the
    given true depth, counts of targets 0, 1, 2, ... above the truth (index 0: right), the other
    targets (below the truth, or unknown), and X's held-out accuracy on class D<depth>."""
    task, its = _iterations(cfg, "union_find", seed)
    rows = []
    for i, s, t, metrics in its:
        q, a = s["questions"], s["answers"][..., 0]
        sel = (q[..., 0] == task.kD) & (a == task.depth0 + depth)
        over = t[sel] - a[sel]
        ok = (t[sel] >= task.depth0) & (t[sel] <= task.depth0 + task.max_depth) & (over >= 0)
        rows.append({"iter": i, "size": int(s["size"]), "n": int(sel.sum()),
                     "over": np.bincount(over[ok], minlength=task.max_depth - depth + 1).tolist(),
                     "other": int((~ok).sum()), "x": metrics.get(f"accuracy/teacher/greedy/class/D{depth}")})
    return rows


def count_sources(cfg: dict, seed: int, i: int, contexts: int) -> dict:
    """Shortest path, iteration i: {wrong finite target value: {source: count}} over the
    unreachable pairs' `distance` questions of the first `contexts` sampled contexts, the source
    being the step X named in the transcript ("b itself", "no edge of a", "an edge of a")."""
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from hprime_vs_h import iteration, with_hprime

    c, s, x, hp = iteration(cfg, "shortest_path", seed, i)
    n = min(contexts, len(s.questions))
    return sort_sources(c.task, s, with_hprime(c, s, x, hp, seed, i, n), n)


def sort_sources(task, s, tr, n: int) -> dict:
    """count_sources on given transcripts tr of the first n contexts of batch s, questions in order."""
    Q = s.questions.shape[1]
    qs, truth = s.questions[:n].reshape(n * Q, -1), s.answers[:n].reshape(n * Q, -1)[:, 0]
    tg = tr.answers[:, 0]
    wrong = (qs[:, 0] == task.kD) & (truth == task.inf) & (tg >= task.dist0) & (tg < task.inf)
    L = task.length
    out: dict = {}
    for k in np.where(wrong)[0]:
        steps = [r for r in range(tr.subquestions.shape[1]) if tr.subquestions[k, r, 0] == task.kS]
        if not steps:
            src = "no step asked"
        else:
            step = tr.subanswers[k, steps[0], :L]
            a, b = qs[k, 1 : 1 + L], qs[k, 1 + L : 1 + 2 * L]
            edge = task.answer(s.db, np.array([k // Q]), task.question(task.kE, a, step)[None])[0, 0] == task.yes
            src = "b itself" if np.array_equal(step, b) else ("an edge of a" if edge else "no edge of a")
        d = out.setdefault(int(tg[k] - task.dist0), {})
        d[src] = d.get(src, 0) + 1
    return dict(sorted(out.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=["shortest_path", "union_find"], default="shortest_path")
    ap.add_argument("--depth", type=int, default=2, help="union find: the true depth of x (>= 1)")
    ap.add_argument("--config", default="config/config.yaml", help="the study's config (its task parameters)")
    ap.add_argument("--results", help="the study's results folder (default: the config's results_dir)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sources", type=int, metavar="I", help="shortest path: where iteration I's wrong finite targets come from")
    ap.add_argument("--contexts", type=int, default=1024, help="with --sources: how many sampled contexts")
    args = ap.parse_args()
    if args.depth < 1:
        ap.error(f"--depth must be >= 1, got {args.depth}")
    if args.sources is not None and args.task != "shortest_path":
        ap.error("--sources is for --task shortest_path")
    from amplification.config import load_config

    try:
        cfg = load_config(args.config, overrides={"results_dir": args.results} if args.results else None)
        if args.sources is not None:
            r = count_sources(cfg, args.seed, args.sources, args.contexts)
            print(f"iteration {args.sources}: wrong finite targets of unreachable pairs, by value and by the step X named")
            for d, srcs in r.items():
                print(f"{d:3d}: " + ", ".join(f"{k} {v}" for k, v in sorted(srcs.items())))
            return
        if args.task == "shortest_path":
            rows, key, cls = unreachable_targets(cfg, args.seed), "finite", "Dinf"
            print("targets of `distance a b` with b unreachable: share `inf`, then counts of each wrong finite target")
        else:
            rows, key, cls = depth_overestimates(cfg, args.seed, args.depth), "over", f"D{args.depth}"
            print(f"targets of `depth x` with x at depth {args.depth}: counts by how far above the truth (+0: right)")
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}")
    k = len(rows[0][key])
    head = " ".join(f"{d:>5d}" for d in range(k)) if key == "finite" else " ".join(f"{'+' + str(d):>5s}" for d in range(k))
    print(f"{'iter':>4s} {'size':>4s} {'n':>5s} " + (f"{'inf':>6s} " if key == "finite" else "") + head + f" {'other':>5s} {'X ' + cls:>7s}")
    for r in rows:
        x = "-" if r["x"] is None else f"{r['x']:.2f}"
        print(f"{r['iter']:4d} {r['size']:4d} {r['n']:5d} " + (f"{r['inf']:6.3f} " if key == "finite" else "")
              + " ".join(f"{c:5d}" for c in r[key]) + f" {r['other']:5d} {x:>7s}")


if __name__ == "__main__":
    main()
