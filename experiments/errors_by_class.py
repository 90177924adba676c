"""Where a finished study's X goes wrong on its own test set: errors per difficulty class, and
X's most common wrong answers in each, per method and iteration. It changes nothing in the study.

    python experiments/errors_by_class.py --task union_find --iters 11 13 15

prints, for each method and iteration, one line per class with errors, e.g.
    D4-5   17 questions  17 wrong  X said: 3 x17
(union find's `depth` of depth-4 and depth-5 variables: X answered 3 every time).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import Counter

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def errors_by_class(cfg: dict, task_name: str, method: str, seed: int, i: int, top: int = 3) -> list[dict]:
    """Per class of the test set: questions, wrong answers of X_i (teacher, greedy) and the most
    common wrong answers as text, [(answer, count)]."""
    import numpy as np
    import torch

    from amplification import paths, stages
    from amplification.checkpoint import load_x
    from amplification.xmodel import to_tensor

    c = stages.Ctx(cfg, task_name, method, seed, i)
    test_path = paths.testset_path(c.data_dir, task_name)
    model = os.path.join(paths.iter_dir(c.results, task_name, method, seed, i), "model.pt")
    for f in (test_path, model):
        if not os.path.exists(f):
            raise FileNotFoundError(f"{f} is missing (run the study first, or pass --results)")
    test = stages.arrays_to_batch(stages.load_npz(test_path))
    x = load_x(model, "cpu", teacher=True)
    with torch.no_grad():
        ft, fm = to_tensor(test.facts, "cpu").long(), to_tensor(test.fact_mask, "cpu").bool()
        pred = x.generate(x.encode(ft, fm), ft, fm, to_tensor(test.questions, "cpu").long()).numpy()
    al = c.task.answer_length
    pred, truth, classes = pred.reshape(-1, al), test.answers.reshape(-1, al), test.classes.reshape(-1)
    wrong = ~(pred == truth).all(-1)
    labels = c.task.vocab.labels
    text = lambda a: " ".join(labels[t] for t in a if t)  # noqa: E731
    rows = []
    for k, name in enumerate(c.task.class_names):
        m = classes == k
        if m.any():
            said = Counter(text(a) for a in pred[m & wrong]).most_common(top)
            rows.append({"class": name, "n": int(m.sum()), "wrong": int((m & wrong).sum()), "said": said})
    return rows


def main(argv=None) -> None:
    sys.path.insert(0, os.path.dirname(__file__))
    from hprime_vs_h import add_run_args, study_config

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(ap)
    ap.add_argument("--iters", type=int, nargs="+", required=True, help="iterations to read")
    args = ap.parse_args(argv)
    cfg = study_config(args)
    if args.task not in cfg["tasks"]:
        ap.error(f"--task {args.task!r} is not one of the study's tasks {cfg['tasks']}")
    for method in cfg["methods"]:
        for i in args.iters:
            try:
                rows = errors_by_class(cfg, args.task, method, args.seed, i)
            except FileNotFoundError as e:
                sys.exit(f"errors_by_class: {e}")
            n, w = sum(r["n"] for r in rows), sum(r["wrong"] for r in rows)
            print(f"{args.task} {method} iteration {i}: {w} of {n} test questions wrong")
            for r in rows:
                if r["wrong"]:
                    said = ", ".join(f"{a or '(blank)'} x{k}" for a, k in r["said"])
                    print(f"    {r['class']:8s} {r['n']:4d} questions {r['wrong']:4d} wrong  X said: {said}")


if __name__ == "__main__":
    main()
