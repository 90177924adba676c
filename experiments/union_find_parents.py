"""Union find: how well X, and the targets it was trained on, know `parent x`, split by the depth
of x and by whether x is a leaf of its class's tree (one neighbour: the answer is that
neighbour) or internal (it has children; the answer is the one neighbour closer to the root).

For each iteration given, X_i (the teacher, greedy) on a fresh sample at the full size, and (for
amplification) the targets of iteration i on its own sampled questions; each with the kinds of
wrong answers: a child of x, x itself (what a root answers), another name, or no name; and
how far off the wrong `depth x` targets are; and, on internal variables at depth 2 or more,
whether the targets repeat the wrong answers of X_{i-1}, the model whose answers they were made from.

    python experiments/union_find_parents.py --iters 5 9 13 15
    python experiments/union_find_parents.py --methods supervised --iters 15 --contexts 256
    python experiments/union_find_parents.py --methods amplification --iters 15 --with-h 1024
"""
from __future__ import annotations

import argparse
import collections
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402


def parent_questions(task, batch):
    """(context, question, position of x) of every well-formed `parent x` question of a batch,
    in row order (the order the noise options draw their random numbers in)."""
    B, Q = batch.questions.shape[:2]
    kind, px, _ = task._parse(batch.db, np.repeat(np.arange(B), Q), batch.questions.reshape(B * Q, -1))
    for i in np.flatnonzero((kind == task.kP) & (px >= 0)):
        yield int(i) // Q, int(i) % Q, int(px[i])


def parent_table(task, batch, answers) -> tuple[dict, collections.Counter]:
    """{(depth band, "leaf"|"internal"): (right, n)} over the non-root `parent x` questions of a
    batch, and the wrong answers by (depth band, kind of x, kind of answer). Depths 4+ are one band."""
    db = batch.db
    right: dict = collections.defaultdict(lambda: [0, 0])
    wrong: collections.Counter = collections.Counter()
    for b, q, p in parent_questions(task, batch):
        dep, par = db["depth"][b], db["parent"][b]
        if dep[p] == 0:  # a root answers itself: H needs no decomposition
            continue
        key = (min(int(dep[p]), 4), "leaf" if db["adj"][b][p].sum() == 1 else "internal")
        ok = bool((answers[b, q] == batch.answers[b, q]).all())
        right[key][0] += ok
        right[key][1] += 1
        if not ok:
            e = task.name_of(answers[b, q, :task.length])
            a = None if e is None else int(db["pos"][b][e])
            kind = "no name" if a is None else "x itself" if a == p else "a child" if par[a] == p else "another name"
            wrong[key + (kind,)] += 1
    return {k: tuple(v) for k, v in sorted(right.items())}, wrong


def depth_errors(task, batch, answers) -> collections.Counter:
    """Wrong `depth x` answers by (depth band of x, answer - truth); "no depth" if not a depth."""
    out: collections.Counter = collections.Counter()
    kd = batch.questions[..., 0] == task.kD
    wrong = kd & ~(answers == batch.answers).all(-1)
    for b, q in zip(*np.nonzero(wrong)):
        t = int(batch.answers[b, q, 0]) - task.depth0
        a = int(answers[b, q, 0]) - task.depth0
        out[(min(t, 4), f"{a - t:+d}" if 0 <= a < task.n_names else "no depth")] += 1
    return out


def with_child_parents(task, batch, p: float, rng) -> np.ndarray:
    """The batch's answers with each `parent x` of an internal non-root x replaced, with
    probability p, by one of x's children drawn uniformly: the one kind of error the amplified
    `parent` targets make. For supervised_capacity.py's `--parent-noise`."""
    db, out = batch.db, batch.answers.copy()
    for b, q, x in parent_questions(task, batch):
        par = db["parent"][b]
        children = [c for c in np.flatnonzero(db["adj"][b][x]) if par[c] == x and c != x]
        if db["depth"][b][x] == 0 or not children or rng.random() >= p:
            continue
        out[b, q, :task.length] = task.encode_names(db["elems"][b][children[rng.integers(len(children))]])
    return out


def with_deep_depths(task, batch, p: float, rng, answers=None) -> np.ndarray:
    """The answers (default: the batch's) with each `depth x` of a variable at depth 2 or more
    made 1 or 2 too deep, with probability p: the amplified `depth` targets' error (a child in
    place of a parent on the way up). For supervised_capacity.py's `--depth-noise`."""
    out = (batch.answers if answers is None else answers).copy()
    kd = (batch.questions[..., 0] == task.kD) & (batch.answers[..., 0] >= task.depth0 + 2)
    hit = kd & (rng.random(kd.shape) < p)
    deeper = out[..., 0] + rng.integers(1, 3, kd.shape)
    out[..., 0] = np.where(hit, np.minimum(deeper, task.depth0 + task.max_depth), out[..., 0])
    return out


def confirmation(task, batch, x_prev, targets) -> collections.Counter:
    """On the `parent x` questions of internal variables at depth 2 or more: whether X_{i-1} (the
    model that answered the targets' subquestions) was right, and whether the target was right,
    repeated X's wrong answer, or was wrong otherwise."""
    db, out = batch.db, collections.Counter()
    for b, q, p in parent_questions(task, batch):
        if db["depth"][b][p] < 2 or db["adj"][b][p].sum() == 1:
            continue
        truth = batch.answers[b, q]
        x_ok, t_ok = (x_prev[b, q] == truth).all(), (targets[b, q] == truth).all()
        t = "right" if t_ok else "= X's answer" if (targets[b, q] == x_prev[b, q]).all() else "wrong otherwise"
        out[("X right" if x_ok else "X wrong", t)] += 1
    return out


def x_answers(x, batch):
    import torch

    from amplification.xmodel import to_tensor

    with torch.no_grad():
        ft, fm = to_tensor(batch.facts, "cpu").long(), to_tensor(batch.fact_mask, "cpu").bool()
        return x.generate(x.encode(ft, fm), ft, fm, to_tensor(batch.questions, "cpu").long()).numpy()


def show(label: str, right: dict, wrong: collections.Counter) -> None:
    cells = " ".join(f"P{d}{'' if d < 4 else '+'} {k}: {r / n:.3f} ({n})" for (d, k), (r, n) in right.items())
    print(f"{label:34s} {cells}")
    if wrong:
        print(f"{'':34s} wrong: " + ", ".join(f"P{d} {k} -> {w}: {c}" for (d, k, w), c in sorted(wrong.items())))


def _conf_line(conf: collections.Counter) -> str:
    return ", ".join(f"{xk}, target {tk}: {n}" for (xk, tk), n in sorted(conf.items()))


def rebuilt_confirmation(cfg: dict, seed: int, i: int, n: int) -> dict:
    """Iteration i's targets on its first n sampled contexts rebuilt with H' (as the study) and
    with H in H' place, from the same X_{i-1} and oracle draws: the confirmation table of each."""
    if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from hprime_vs_h import iteration, with_h, with_hprime

    c, s, x, hp = iteration(cfg, "union_find", seed, i)
    n = min(n, len(s.facts))
    Q = s.questions.shape[1]
    sub = type(s)(**{**vars(s), "facts": s.facts[:n], "fact_mask": s.fact_mask[:n], "questions": s.questions[:n],
                     "answers": s.answers[:n], "classes": s.classes[:n], "db": {k: v[:n] for k, v in s.db.items()}})
    xa = x_answers(x, sub)
    by_hp = with_hprime(c, s, x, hp, seed, i, n).answers.reshape(n, Q, -1)
    by_h = with_h(c, s, x, seed, i, n).reshape(n, Q, -1)
    return {"H'": confirmation(c.task, sub, xa, by_hp), "H": confirmation(c.task, sub, xa, by_h)}


def main(argv=None) -> None:
    import torch

    sys.path.insert(0, os.path.dirname(__file__))
    from fresh_eval import fresh_batch
    from hprime_vs_h import study_config

    from amplification import paths, stages
    from amplification.checkpoint import load_x

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config/config.yaml", help="the study's config")
    ap.add_argument("--results", help="the study's results folder (default: the config's results_dir)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iters", type=int, nargs="+", required=True)
    ap.add_argument("--methods", nargs="+", default=["amplification", "supervised"])
    ap.add_argument("--contexts", type=int, default=1024, help="fresh contexts (16 questions each) for X")
    ap.add_argument("--with-h", type=int, default=0, metavar="N",
                    help="also rebuild the targets of the first N sampled contexts with H' and with H in H' place "
                         "(the same X_{i-1} and oracle draws) and print both confirmation lines: whose is the repeat?")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = study_config(args)
    if "union_find" not in cfg["tasks"]:
        ap.error("the study has no union_find runs")
    task = stages.Ctx(cfg, "union_find", "amplification", args.seed, 0).task
    c = stages.Ctx(cfg, "union_find", "amplification", args.seed, 0)
    fresh = fresh_batch(task, c.max_size, args.contexts, 16)
    for method in args.methods:
        for i in args.iters:
            d = paths.iter_dir(c.results, "union_find", method, args.seed, i)
            need = ["model.pt"] + (["sample.npz", "targets.npz"] if method == "amplification" else [])
            missing = [f for f in need if not os.path.exists(os.path.join(d, f))]
            if missing:
                sys.exit(f"union_find_parents: {os.path.join(d, missing[0])} is missing (run the study first, or pass --results)")
            x = load_x(os.path.join(d, "model.pt"), "cpu", teacher=True)
            show(f"{method} X_{i} (fresh questions)", *parent_table(task, fresh, x_answers(x, fresh)))
            if method == "amplification":
                s = stages.arrays_to_batch(stages.load_npz(os.path.join(d, "sample.npz")))
                t = np.load(os.path.join(d, "targets.npz"))["targets"]
                show(f"{method} targets of iteration {i}", *parent_table(task, s, t))
                if i >= 1:  # the model that answered the targets' subquestions: X_{i-1}
                    prev = load_x(os.path.join(paths.iter_dir(c.results, "union_find", method, args.seed, i - 1), "model.pt"),
                                  "cpu", teacher=True)
                    conf = confirmation(task, s, x_answers(prev, s), t)
                    print(f"{'':34s} internal, depth >= 2, X_{i - 1} -> target: " + _conf_line(conf))
                    if args.with_h:
                        for who, conf in rebuilt_confirmation(cfg, args.seed, i, args.with_h).items():
                            print(f"{'':34s} ... first {args.with_h} contexts rebuilt with {who}: " + _conf_line(conf))
                dw = depth_errors(task, s, t)
                print(f"{'':34s} wrong depth targets (depth of x: answer - truth): "
                      + ", ".join(f"D{band}: {e}: {n}" for (band, e), n in sorted(dw.items())))


if __name__ == "__main__":
    main()
