"""How much does the 1,024-question test set decide? Re-evaluate a finished study on fresh questions.

The study's test set (64 contexts x 16 questions) measures an accuracy near 95% to about +-1.3
points (its 95% interval), so "reached 95%" and "steps to 95%" can turn on one question. This
script evaluates every iteration's X (the teacher, greedy, as the study's headline) of the runs
of a finished study on a large fresh sample at the full size, drawn from seeds that no stage of
the study uses, and prints per run: the test set's final accuracy and first iteration at 95%
beside the fresh sample's, with Wilson 95% intervals. It changes nothing in the study.

    python experiments/fresh_eval.py                          # every task, 1,024 x 16 fresh questions
    python experiments/fresh_eval.py --tasks union_find --contexts 256 --iters last
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

FRESH_SEED = 777001  # a seed no stage draws from (the stages use [seed, iteration, stage id], the test set 1000003)


def fresh_batch(task, size: int, contexts: int, questions: int, seed: int = FRESH_SEED):
    """A fresh held-out batch at `size` (8 = the study's full size), independent of every study draw."""
    return task.generate(contexts, size, [seed, 7], n_questions=questions)


def run_curves(cfg: dict, task_name: str, method: str, seed: int, fresh, iters: str = "all") -> list[dict]:
    """Per iteration of one run: steps, test-set accuracy (its metrics.json) and fresh accuracy."""
    from amplification import hparams, paths, stages
    from amplification.checkpoint import load_x

    c = stages.Ctx(cfg, task_name, method, seed, 0)
    rows = []
    n_iter = hparams.iterations(cfg, task_name)
    todo = range(n_iter) if iters == "all" else [n_iter - 1]
    for i in todo:
        d = paths.iter_dir(c.results, task_name, method, seed, i)
        for f in ("metrics.json", "model.pt"):
            if not os.path.exists(os.path.join(d, f)):
                raise FileNotFoundError(f"{os.path.join(d, f)} is missing (run the study first, or pass --results)")
        rec = stages.read_json(os.path.join(d, "metrics.json"))
        x = load_x(os.path.join(d, "model.pt"), "cpu", teacher=True)
        acc = stages.evaluate_model(c.task, x, fresh, "cpu", sampled=False)["greedy"]["all"]
        rows.append({"iteration": i, "steps": int(rec["metrics"]["steps/cumulative"]),
                     "test": float(rec["metrics"]["accuracy/teacher/greedy"]), "fresh": float(acc)})
    return rows


def first_at(rows: list[dict], key: str, target: float = 0.95):
    return next((r["steps"] for r in rows if r[key] >= target), None)


def main(argv=None) -> None:
    import torch

    sys.path.insert(0, os.path.dirname(__file__))
    from hprime_vs_h import study_config

    from amplification import stages
    from amplification.commands.study import TARGET, accuracy_interval

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config/config.yaml", help="the study's config")
    ap.add_argument("--results", help="the study's results folder (default: the config's results_dir)")
    ap.add_argument("--tasks", nargs="+", help="default: the config's tasks")
    ap.add_argument("--seed", type=int, default=0, help="the study seed whose runs to evaluate")
    ap.add_argument("--contexts", type=int, default=1024, help="fresh contexts (each with --questions questions)")
    ap.add_argument("--questions", type=int, default=16)
    ap.add_argument("--iters", choices=["all", "last"], default="all")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if args.contexts < 1 or args.questions < 1:
        ap.error("--contexts and --questions must be at least 1")
    torch.set_num_threads(args.threads)
    cfg = study_config(args)
    n_test = int(cfg["test_set"]["contexts"]) * int(cfg["test_set"]["questions_per_context"])
    n_fresh = args.contexts * args.questions
    print(f"# test set: {n_test} questions; fresh sample: {n_fresh} questions (seed {FRESH_SEED}); X = the teacher, greedy")
    print(f"{'task':14s} {'method':14s} {'test final':>22s} {'fresh final':>22s} {'test 95% at':>12s} {'fresh 95% at':>13s}")
    for task_name in args.tasks or cfg["tasks"]:
        c = stages.Ctx(cfg, task_name, "amplification", args.seed, 0)
        fresh = fresh_batch(c.task, c.max_size, args.contexts, args.questions)
        for method in cfg["methods"]:
            try:
                rows = run_curves(cfg, task_name, method, args.seed, fresh, args.iters)
            except FileNotFoundError as e:
                sys.exit(f"fresh_eval: {e}")
            last = rows[-1]
            cell = lambda a, n: "%.2f%% (%.1f-%.1f)" % ((100 * a,) + tuple(100 * v for v in accuracy_interval(a, n)))  # noqa: E731
            at = lambda k: str(first_at(rows, k, TARGET)) if args.iters == "all" else "-"  # noqa: E731
            print(f"{task_name:14s} {method:14s} {cell(last['test'], n_test):>22s} {cell(last['fresh'], n_fresh):>22s} "
                  f"{at('test'):>12s} {at('fresh'):>13s}")
            if args.iters == "all":
                print("    per iteration (steps test/fresh): " + " ".join(
                    f"{r['steps']}:{r['test']:.3f}/{r['fresh']:.3f}" for r in rows), flush=True)


if __name__ == "__main__":
    main()
