"""Throughput of every registered task at paper scale and full size (a script, not a test).

For each task: the time to generate one batch of 50 contexts with one question per fact and
their ground truth, the questions per second that gives, the questions per second of
Amplify^H with the oracle answering every subquestion (`amplify_h_batch`), and the mean number
of subquestions H asks per top-level question beside the figure the spec measured on the
original generators.

    .venv/bin/python bench/bench_tasks.py --repeats 5
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import numpy as np  # noqa: E402

from amplification.human import amplify_h_batch  # noqa: E402
from amplification.tasks import TASKS, make_task  # noqa: E402

# mean subquestions per top-level question on the original generators (spec, last table)
SPEC_SUBQUESTIONS = {"permutation": 2.5, "assignments": 4.5, "wildcard": 2.0, "shortest_path": 4.7, "union_find": 4.5}
CONTEXTS = 50


def bench_task(name: str, repeats: int, seed: int) -> dict:
    task = make_task(name)
    size = task.max_size
    gen_times, h_times, asked, nq = [], [], [], 0
    for r in range(repeats):
        t0 = time.perf_counter()
        b = task.generate(CONTEXTS, size, seed + r)  # one question per (padded) fact
        gen_times.append(time.perf_counter() - t0)
        nq = b.questions.shape[0] * b.questions.shape[1]
        t0 = time.perf_counter()
        tr = amplify_h_batch(task, b, rng=seed + r)
        h_times.append(time.perf_counter() - t0)
        asked.append(tr.asked.mean())
    g, h = float(np.median(gen_times)), float(np.median(h_times))
    return {
        "task": name,
        "questions/batch": nq,
        "batch ms": 1e3 * g,
        "gen q/s": nq / g,
        "H q/s": nq / h,
        "subq": float(np.mean(asked)),
        "spec subq": SPEC_SUBQUESTIONS.get(name, float("nan")),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="batches per task; times are medians")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tasks", nargs="*", default=None, help="task names (default: all registered)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    names = args.tasks or list(TASKS)
    header = f"{'task':15s} {'q/batch':>8s} {'batch ms':>9s} {'gen q/s':>10s} {'H q/s':>9s} {'subq':>6s} {'spec':>5s}"
    print(f"paper scale, full size, {CONTEXTS} contexts per batch, median of {args.repeats}")
    print(header)
    print("-" * len(header))
    for name in names:
        try:
            r = bench_task(name, args.repeats, args.seed)
        except Exception as e:  # a task under construction must not hide the others
            print(f"{name:15s} failed: {type(e).__name__}: {e}")
            continue
        print(f"{r['task']:15s} {r['questions/batch']:8d} {r['batch ms']:9.2f} {r['gen q/s']:10.0f} "
              f"{r['H q/s']:9.0f} {r['subq']:6.2f} {r['spec subq']:5.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
