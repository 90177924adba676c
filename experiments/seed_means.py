"""Mean greedy accuracy of union find's eight-seed lever runs at given iterations, from their logs.

A run of the experiment script stops once it reaches 95%, so pass counts say little when every
run ends near the line; the mean at a fixed number of X steps, over the seeds, does. A run that
stopped before that iteration is read from its `--no-stop` repeat where one exists
(`..._<lever>_nostop_seed<S>.log`), and otherwise counts with its last accuracy (marked "+", at
least 95%), the mean then a lower bound. Reads
`experiments/results/union_find_lr1e-3_levels2_hmin1000_<lever>_seed<S>.log` ("default": no lever).

    python experiments/seed_means.py --iters 7 13 --levers default h_targets hp300_recent0.5_minconf0.9

Each mean comes with its standard error over the seeds, and each lever with its paired difference
from `--against` (default: the default settings) seed by seed, mean and standard error: the seeds
share their test set and X's first weights, so the paired difference leaves out the seed-to-seed
spread that the two means each carry. Last, how many seeds reach 95% by the last `--iters`.

With `--bands FROM`, it also prints, per seed, how well H's confidence finds the wrong targets
over iterations FROM onwards (logs written with `--confidence`): the share of targets that were
wrong, and for the final answer's probability and the whole tree's least sure token, the share
below 0.9 (and 0.99) and the share of all targets that are both below it and wrong (points).
"""
from __future__ import annotations

import argparse
import math
import os
import re
import statistics

RESULTS = os.path.join(os.path.dirname(__file__), "results")
LINE = re.compile(r"amplification iter +(\d+) steps +(\d+) wall +\d+s acc ([0-9.]+)")
TARGETS = re.compile(r"amplification iter +(\d+) .* targets ([0-9.]+)")
# "confidence: <0.5: a right b <0.9: c right d ..." ("-": nothing in the band, so nothing wrong).
BAND = re.compile(r"^ *(tree confidence|confidence): .*<0\.9: ([0-9.]+) right ([0-9.]+|-) <0\.99: ([0-9.]+) right ([0-9.]+|-)")


def accuracies(path: str) -> dict[int, float]:
    """The teacher's greedy accuracy after each iteration in one log, by iteration."""
    return {int(m.group(1)): float(m.group(3))
            for m in (LINE.match(line) for line in re.split(r"[\r\n]", open(path).read())) if m}


def targets(path: str) -> dict[int, float]:
    """The share of the iteration's targets (Amplify(X)'s answers) that were right, by iteration."""
    return {int(m.group(1)): float(m.group(2))
            for m in (TARGETS.match(line) for line in re.split(r"[\r\n]", open(path).read())) if m}


def accuracy_at(path: str, iteration: int) -> float | None:
    """The teacher's greedy accuracy after `iteration` in one log (None: the run stopped before)."""
    return accuracies(path).get(iteration)


def continued(path: str) -> str:
    """The same run repeated with `--no-stop` (`..._<lever>_nostop_seed<S>.log`; the default
    settings' is `..._nostop_seed<S>.log`): identical up to the stop, then it goes on."""
    head, seed = path.rsplit("_seed", 1)
    return f"{head}_nostop_seed{seed}"


def accuracy_or_last(path: str, iteration: int) -> tuple[float | None, bool]:
    """(accuracy after `iteration`, False), read from the `--no-stop` repeat of the run where it
    stopped earlier and one exists; for a run that stopped earlier because it reached 95%,
    otherwise, (its last accuracy, True): leaving such runs out of a later mean would keep only
    the seeds still below the line, and make a lever that passes early look worse than it is."""
    acc = with_repeat(path).get(iteration)
    if acc is not None:
        return acc, False
    if not re.search(r"^amplification +yes ", open(path).read(), re.M):
        return None, False
    last = accuracies(path)
    return (last[max(last)], True) if last else (None, False)


def with_repeat(path: str, read=accuracies) -> dict[int, float]:
    """The log's accuracies (or another `read` of it) by iteration, with those of its
    `--no-stop` repeat past its stop."""
    rep = continued(path)
    return {**(read(rep) if os.path.exists(rep) else {}), **read(path)}


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error (sample standard deviation / sqrt(n); nan for one value)."""
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return statistics.fmean(values), se


def paired(lever: list[float | None], base: list[float | None]) -> tuple[float, float, int] | None:
    """The mean per-seed difference lever - base, its standard error and the seeds it is over
    (those with both values); None where fewer than two seeds have both."""
    d = [a - b for a, b in zip(lever, base) if a is not None and b is not None]
    return (*mean_se(d), len(d)) if len(d) > 1 else None


def first_reach(path: str, until: int, goal: float = 0.95) -> int | None:
    """The first iteration <= `until` whose accuracy is at least `goal`, from the log or its
    `--no-stop` repeat (None: not by then)."""
    acc = with_repeat(path)
    return next((it for it in sorted(acc) if it <= until and acc[it] >= goal), None)


def log_paths(lever: str, seeds: list[int]) -> list[str]:
    name = "" if lever == "default" else lever + "_"
    paths = [os.path.join(RESULTS, f"union_find_lr1e-3_levels2_hmin1000_{name}seed{s}.log") for s in seeds]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise SystemExit(f"seed_means: no log {missing[0]}")
    return paths


def confidence_bands(path: str, start: int) -> dict[str, float] | None:
    """Mean over iterations >= start of: targets wrong, and per measure the share below 0.9 and
    the share below 0.9 and wrong, all as fractions of every target (None: no such iteration, or
    a log written without `--confidence`, which would otherwise read as "nothing flagged")."""
    sums = {"wrong": 0.0} | {f"{k}_{x}{cut}": 0.0 for k in ("answer", "tree") for cut in ("", "99") for x in ("flagged", "wrong")}
    it, n, seen = -1, 0, 0
    for line in re.split(r"[\r\n]", open(path).read()):
        m = TARGETS.match(line)
        if m:
            it = int(m.group(1))
            if it >= start:
                n += 1
                sums["wrong"] += 1 - float(m.group(2))
            continue
        m = BAND.match(line)
        if m and it >= start:
            seen += 1
            key = "tree" if m.group(1).startswith("tree") else "answer"
            for cut, group in (("", 2), ("99", 4)):
                flagged = float(m.group(group))
                right = 1.0 if m.group(group + 1) == "-" else float(m.group(group + 1))
                sums[f"{key}_flagged{cut}"] += flagged
                sums[f"{key}_wrong{cut}"] += flagged * (1 - right)
    return {k: v / n for k, v in sums.items()} if n and seen else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, nargs="+", required=True, help="iterations (0-based; 150 X steps each)")
    ap.add_argument("--levers", nargs="+", required=True, help="the <lever> part of the log names")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(8)), help="which seeds (default 0-7)")
    ap.add_argument("--against", default="default", help="the lever each other lever is paired with, seed by seed")
    ap.add_argument("--bands", type=int, metavar="FROM", help="also print confidence bands from this iteration on")
    ap.add_argument("--targets", action="store_true", help="also print the mean share of right targets at --iters")
    a = ap.parse_args()
    base = {it: [accuracy_or_last(p, it) for p in log_paths(a.against, a.seeds)] for it in a.iters}
    for lever in a.levers:
        paths = log_paths(lever, a.seeds)
        for it in a.iters:
            acc = [accuracy_or_last(p, it) for p in paths]
            got = [v for v, _ in acc if v is not None]
            carried = any(c for _, c in acc)
            if got:
                m, se = mean_se(got)
                mean = ("at least " if carried else "") + f"{m:.1%}" + ("" if math.isnan(se) else f" +- {100 * se:.1f}")
            else:
                mean = "-"
            vs = ""
            if lever != a.against:
                d = paired([v for v, _ in acc], [v for v, _ in base[it]])
                rough = carried or any(c for _, c in base[it])  # a run stopped at 95%: its value is a bound
                vs = "; vs %s: %s" % (a.against, "-" if d is None else f"{100 * d[0]:+.1f} +- {100 * d[1]:.1f} points over {d[2]}"
                                      + (" (runs stopped at 95% in it: a bound)" if rough else ""))
            print(f"{lever:36s} iter {it:2d}: mean {mean} over {len(got)} seeds ("
                  + " ".join("-" if v is None else f"{v:.3f}" + ("+" if c else "") for v, c in acc) + ")" + vs)
        if a.targets:
            for it in a.iters:
                got = [t[it] for t in (with_repeat(p, targets) for p in paths) if it in t]
                m, se = mean_se(got) if got else (float("nan"), float("nan"))
                print(f"{lever:36s} iter {it:2d}: targets right {m:.1%}" + ("" if math.isnan(se) else f" +- {100 * se:.1f}")
                      + f" over {len(got)} seeds")
        last = max(a.iters)
        reach = [first_reach(p, last) for p in paths]
        print(f"{lever:36s} 95% by iter {last}: {sum(r is not None for r in reach)} of {len(paths)} seeds ("
              + " ".join("-" if r is None else str(r) for r in reach) + ")")
        if a.bands is not None:
            for s, p in zip(a.seeds, paths):
                b = confidence_bands(p, a.bands)
                if b is None:
                    print(f"{lever:36s} seed {s}: no confidence lines from iteration {a.bands} on")
                    continue
                print(f"{lever:36s} seed {s}: targets wrong {b['wrong']:.1%}; " + "; ".join(
                    f"below {cut}: " + ", ".join(f"{k} {b[f'{k}_flagged{c}']:.1%} ({100 * b[f'{k}_wrong{c}']:.1f} points wrong)"
                                                 for k in ("answer", "tree"))
                    for cut, c in (("0.9", ""), ("0.99", "99"))))


if __name__ == "__main__":
    main()
