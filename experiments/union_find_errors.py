"""Why are union find's amplification targets wrong? A breakdown of one study iteration.

Recomputes iteration i's targets, Amplify^{H'}(X_{i-1}) on its sampled questions, and sorts every
wrong target of the `parent`, `depth` and `value` questions about variables at depth 1 and 2 by
what went wrong in its transcript:

- parent x: the true parent was not among the candidates (X's guess was an adjacent child, or not
  adjacent at all, and the random neighbour was not the parent either), or it was, and X's depth
  answers ranked another candidate shallower;
- depth x and value x: H uses X's own `parent x` answer unchecked, so: X's guess was wrong, or it
  was right and X's `depth`/`value` answer about the parent was wrong.

    python experiments/union_find_errors.py --iter 13
"""
from __future__ import annotations

import argparse
import os
from collections import Counter

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402


def breakdown(cfg: dict, seed: int, i: int, contexts: int) -> dict:
    from amplification import stages
    from amplification.amplify import amplify_hprime
    from amplification.checkpoint import load_hprime, load_x

    if i < 1:
        raise ValueError("--iter must be >= 1 (iteration i's targets come from X_{i-1})")
    c = stages.Ctx(cfg, "union_find", "amplification", seed, i)
    T, ins = c.task, c.inp("amplify")
    s = stages.arrays_to_batch(stages.load_npz(ins["sample"]))
    n = min(contexts, len(s.facts))
    db = {k: v[:n] for k, v in s.db.items()}
    tr = amplify_hprime(T, load_hprime(ins["hprime"]), load_x(ins["model"], teacher=True), s.facts[:n], s.fact_mask[:n],
                        s.questions[:n], db, np.random.default_rng([seed, i, 99]))
    Q = s.questions.shape[1]
    ctx = np.repeat(np.arange(n), Q)
    q, truth = s.questions[:n].reshape(n * Q, -1), s.answers[:n].reshape(n * Q, -1)
    right = (tr.answers == truth).all(-1)
    name, named = T.decode_names(q[:, 1:1 + T.length])
    px = np.where(named, db["pos"][ctx, name], -1)
    depth, parent = db["depth"][ctx, np.maximum(px, 0)], db["parent"][ctx, np.maximum(px, 0)]

    def pos(c, tokens):  # a name's position in context c, or -1 for anything else
        nm, ok = T.decode_names(np.asarray(tokens)[None, :T.length])
        return int(db["pos"][c, nm[0]]) if ok[0] else -1

    out = {}
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
                    if parent[k] in cands:
                        why["parent a candidate, X's depths ranked another shallower"] += 1
                    elif g >= 0 and db["adj"][cx, px[k], g]:
                        why["parent not a candidate: X guessed an adjacent child"] += 1
                    else:
                        why["parent not a candidate: X's guess not adjacent"] += 1
                else:
                    why["X's parent guess right, its answer about the parent wrong" if g == parent[k]
                        else "X's parent guess wrong"] += 1
            out[f"{label}{d}"] = {"n": int(m.sum()), "right": float(right[m].mean()) if m.any() else float("nan"),
                                  "wrong": dict(why.most_common())}
    return {"size": int(s.size), "classes": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config/config.yaml", help="the study's config")
    ap.add_argument("--results", help="the study's results folder (default: the config's results_dir)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iter", type=int, required=True, help="iteration (>= 1) whose targets to break down")
    ap.add_argument("--contexts", type=int, default=1024, help="how many of its sampled contexts")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from amplification.config import load_config

    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, overrides={"results_dir": args.results} if args.results else None)
    r = breakdown(cfg, args.seed, args.iter, args.contexts)
    print(f"union_find iteration {args.iter} (size {r['size']}): targets of depth-1 and depth-2 questions")
    for cls, v in r["classes"].items():
        print(f"{cls}: {v['n']} questions, {v['right']:.3f} right; wrong: "
              + "; ".join(f"{why} {k}" for why, k in v["wrong"].items()))


if __name__ == "__main__":
    main()
