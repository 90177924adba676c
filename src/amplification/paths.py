"""Where every stage reads and writes: one place for the Snakefile and the stage commands.

Layout: results/<task>/<method>/seed<s>/iter<i>/<file>. Iteration i reads iteration i-1; the
functions below return the file names each stage needs, so the Snakemake input functions and the
commands can never disagree.
"""
from __future__ import annotations

import os

METHODS = ("amplification", "supervised")

# stage -> the files it writes in its iteration directory
OUTPUTS = {
    "sample": ["sample.npz"],
    "decompose": ["transcripts.npz", "decompose.json"],
    "train_hprime": ["hprime.pt", "hprime.json"],
    "amplify": ["targets.npz", "amplify.json"],
    "distill": ["model.pt", "distill.json"],
    "evaluate": ["metrics.json"],
}


def run_dir(results: str, task: str, method: str, seed: int) -> str:
    return os.path.join(results, task, method, f"seed{seed}")


def track_marker(results: str, task: str, method: str, seed) -> str:
    """What the track rule logged to MLflow for one run (mlflow.log: run)."""
    return os.path.join(run_dir(results, task, method, seed), "mlflow.json")


def iter_dir(results: str, task: str, method: str, seed: int, i: int) -> str:
    return os.path.join(run_dir(results, task, method, seed), f"iter{i}")


def testset_path(data_dir: str, task: str) -> str:
    return os.path.join(data_dir, "testsets", f"{task}.npz")


def demonstrations_path(data_dir: str, task: str, demonstrations_dir: str | None = None) -> str:
    return os.path.join(demonstrations_dir or os.path.join(data_dir, "demonstrations"), f"{task}.jsonl")


def stage_output(results, task, method, seed, i, stage, name=None) -> str:
    files = OUTPUTS[stage]
    return os.path.join(iter_dir(results, task, method, seed, i), name or files[0])


def stage_inputs(stage: str, results: str, task: str, method: str, seed: int, i: int,
                 replay_iters: int = 1, data_dir: str = "data", human: str = "scripted",
                 demonstrations_dir: str | None = None) -> dict:
    """Named input files of `stage` at iteration i (a dict of name -> path or list of paths)."""
    i = int(i)
    it = lambda j, st, name=None: stage_output(results, task, method, seed, j, st, name)  # noqa: E731
    prev = i - 1
    ins: dict = {}
    if stage == "sample":
        if prev >= 0:  # the curriculum size comes from the previous iteration's agreement
            ins["previous"] = it(prev, "amplify", "amplify.json")
    elif stage == "decompose":
        ins["sample"] = it(i, "sample")
        if prev >= 0:
            ins["model"] = it(prev, "distill")
            ins["previous"] = it(prev, "decompose", "decompose.json")
            ins["hprime"] = it(prev, "train_hprime")  # H' loss on fresh transcripts sets the rate
        if human == "recorded":
            ins["demonstrations"] = demonstrations_path(data_dir, task, demonstrations_dir)
    elif stage == "train_hprime":
        ins["transcripts"] = [it(j, "decompose") for j in range(i + 1)]
        ins["reviews"] = [it(j, "amplify") for j in range(i)]  # budget.review's H transcripts
        ins["decompose"] = it(i, "decompose", "decompose.json")  # H' loss on fresh transcripts
        if prev >= 0:
            ins["hprime"] = it(prev, "train_hprime")
    elif stage == "amplify":
        ins["sample"] = it(i, "sample")
        if method == "amplification":
            ins["hprime"] = it(i, "train_hprime")
            ins["decompose"] = it(i, "decompose", "decompose.json")  # budget.review's H calls
        if prev >= 0:
            ins["model"] = it(prev, "distill")
    elif stage == "distill":
        ins["targets"] = [it(j, "amplify") for j in range(max(0, i - replay_iters + 1), i + 1)]
        ins["samples"] = [it(j, "sample") for j in range(max(0, i - replay_iters + 1), i + 1)]
        if prev >= 0:
            ins["model"] = it(prev, "distill")
    elif stage == "evaluate":
        ins["model"] = it(i, "distill")
        ins["distill"] = it(i, "distill", "distill.json")
        ins["amplify"] = it(i, "amplify", "amplify.json")
        ins["testset"] = testset_path(data_dir, task)
        if method == "amplification":
            ins["decompose"] = it(i, "decompose", "decompose.json")
            ins["hprime"] = it(i, "train_hprime", "hprime.json")
        if prev >= 0:
            ins["previous"] = it(prev, "evaluate")
    else:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(OUTPUTS)}")
    return ins


def stage_outputs(stage, results, task, method, seed, i) -> dict:
    """Named outputs: the file's stem ('hprime.pt' -> 'hprime'), or stem_ext when two share a stem."""
    d = iter_dir(results, task, method, seed, i)
    out: dict = {}
    for f in OUTPUTS[stage]:
        stem, ext = os.path.splitext(f)
        out[stem if stem not in out else f"{stem}_{ext[1:]}"] = os.path.join(d, f)
    return out
