"""How far does a shortcut get on sequential assignments, without the table join?

X plateaus on assignments at the same accuracy at every depth (about 87% at 8 variables and
2 values). This script measures the shortcut "answer the most common output among the context's
table facts" on the ground truth, by depth class, next to an exact solver that reads only the facts
(a check that every answer is determined by them). Where X's curve sits on the shortcut's numbers,
X has not learned the join (x's operands -> their values -> the table fact for that pair).

    python experiments/assignments_shortcut.py --size 8
    python experiments/assignments_shortcut.py --size 4 --values 4
"""
from __future__ import annotations

import argparse
import collections

import numpy as np

from amplification.tasks import make_task


def measure(size: int, values: int | None, contexts: int, seed: int = 0) -> dict:
    """{'solver': accuracy of the exact solver, class name: shortcut accuracy}."""
    t = make_task("assignments", nchars=8, length=1, num_values=values)
    b = t.generate(contexts, size, seed)
    ok = tot = 0
    hit, n = collections.Counter(), collections.Counter()
    for i in range(len(b)):
        leaves, comp, table = {}, {}, {}
        for f in b.facts[i][b.fact_mask[i]]:
            if t.is_value(f[0]):
                table[(f[0], f[1])] = f[2]
            elif t.is_value(f[1]):
                leaves[f[0]] = f[1]
            else:
                comp[f[0]] = (f[1], f[2])

        def value(x):
            if x in leaves:
                return leaves[x]
            y, z = comp[x]
            return table[(value(y), value(z))]

        majority = collections.Counter(table.values()).most_common(1)[0][0]
        for q, a, c in zip(b.questions[i], b.answers[i], b.classes[i]):
            tot += 1
            ok += value(q[1]) == a[0]
            n[c] += 1
            hit[c] += majority == a[0]
    return {"solver": ok / tot, **{t.class_names[c]: hit[c] / n[c] for c in sorted(n)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=8, help="variables per context")
    ap.add_argument("--values", type=int, default=None, help="num_values (default: the task's, 2 at 8 names)")
    ap.add_argument("--contexts", type=int, default=2000)
    args = ap.parse_args()
    m = measure(args.size, args.values, args.contexts)
    print(f"size {args.size}, values {args.values or 'default'}: exact solver {m.pop('solver'):.3f}; "
          "majority-table-output shortcut by class: " + " ".join(f"{k}={v:.3f}" for k, v in m.items()))


if __name__ == "__main__":
    main()
