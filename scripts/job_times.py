"""Mean and total job duration per rule, from a Snakemake log (where a study's time goes).

Snakemake stamps each job's start and each "Finished jobid" with a time to the second; this pairs
them up by job id. Usage, after `snakemake --cores all`:

    python scripts/job_times.py                          # the newest log in .snakemake/log/
    python scripts/job_times.py .snakemake/log/<file>.snakemake.log
"""
from __future__ import annotations

import argparse
import collections
import datetime
import glob
import os
import re
import sys


def job_times(lines) -> dict[str, list[float]]:
    """Rule -> durations (s) of its finished jobs."""
    ts = rule = None
    start, rule_of, out = {}, {}, collections.defaultdict(list)
    for ln in lines:
        if m := re.match(r"^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]$", ln):
            ts = datetime.datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
        elif m := re.match(r"^(?:local)?rule (\w+):", ln):
            rule = m.group(1)
        elif (m := re.match(r"^\s+jobid: (\d+)", ln)) and rule:
            start[m.group(1)], rule_of[m.group(1)] = ts, rule
        elif (m := re.match(r"^Finished jobid: (\d+)", ln)) and m.group(1) in start:
            out[rule_of[m.group(1)]].append((ts - start[m.group(1)]).total_seconds())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log", nargs="?", help="a Snakemake log (default: the newest in .snakemake/log/)")
    args = ap.parse_args()
    path = args.log or max(glob.glob(".snakemake/log/*.snakemake.log"), key=os.path.getmtime, default=None)
    if not path or not os.path.exists(path):
        print(f"job_times: error: no Snakemake log {'at ' + path if path else 'in .snakemake/log/'}", file=sys.stderr)
        return 2
    with open(path) as fh:
        times = job_times(fh.read().splitlines())
    print(f"{path}\n{'rule':14s} {'jobs':>5s} {'mean_s':>7s} {'total_s':>8s}")
    for rule, d in sorted(times.items()):
        print(f"{rule:14s} {len(d):5d} {sum(d) / len(d):7.2f} {sum(d):8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
