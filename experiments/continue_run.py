"""Where would a run have gone with more iterations? Continue one run of a finished study.

Copies the run's folder (results/<task>/<method>/seed<s>/) and the task's test set into a scratch
folder, then runs iterations N .. --to there with the pipeline's own stage functions (what
Snakemake runs, in-process), the study's config otherwise unchanged. The study's results are only
read. Prints one line per new iteration: X steps, the teacher's greedy test accuracy, the targets'
accuracy and the seconds it took.

    python experiments/continue_run.py --task union_find --to 21
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def continue_run(cfg: dict, task: str, method: str, seed: int, last: int, scratch: str):
    """Yield (iteration, metrics) for iterations N..last of a copy of the run in `scratch`."""
    from amplification import hparams, paths, stages
    from amplification.config import deep_merge

    n = hparams.iterations(cfg, task)
    if last < n:
        raise ValueError(f"--to {last}: the run already has iterations 0..{n - 1}")
    src = paths.run_dir(cfg.get("results_dir", "results"), task, method, seed)
    if not os.path.exists(os.path.join(paths.iter_dir(cfg.get("results_dir", "results"), task, method, seed, n - 1),
                                       "metrics.json")):
        raise FileNotFoundError(f"{src}: no finished iteration {n - 1} (run the study first)")
    new = deep_merge(cfg, {"results_dir": os.path.join(scratch, "results"), "data_dir": os.path.join(scratch, "data"),
                           "mlflow": {**cfg.get("mlflow", {}), "enabled": False},
                           "per_task": {task: {"schedule": {"iterations": last + 1}}}})
    dst = paths.run_dir(new["results_dir"], task, method, seed)
    if os.path.exists(dst):
        raise FileExistsError(f"{dst} exists already: give another --scratch")
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("mlflow.json"))
    test = paths.testset_path(cfg.get("data_dir", "data"), task)
    os.makedirs(os.path.dirname(paths.testset_path(new["data_dir"], task)), exist_ok=True)
    shutil.copy(test, paths.testset_path(new["data_dir"], task))
    for i in range(n, last + 1):
        stages.run_iteration(new, task, method, seed, i)
        yield i, stages.read_json(os.path.join(paths.iter_dir(new["results_dir"], task, method, seed, i), "metrics.json"))["metrics"]


def main(argv=None) -> None:
    sys.path.insert(0, os.path.dirname(__file__))
    from hprime_vs_h import add_run_args, study_config

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(ap)
    ap.add_argument("--method", default="amplification", choices=["amplification", "supervised"])
    ap.add_argument("--to", type=int, required=True, help="the last iteration to run")
    ap.add_argument("--scratch", help="where the copy goes (default: a new temporary folder, kept)")
    args = ap.parse_args(argv)
    cfg = study_config(args)  # (sets torch's threads too)
    if args.task not in cfg["tasks"]:
        ap.error(f"--task {args.task}: not one of the study's tasks ({', '.join(cfg['tasks'])})")
    scratch = args.scratch or tempfile.mkdtemp(prefix="continue-")
    print(f"# {args.task} {args.method} seed {args.seed}, continued in {scratch}")
    t = time.time()
    try:
        for i, m in continue_run(cfg, args.task, args.method, args.seed, args.to, scratch):
            print(f"{args.method} iter {i:3d} steps {int(m['steps/cumulative']):6d} acc {m['accuracy/teacher/greedy']:.4f} "
                  f"targets {m['accuracy/targets']:.4f} ({time.time() - t:.0f} s)", flush=True)
            t = time.time()
    except (ValueError, OSError) as e:
        if not args.scratch:  # nothing was run: leave no empty temporary folder behind
            shutil.rmtree(scratch, ignore_errors=True)
        sys.exit(f"continue_run: {e}")


if __name__ == "__main__":
    main()
