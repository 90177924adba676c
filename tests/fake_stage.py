"""A stand-in for `amplification stage ...` that tests the workflow machinery (DAG, reruns,
kill/resume, DVC, MLflow) in seconds, independently of the real learning stages.

    AMPLIFICATION_CMD="python tests/fake_stage.py" snakemake ...

`stage <name>` writes every output that paths.stage_outputs names, with content derived from the
contents of its inputs (so the final metrics depend on the whole chain, deterministically); the
evaluate stage writes a metrics.json of the real shape and logs it with tracking.log_iteration.
FAKE_STAGE_SLEEP=<stage>:<seconds> makes one stage slow (to kill it in the middle).
Any other command (`study ...`) goes to the real command line.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from amplification import hparams, paths  # noqa: E402
from amplification.config import load_config, task_settings  # noqa: E402


def digest(parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
    return h.hexdigest()


def read_inputs(ins: dict) -> list[bytes]:
    out = []
    for name in sorted(ins):
        for p in ins[name] if isinstance(ins[name], list) else [ins[name]]:
            with open(p, "rb") as fh:
                out.append(name.encode() + fh.read())
    return out


def write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def fake_metrics(cfg, a, h: str, ins: dict) -> dict:
    prev = {}
    if "previous" in ins:
        with open(ins["previous"]) as fh:
            prev = json.load(fh)["metrics"]
    u = int(h[:8], 16) / 0xFFFFFFFF  # a deterministic number in [0, 1] from the chain
    acc = min(1.0, 0.3 + 0.12 * a.iter + 0.1 * u + (0.05 if a.method == "supervised" else 0.0))
    steps = task_settings(cfg, a.task)["distill"]["steps"] * (a.iter + 1)
    h_calls = 0 if a.method == "supervised" else int(prev.get("h_calls/cumulative", 0)) + 10 + a.iter
    m = {
        "accuracy/teacher/greedy": acc, "accuracy/teacher/sampled": acc * 0.97,
        "accuracy/student/greedy": acc * 0.99, "accuracy/targets": min(1.0, acc + 0.05),
        "agreement": acc * 0.9, "loss/x": 1.0 - acc, "h_calls/cumulative": h_calls,
        "steps/cumulative": steps, "examples/cumulative": steps * 32,
        "wall_time/cumulative": round(float(prev.get("wall_time/cumulative", 0.0)) + 1.5, 3),
        "accuracy/teacher/greedy/class/easy": min(1.0, acc + 0.2),
        "accuracy/teacher/greedy/class/hard": acc * 0.5,
        "accuracy/targets/class/easy": 1.0, "accuracy/targets/class/hard": min(1.0, acc + 0.1),
    }
    if a.method == "amplification":
        m["loss/hprime"] = 0.5 / (a.iter + 1)
    return {"task": a.task, "method": a.method, "seed": a.seed, "iteration": a.iter, "config": cfg["name"],
            "params": {"size": 4 + a.iter, "steps": steps, "examples": steps * 32, "h_calls": h_calls},
            "metrics": m}


def write_fake_tree(cfg: dict) -> list[str]:
    """metrics.json files for the whole configured study, as the evaluate stage would write them."""
    written = []
    for task in cfg["tasks"]:
        for method in cfg["methods"]:
            for seed in cfg["seeds"]:
                prev = None
                for i in range(hparams.iterations(cfg, task)):
                    a = argparse.Namespace(task=task, method=method, seed=seed, iter=i)
                    ins = {"previous": prev} if prev else {}
                    rec = fake_metrics(cfg, a, digest([task, method, seed, i]), ins)
                    out = paths.stage_outputs("evaluate", cfg["results_dir"], task, method, seed, i)["metrics"]
                    write(out, (json.dumps(rec, indent=1, sort_keys=True) + "\n").encode())
                    written.append(out)
                    prev = out
    return written


def main(argv) -> int:
    if not argv or argv[0] != "stage":
        from amplification.cli import main as real

        return real(argv)
    p = argparse.ArgumentParser()
    p.add_argument("stage")
    p.add_argument("name")
    p.add_argument("--config", required=True)
    p.add_argument("--task", required=True)
    p.add_argument("--method")
    p.add_argument("--seed", type=int)
    p.add_argument("--iter", type=int)
    a = p.parse_args(argv)
    cfg = load_config(a.config)
    print(f"fake stage {a.name} {a.task} {a.method} seed{a.seed} iter{a.iter}", file=sys.stderr)
    if a.name == "testset":
        out = paths.testset_path(cfg["data_dir"], a.task)
        write(out, digest([a.task, json.dumps(cfg["test_set"], sort_keys=True)]).encode())
        return 0
    ts = task_settings(cfg, a.task)
    ins = paths.stage_inputs(a.name, cfg["results_dir"], a.task, a.method, a.seed, a.iter,
                             ts["distill"]["replay_iters"], cfg["data_dir"], cfg["human"])
    h = digest([a.name, a.task, a.method, a.seed, a.iter, *read_inputs(ins)])
    slow = os.environ.get("FAKE_STAGE_SLEEP", "")
    if slow.partition(":")[0] == a.name:
        time.sleep(float(slow.partition(":")[2]))
    outs = paths.stage_outputs(a.name, cfg["results_dir"], a.task, a.method, a.seed, a.iter)
    if a.name == "evaluate":
        rec = fake_metrics(cfg, a, h, ins)
        write(outs["metrics"], (json.dumps(rec, indent=1, sort_keys=True) + "\n").encode())
        from amplification.tracking import log_iteration

        log_iteration(cfg, rec)
        return 0
    for key, path in outs.items():
        write(path, digest([h, key]).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
