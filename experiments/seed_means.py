"""Mean greedy accuracy of union find's eight-seed lever runs at given iterations, from their logs.

A run of the experiment script stops once it reaches 95%, so pass counts say little when every
run ends near the line; the mean at a fixed number of X steps, over the seeds, does. Reads
`experiments/results/union_find_lr1e-3_levels2_hmin1000_<lever>_seed<S>.log` ("default": no lever).

    python experiments/seed_means.py --iters 7 13 --levers default h_targets hp300_recent0.5_minconf0.9
"""
from __future__ import annotations

import argparse
import os
import re

RESULTS = os.path.join(os.path.dirname(__file__), "results")
LINE = re.compile(r"amplification iter +(\d+) steps +(\d+) wall +\d+s acc ([0-9.]+)")


def accuracy_at(path: str, iteration: int) -> float | None:
    """The teacher's greedy accuracy after `iteration` in one log (None: the run stopped before)."""
    for line in re.split(r"[\r\n]", open(path).read()):
        m = LINE.match(line)
        if m and int(m.group(1)) == iteration:
            return float(m.group(3))
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, nargs="+", required=True, help="iterations (0-based; 150 X steps each)")
    ap.add_argument("--levers", nargs="+", required=True, help="the <lever> part of the log names")
    ap.add_argument("--seeds", type=int, default=8)
    a = ap.parse_args()
    for lever in a.levers:
        for it in a.iters:
            name = "" if lever == "default" else lever + "_"
            paths = [os.path.join(RESULTS, f"union_find_lr1e-3_levels2_hmin1000_{name}seed{s}.log") for s in range(a.seeds)]
            missing = [p for p in paths if not os.path.exists(p)]
            if missing:
                raise SystemExit(f"seed_means: no log {missing[0]}")
            acc = [accuracy_at(p, it) for p in paths]
            got = [v for v in acc if v is not None]
            mean = f"{sum(got) / len(got):.1%}" if got else "-"
            print(f"{lever:36s} iter {it:2d}: mean {mean} over {len(got)} seeds ("
                  + " ".join("-" if v is None else f"{v:.3f}" for v in acc) + ")")


if __name__ == "__main__":
    main()
