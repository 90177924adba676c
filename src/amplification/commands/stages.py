"""`amplification stage NAME --config C --task T --method M --seed S --iter I`: one pipeline stage.

Each is a thin entry over amplification.stages.run_<name>; Snakemake calls these, tests call the
functions. `stage testset --config C --task T` writes the fixed held-out test set.
"""
from __future__ import annotations

import json
import os


def _cfg(args):
    from ..config import load_config

    return load_config(args.config)


def cmd_stage(args) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from .. import hparams, stages

    cfg = _cfg(args)
    if args.task not in cfg["tasks"]:
        raise ValueError(f"task {args.task!r} is not in the config's tasks: {', '.join(cfg['tasks'])}")
    if args.stage == "testset":
        print(f"wrote {stages.run_testset(cfg, args.task)}")
        return 0
    for name in ("method", "seed", "iter"):
        if getattr(args, name) is None:
            raise ValueError(f"stage {args.stage} needs --{name}")
    n = hparams.iterations(cfg, args.task)
    if args.iter < 0 or args.iter >= n:
        raise ValueError(f"--iter must be in [0, {n - 1}] (the iterations of {args.task}'s runs), got {args.iter}")
    if args.method == "supervised" and args.stage in ("decompose", "train_hprime"):
        raise ValueError(f"stage {args.stage} exists only for method amplification")
    rec = stages.STAGES[args.stage](cfg, args.task, args.method, args.seed, args.iter)
    print(json.dumps(rec, sort_keys=True)[:2000])
    return 0


def add_parser(sub) -> None:
    from ..stages import STAGES

    p = sub.add_parser("stage", help="run one pipeline stage (what each Snakemake rule calls)")
    p.add_argument("stage", choices=list(STAGES) + ["testset"])
    p.add_argument("--config", required=True, help="study config YAML")
    p.add_argument("--task", required=True)
    p.add_argument("--method", choices=["amplification", "supervised"])
    p.add_argument("--seed", type=int)
    p.add_argument("--iter", type=int, help="iteration index, from 0")
    p.set_defaults(func=cmd_stage)
