"""Does H' follow H's rule where it matters? Union find's `parent x`, in a finished study run.

H answers `parent x` with the shallowest of its candidates (X's own guess if adjacent, then a
random true neighbour), by X's `depth` answers. The transcripts that carry a correction are the
contested ones, with two or more distinct candidates; among them, those where the later
candidate wins (X's guess was deeper than the neighbour) are the only way a wrong guess of X is
corrected. This script prints three things:

- `--count`: per iteration, the H transcripts H' is trained on: how many ask `parent x`, how many
  of those are contested, and in how many the later candidate wins (with the running total).
- `--iters I J ...`: for each iteration, Amplify^{H'}(X_{i-1}) on its sampled questions (the
  study's targets, recomputed): on the contested `parent` transcripts, how often H''s answer is
  the one H's rule gives on that same transcript (the candidates' depths as X answered them),
  split by whether the rule picks the first candidate or a later one.
- `--learn N`: a fresh H' (the run's settings) trained on the `parent` transcripts of
  Amplify^H(X_{i-1}) on N new contexts at iteration `--iter`'s size, tested every 250 steps on
  4,000 more contexts' transcripts: can this H' learn the rule from enough of them?

    python experiments/hprime_rule.py --count --iters 4 8 12
    python experiments/hprime_rule.py --learn 3000 --iter 13 --steps 1000
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from hprime_vs_h import iteration, study_config, with_hprime  # noqa: E402


def candidates(task, subquestions) -> list:
    """The names asked `depth c` in one parent transcript, in order (H's candidates)."""
    return [tuple(sq[1:1 + task.length]) for sq in subquestions if sq[0] == task.kD]


def rule_answer(task, subquestions, subanswers):
    """H's choice on this transcript (`UnionFind.shallowest` on its `depth c` rounds), or None."""
    rounds = [(tuple(sq[1:1 + task.length]), int(sa[0]) - task.depth0)
              for sq, sa in zip(subquestions, subanswers) if sq[0] == task.kD]
    return task.shallowest([c for c, _ in rounds], [d for _, d in rounds])


def later_wins(task, tr) -> np.ndarray:
    """[N] bool: a contested transcript whose answer is not its first candidate."""
    out = np.zeros(len(tr.questions), dtype=bool)
    for k in range(len(out)):
        c = candidates(task, tr.subquestions[k])
        out[k] = len(set(c)) > 1 and tuple(tr.answers[k][:task.length]) != c[0]
    return out


def count(cfg: dict, seed: int) -> list[dict]:
    """Per iteration: the H transcripts collected, parent ones, contested ones, later-wins ones."""
    from amplification import stages

    rows, total, i = [], 0, 0
    while True:
        c = stages.Ctx(cfg, "union_find", "amplification", seed, i)
        path = c.out("decompose")["transcripts"]
        if not os.path.exists(path):
            break
        tr = stages.arrays_to_transcripts(stages.load_npz(path))
        T = c.task
        P = np.flatnonzero(tr.questions[:, 0] == T.kP)
        contested = sum(len(set(candidates(T, tr.subquestions[k]))) > 1 for k in P)
        later = int(later_wins(T, tr)[P].sum())
        total += later
        rows.append({"iter": i, "transcripts": len(tr.questions), "parent": len(P), "contested": int(contested),
                     "later": later, "later_total": total})
        i += 1
    if not rows:
        raise FileNotFoundError(f"no union find transcripts for seed {seed} under {cfg['results_dir']}")
    return rows


def follows(cfg: dict, seed: int, i: int, contexts: int) -> dict:
    """On iteration i's contested parent transcripts of Amplify^{H'}(X): H' answers as H's rule."""
    c, s, x, hp = iteration(cfg, "union_find", seed, i)
    T = c.task
    n = min(contexts, len(s.facts))
    tr = with_hprime(c, s, x, hp, seed, i, n)
    out = {"first": [0, 0], "later": [0, 0]}  # [transcripts, H' answered as the rule]
    for k in np.flatnonzero(tr.questions[:, 0] == T.kP):
        cands = candidates(T, tr.subquestions[k])
        best = rule_answer(T, tr.subquestions[k], tr.subanswers[k])
        if len(set(cands)) < 2 or best is None:
            continue
        key = "first" if best == cands[0] else "later"
        out[key][0] += 1
        out[key][1] += tuple(tr.answers[k][:T.length]) == best
    return out


def learn(cfg: dict, seed: int, i: int, n: int, steps: int, every: int = 250) -> list[dict]:
    """A fresh H' on the parent transcripts of Amplify^H(X_{i-1}) on n new contexts; its test record."""
    from amplification.amplify import amplify_h_with_x
    from amplification.train import HPrimeTrainer

    c, s, x, _ = iteration(cfg, "union_find", seed, i)
    T = c.task

    def parent_transcripts(m: int, draw: int):
        rng = np.random.default_rng([seed, i, draw])
        b = T.generate(m, int(s.size), rng, n_questions=3)
        q = b.questions.reshape(m * 3, -1)
        keep = q[:, 0] == T.kP
        return amplify_h_with_x(T, x, b.facts, b.fact_mask, np.repeat(np.arange(m), 3)[keep], q[keep], b.db, rng)

    train, test = parent_transcripts(n, 1), parent_transcripts(4000, 2)
    later = later_wins(T, test)
    trainer = HPrimeTrainer(T, c.sec["hprime"], c.sec["hprime_train"], seed)
    seqs = trainer.sequences(test.tokens())
    rows = []
    for done in range(0, steps + 1, every):
        if done:
            trainer.train(train.tokens(), every)
        ok = trainer.all_right(seqs)
        rows.append({"steps": done, "train": len(train.questions), "train_later": int(later_wins(T, train).sum()),
                     "test_later": int(later.sum()), "all": float(ok.mean()),
                     "later": float(ok[later].mean()) if later.any() else float("nan"),
                     "first": float(ok[~later].mean())})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config/config.yaml", help="the study's config")
    ap.add_argument("--results", help="the study's results folder (default: the config's results_dir)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", action="store_true", help="count the contested transcripts H' is trained on")
    ap.add_argument("--iters", type=int, nargs="*", default=[], help="iterations whose targets to recompute")
    ap.add_argument("--contexts", type=int, default=1024, help="how many of each iteration's sampled contexts")
    ap.add_argument("--learn", type=int, default=0, help="train a fresh H' on this many new contexts' transcripts")
    ap.add_argument("--iter", type=int, default=13, help="with --learn: the iteration whose X answers")
    ap.add_argument("--steps", type=int, default=1000, help="with --learn: H' steps")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if not (args.count or args.iters or args.learn):
        sys.exit("nothing to do: give --count, --iters or --learn")
    cfg = study_config(args)
    if args.count:
        print("H transcripts H' is trained on (union find, parent questions)")
        for r in count(cfg, args.seed):
            print(f"iter {r['iter']:2d}: {r['transcripts']:5d} transcripts, {r['parent']:4d} parent, {r['contested']:3d} "
                  f"contested, {r['later']:3d} later wins (total {r['later_total']})")
    for i in args.iters:
        f = follows(cfg, args.seed, i, args.contexts)
        print(f"iter {i:2d}: H' answers as H's rule on contested parent transcripts: "
              + "; ".join(f"rule picks the {k} candidate {ok}/{n} ({ok / n:.3f})" if n else f"rule picks the {k}: none"
                          for k, (n, ok) in f.items()), flush=True)
    if args.learn:
        for r in learn(cfg, args.seed, args.iter, args.learn, args.steps):
            print(f"fresh H', {r['train']} parent transcripts ({r['train_later']} later wins), step {r['steps']:5d}: "
                  f"test transcripts right {r['all']:.3f}, later wins {r['later']:.3f} (of {r['test_later']}), "
                  f"first wins {r['first']:.3f}", flush=True)


if __name__ == "__main__":
    main()
