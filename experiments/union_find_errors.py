"""Why are union find's amplification targets wrong? A breakdown of one study iteration.

Recomputes iteration i's targets, Amplify^{H'}(X_{i-1}) on its sampled questions, and sorts every
wrong target of the `parent`, `depth` and `value` questions about variables at depth 1 and 2 by
what went wrong in its transcript:

- parent x: the true parent was not among the candidates (X's guess was an adjacent child, or not
  adjacent at all, and the random neighbour was not the parent either; for an adjacent child: was
  the random neighbour that same child, so that X's guess was the only candidate), or it was, and
  another candidate was chosen (X's depth answers ranked it no deeper than the parent, or H', not
  following H's rule, chose a candidate that X's answers put deeper);
- depth x and value x: H uses X's own `parent x` answer unchecked, so: X's guess was wrong, or it
  was right and X's `depth`/`value` answer about the parent was wrong.

Then, for the `parent` questions about variables at depth 1-3, how many targets name the true
parent for each kind of guess X made (the parent, an adjacent child, no neighbour), split by x's
degree. It tests whether a wrong guess is the most common target of its own question (when X
guesses a child, only a random neighbour that is the parent can correct it), and how often a
right guess is overridden (at iteration 13 of the default study: neither trap holds for wrong
guesses, about half their targets name the parent at degree 2; right guesses are overridden in
15-39% of the degree-2 cases at depths 2-3; README notes).

    python experiments/union_find_errors.py --iter 13
"""
from __future__ import annotations

import argparse
import os
from collections import Counter

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from hprime_vs_h import add_study_args, iteration, study_config, truth_and_classes, with_hprime  # noqa: E402


def breakdown(cfg: dict, seed: int, i: int, contexts: int) -> dict:
    c, s, x, hp = iteration(cfg, "union_find", seed, i)
    if c.sec["amplify"].levels != 1:  # its causes read a sub-answer as X's own guess
        raise SystemExit(f"error: union_find_errors reads one-level transcripts; this run has amplify.levels "
                         f"= {c.sec['amplify'].levels}")
    T = c.task
    n = min(contexts, len(s.facts))
    db = {k: v[:n] for k, v in s.db.items()}
    tr = with_hprime(c, s, x, hp, seed, i, n)
    Q = s.questions.shape[1]
    ctx = np.repeat(np.arange(n), Q)
    q = s.questions[:n].reshape(n * Q, -1)
    truth, _ = truth_and_classes(s, n)
    right = (tr.answers == truth).all(-1)
    name, named = T.decode_names(q[:, 1:1 + T.length])
    px = np.where(named, db["pos"][ctx, name], -1)
    depth, parent = db["depth"][ctx, np.maximum(px, 0)], db["parent"][ctx, np.maximum(px, 0)]

    def pos(c, tokens):  # a name's position in context c, or -1 for anything else
        nm, ok = T.decode_names(np.asarray(tokens)[None, :T.length])
        return int(db["pos"][c, nm[0]]) if ok[0] else -1

    out, detail = {}, {f"{label}{d}": Counter() for label in "PDV" for d in (1, 2)}
    for kind, label in ((T.kP, "P"), (T.kD, "D"), (T.kV, "V")):
        for d in (1, 2):
            m = (q[:, 0] == kind) & (depth == d) & (px >= 0)
            why = Counter()
            for k in np.flatnonzero(m & ~right):
                cx = ctx[k]
                rounds = [(sq, sa) for sq, sa in zip(tr.subquestions[k], tr.subanswers[k]) if sq.any()]
                guesses = [pos(cx, sa) for sq, sa in rounds if sq[0] == T.kP]
                g = guesses[0] if guesses else -1
                if kind == T.kP:
                    cands = [pos(cx, sq[1:]) for sq, _ in rounds if sq[0] == T.kD]
                    said = {pos(cx, sq[1:]): int(sa[0]) - T.depth0 for sq, sa in rounds if sq[0] == T.kD}
                    nb = [pos(cx, sa) for sq, sa in rounds if sq[0] == T.kN]
                    if parent[k] in cands:
                        why["parent a candidate, another chosen"] += 1
                        # what X said of the parent's depth and of the chosen candidate's: when the
                        # chosen one is deeper by X's own answers, H' (not X) broke H's rule
                        chosen = pos(cx, tr.answers[k])
                        dp, dc = said.get(parent[k]), said.get(chosen)
                        who = ("H' chose a deeper one than X's depths say" if dp is not None and dc is not None and dc > dp
                               else "X's depths put it no deeper")
                        detail[f"{label}{d}"][f"another chosen: {who}: X's depth of the parent {dp}, of the chosen {dc} "
                                              f"(truth {depth[k] - 1}, {db['depth'][cx, chosen] if chosen >= 0 else '-'})"] += 1
                    elif g >= 0 and db["adj"][cx, px[k], g]:
                        why["parent not a candidate: X guessed an adjacent child"] += 1
                        # the random neighbour: the same child (the only candidate: X's guess
                        # confirms itself) or another child
                        detail[f"{label}{d}"]["adjacent child: the random neighbour was "
                                              + ("the same child" if nb and nb[0] == g else "another child")] += 1
                    else:
                        why["parent not a candidate: X's guess not adjacent"] += 1
                else:
                    why["X's parent guess right, its answer about the parent wrong" if g == parent[k]
                        else "X's parent guess wrong"] += 1
            out[f"{label}{d}"] = {"n": int(m.sum()), "right": float(right[m].mean()) if m.any() else float("nan"),
                                  "wrong": dict(why.most_common()), "detail": dict(detail[f"{label}{d}"].most_common())}
    # the targets of `parent x` by X's guess and x's degree (depths 1-3)
    deg = db["adj"].sum(-1)[ctx, np.maximum(px, 0)]
    counts = {}  # (depth, kind of guess, degree capped at 4) -> [questions, targets naming the parent]
    for k in np.flatnonzero((q[:, 0] == T.kP) & (px >= 0) & (depth >= 1) & (depth <= 3)):
        cx = ctx[k]
        guesses = [pos(cx, sa) for sq, sa in zip(tr.subquestions[k], tr.subanswers[k]) if sq.any() and sq[0] == T.kP]
        g = guesses[0] if guesses else -1
        kind = ("the parent" if g == parent[k] else "an adjacent child" if g >= 0 and db["adj"][cx, px[k], g]
                else "no neighbour")
        c = counts.setdefault((int(depth[k]), kind, min(int(deg[k]), 4)), [0, 0])
        c[0] += 1
        c[1] += int(right[k])  # a right `parent` target is the true parent
    guess_table = {f"P{d} guess {kind} degree {dg if dg < 4 else '4+'}": {"n": n, "target the parent": p}
                   for (d, kind, dg), (n, p) in sorted(counts.items())}
    return {"size": int(s.size), "classes": out, "by_guess": guess_table}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_study_args(ap, contexts=1024, task=False)
    args = ap.parse_args()
    r = breakdown(study_config(args), args.seed, args.iter, args.contexts)
    print(f"union_find iteration {args.iter} (size {r['size']}): targets of depth-1 and depth-2 questions")
    for cls, v in r["classes"].items():
        print(f"{cls}: {v['n']} questions, {v['right']:.3f} right; wrong: "
              + "; ".join(f"{why} {k}" for why, k in v["wrong"].items()))
        for why, k in v["detail"].items():
            print(f"    {why}: {k}")
    print("parent x: targets by X's guess and x's degree (a right target is the true parent)")
    for key, v in r["by_guess"].items():
        print(f"    {key}: {v['n']} questions, {v['target the parent']} targets the parent"
              f" ({v['target the parent'] / v['n']:.0%})")


if __name__ == "__main__":
    main()
