"""Can X learn a task at a given size at all? Supervised learning curves by difficulty class.

Trains X on the ground truth with no pipeline around it: every step draws its contexts from a pool
of `--pool` fresh contexts that is redrawn every `--refresh` steps (`--pool 0`: brand-new contexts
at every step, i.e. unlimited data). Prints the teacher's greedy held-out accuracy overall and by
class every `--every` steps. This separates what X cannot learn (a task or size too hard for the
model within the step budget, whatever the method) from what amplification fails to teach.

    python experiments/supervised_capacity.py --task permutation --params '{"nchars": 8, "length": 1, "log_iters": 3}'
    python experiments/supervised_capacity.py --task permutation --params '{"nchars": 8, "length": 1, "log_iters": 3}' --pool 384
    python experiments/supervised_capacity.py --task assignments --size 4 --lr 1e-3

`--variant` (assignments only) changes the task to locate what X fails to learn:
`fixed_table`: one operator table for every context, v_a (+) v_b = v_(a+b mod K), so X can compute
the value without the table facts; `same_operands`: every definition is x := y (+) y, so a value
needs one operand's value instead of two; `fixed_table,same_operands`: both.
`first_operand` / `second_operand`: one fixed table for every context whose entry is the first /
second operand's value (a (+) b = a, or = b), so a value is one operand's value, reached through
the first or the second name of a definition `x y z` (slot 2 or slot 3 of its fact).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="assignments")
    ap.add_argument("--params", default='{"nchars": 8, "length": 1}', help="task size parameters (JSON)")
    ap.add_argument("--size", type=int, default=None, help="instance size (default: the task's largest)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--every", type=int, default=250, help="evaluate every this many steps")
    ap.add_argument("--pool", type=int, default=0, help="contexts per pool (0: fresh contexts every step)")
    ap.add_argument("--refresh", type=int, default=150, help="steps between pool redraws (a pipeline iteration)")
    ap.add_argument("--batch", type=int, default=32, help="contexts per step")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--x", default='{"width": 96, "heads": 4, "embed": 32, "enc_layers": 3, "dec_layers": 3}',
                    help="X architecture (JSON, keys of hparams.XConfig)")
    ap.add_argument("--distill", default="{}", help="more DistillConfig keys (JSON), e.g. '{\"weight_decay\": 0.1}'")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parent-noise", type=float, default=0.0,
                    help="union find: this share of internal variables' `parent` labels replaced by a random child "
                         "(the amplified targets' kind of error); prints X's parent answers by leaf / internal at the end")
    ap.add_argument("--depth-noise", type=float, default=0.0,
                    help="union find: this share of the `depth` labels of variables at depth 2 or more made 1 or 2 "
                         "too deep (the amplified depth targets' error)")
    ap.add_argument("--noise-steps", type=int, default=0,
                    help="with --parent-noise / --depth-noise: noisy labels only in the pools drawn before this step, clean after "
                         "(0: noisy throughout); does X unlearn early wrong labels?")
    ap.add_argument("--variant", default="", help="assignments diagnostics (comma-separated): fixed_table, same_operands, first_operand, second_operand")
    args = ap.parse_args()

    import torch

    from amplification.hparams import DistillConfig, XConfig
    from amplification.stages import evaluate_model
    from amplification.tasks import make_task
    from amplification.train import ContextData, Distiller, _trim

    sys.path.insert(0, os.path.dirname(__file__))
    import union_find_parents as uf_parents

    torch.set_num_threads(args.threads)
    task = make_task(args.task, **json.loads(args.params))
    if args.parent_noise and (args.task != "union_find" or not 0.0 < args.parent_noise <= 1.0):
        raise SystemExit(f"error: --parent-noise takes a share in (0, 1], for --task union_find only; got {args.parent_noise}")
    if args.depth_noise and (args.task != "union_find" or not 0.0 < args.depth_noise <= 1.0):
        raise SystemExit(f"error: --depth-noise takes a share in (0, 1], for --task union_find only; got {args.depth_noise}")
    if args.noise_steps < 0 or (args.noise_steps and not (args.parent_noise or args.depth_noise)):
        raise SystemExit(f"error: --noise-steps takes a step count >= 0, with --parent-noise or --depth-noise; got {args.noise_steps}")
    if args.variant:
        task = assignments_variant(task, args.variant)
    size = task.check_size(args.size or task.max_size)
    d = Distiller(task, XConfig(**json.loads(args.x)),
                  DistillConfig(**{"steps": args.steps, "batch_contexts": args.batch, "lr": args.lr, "warmup": args.warmup,
                                   "ema_horizon": 50, **json.loads(args.distill)}),
                  args.seed, "cpu")
    rng = np.random.default_rng([args.seed, 1])
    noise_rng = np.random.default_rng([args.seed, 4])  # its own stream: the data is the same at every noise level
    test = task.generate(128, size, np.random.default_rng([args.seed, 2]), n_questions=8)
    print(f"{args.task}{' (' + args.variant + ')' if args.variant else ''} {json.loads(args.params)} size {size}, pool {args.pool or 'fresh'}, lr {args.lr}, x {args.x}"
          + (f", distill {args.distill}" if json.loads(args.distill) else ""), flush=True)
    data, t0 = None, time.time()
    for s in range(args.steps):
        if args.pool == 0 or s % args.refresh == 0:
            b = task.generate(args.pool or args.batch, size, rng)
            ans = b.answers
            noisy = not args.noise_steps or s < args.noise_steps
            if args.parent_noise and noisy:
                ans = uf_parents.with_child_parents(task, b, args.parent_noise, noise_rng)
            if args.depth_noise and noisy:
                ans = uf_parents.with_deep_depths(task, b, args.depth_noise, noise_rng, ans)
            data = ContextData(b.facts, b.fact_mask, b.questions, ans, ans.any(-1))
        idx = rng.integers(0, len(data), args.batch) if args.pool else np.arange(len(data))
        d.train_step(*_trim(data, idx))
        if (s + 1) % args.every == 0:
            r = evaluate_model(task, d.teacher.model, test, "cpu", sampled=False)["greedy"]
            print(f"step {s + 1:6d} {time.time() - t0:5.0f}s " + " ".join(f"{k}={v:.2f}" for k, v in r.items()), flush=True)
    if args.task == "union_find":
        big = task.generate(1024, size, np.random.default_rng([args.seed, 3]), n_questions=16)
        uf_parents.show(f"X after {args.steps} steps", *uf_parents.parent_table(task, big, uf_parents.x_answers(d.teacher.model, big)))


VARIANTS = ("fixed_table", "same_operands", "first_operand", "second_operand")
_TABLES = {"fixed_table", "first_operand", "second_operand"}  # at most one of them


def assignments_variant(task, variant: str):
    """The assignments task with the diagnostic changes named in `variant` (see the docstring)."""
    from amplification.tasks.assignments import SequentialAssignments

    names = set(variant.split(","))
    if not isinstance(task, SequentialAssignments) or not names <= set(VARIANTS) or len(names & _TABLES) > 1:
        raise SystemExit(f"error: --variant takes one or more of {', '.join(VARIANTS)} (one table at most), "
                         f"for --task assignments only; got {variant!r}")

    class Variant(type(task)):
        def _draw_operands(self, rng, n, i_pos):
            ops = super()._draw_operands(rng, n, i_pos)
            if "same_operands" in names:
                ops[..., 1] = ops[..., 0]
            return ops

        def _draw_table(self, rng, n):
            table = super()._draw_table(rng, n)  # drawn anyway: the other draws stay as they were
            k = np.arange(self.num_values)
            if "fixed_table" in names:
                table[:] = (k[:, None] + k[None, :]) % self.num_values
            elif "first_operand" in names:
                table[:] = k[:, None]
            elif "second_operand" in names:
                table[:] = k[None, :]
            return table

    return Variant(**task.params)


if __name__ == "__main__":
    main()
