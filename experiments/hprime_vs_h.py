"""Whose fault is a wrong target: H' (the learned human) or X (the answers it gets)?

For one iteration of a finished study run, recomputes the targets of the first `--contexts` sampled
contexts twice with the same X_{i-1}: Amplify^{H'}(X) (what the study trained on) and Amplify^H(X)
(the scripted human in H' place). Prints, overall and per difficulty class, how often each is
right and how often they agree. Where H' < H, H' imitates H badly on those questions (more H
calls would help); where both are wrong, X's sub-answers are (more or better distillation would).

    python experiments/hprime_vs_h.py --task wildcard --iter 11
    python experiments/hprime_vs_h.py --config config/config.yaml --task union_find --iter 11 --contexts 256
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402


def iteration(cfg: dict, task_name: str, seed: int, i: int, device: str = "cpu"):
    """Iteration i's amplify inputs of a finished run: (stage context, sample batch, X_{i-1}'s
    teacher, H'_i). Shared by the experiment scripts that recompute a study iteration's targets."""
    from amplification import stages
    from amplification.checkpoint import load_hprime, load_x

    if i < 1:
        raise ValueError("--iter must be >= 1 (iteration i's targets come from X_{i-1})")
    c = stages.Ctx(cfg, task_name, "amplification", seed, i)
    ins = c.inp("amplify")
    s = stages.arrays_to_batch(stages.load_npz(ins["sample"]))
    return c, s, load_x(ins["model"], device, teacher=True), load_hprime(ins["hprime"], device)


def _first(s, n: int):
    return s.facts[:n], s.fact_mask[:n], {k: v[:n] for k, v in s.db.items()}


def _oracle_rng(seed: int, i: int):
    return np.random.default_rng([seed, i, 99])  # the same oracle draws for H' and for H


def with_hprime(c, s, x, hp, seed: int, i: int, n: int, device: str = "cpu", levels: int | None = None):
    """Transcripts of Amplify^{H'}(X) on the first n sampled contexts (their answers: the targets);
    `levels`: the amplification tree's depth, by default the run's."""
    from amplification.amplify import amplify_hprime

    facts, mask, db = _first(s, n)
    return amplify_hprime(c.task, hp, x, facts, mask, s.questions[:n], db, _oracle_rng(seed, i), device,
                          repeats=c.sec["amplify"].repeats, levels=levels or c.sec["amplify"].levels)


def with_h(c, s, x, seed: int, i: int, n: int, device: str = "cpu", levels: int | None = None) -> np.ndarray:
    """Answers of Amplify^H(X), the scripted human in H' place, on the same questions and draws."""
    from amplification.amplify import amplify_h_with_x

    facts, mask, db = _first(s, n)
    Q = s.questions.shape[1]
    return amplify_h_with_x(c.task, x, facts, mask, np.repeat(np.arange(n), Q), s.questions[:n].reshape(n * Q, -1),
                            db, _oracle_rng(seed, i), device, repeats=c.sec["amplify"].repeats,
                            levels=levels or c.sec["amplify"].levels).answers


def truth_and_classes(s, n: int):
    return s.answers[:n].reshape(-1, s.answers.shape[-1]), s.classes[:n].reshape(-1)


def compare(cfg: dict, task_name: str, seed: int, i: int, contexts: int, device: str = "cpu",
            levels: int | None = None) -> dict:
    from amplification import paths

    c, s, x, hp = iteration(cfg, task_name, seed, i, device)
    n = min(contexts, len(s.facts))
    by_hp = with_hprime(c, s, x, hp, seed, i, n, device, levels).answers
    by_h = with_h(c, s, x, seed, i, n, device, levels)
    truth, cls = truth_and_classes(s, n)
    ok_hp, ok_h, same = ((by_hp == truth).all(-1), (by_h == truth).all(-1), (by_hp == by_h).all(-1))
    rows = {"all": (len(cls), ok_hp.mean(), ok_h.mean(), same.mean())}
    for k, name in enumerate(c.task.class_names):
        m = cls == k
        if m.any():
            rows[name] = (int(m.sum()), ok_hp[m].mean(), ok_h[m].mean(), same[m].mean())
    return {"size": int(s.size), "rows": rows, "run": paths.run_dir(c.results, task_name, "amplification", seed)}


def add_run_args(ap: argparse.ArgumentParser, task: bool = True) -> None:
    """--config, --results, --task, --seed, --threads: which run of a finished study a script reads."""
    ap.add_argument("--config", default="config/config.yaml", help="the study's config")
    ap.add_argument("--results", help="the study's results folder (default: the config's results_dir)")
    if task:
        ap.add_argument("--task", required=True)
    ap.add_argument("--seed", type=int, default=0, help="the study seed whose run to read")
    ap.add_argument("--threads", type=int, default=1)


def add_study_args(ap: argparse.ArgumentParser, contexts: int, task: bool = True) -> None:
    """The options of every script that reads one iteration of a finished study run."""
    add_run_args(ap, task)
    ap.add_argument("--iter", type=int, required=True, help="iteration (>= 1) whose targets to recompute")
    ap.add_argument("--contexts", type=int, default=contexts, help="how many of its sampled contexts")


def study_config(args) -> dict:
    """Torch threads set, the study's config loaded (its results folder replaced by --results)."""
    import torch

    from amplification.config import load_config

    torch.set_num_threads(args.threads)
    return load_config(args.config, overrides={"results_dir": args.results} if args.results else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_study_args(ap, contexts=128)
    ap.add_argument("--levels", type=int, choices=range(1, 5), default=None,
                    help="the amplification tree's depth for both (amplify.levels; default: the run's)")
    args = ap.parse_args()
    r = compare(study_config(args), args.task, args.seed, args.iter, args.contexts, levels=args.levels)
    depth = f", {args.levels} level(s)" if args.levels else ""
    print(f"{r['run']} iteration {args.iter} (size {r['size']}{depth}): targets right with H' / with H, and H'==H")
    print(f"{'class':10s} {'n':>6s} {'H_prime':>8s} {'H':>6s} {'same':>6s}")
    for name, (n, a, b, same) in r["rows"].items():
        print(f"{name:10s} {n:6d} {a:8.3f} {b:6.3f} {same:6.3f}")


if __name__ == "__main__":
    main()
