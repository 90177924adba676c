"""`amplification tasks list | show | export`: look at the environments and export them."""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

# size options every task may take; a task that does not know one raises a one-line TaskError
SIZE_OPTIONS = {
    "nchars": "characters in the name alphabet",
    "length": "characters per name (names = nchars**length)",
    "log_iters": "permutation: exponent bits",
    "num_values": "assignments: values of a variable",
    "max_dist": "shortest path: largest finite distance",
    "max_values": "union find: most classes per context",
}


def add_task_options(p: argparse.ArgumentParser, with_size: bool = True) -> None:
    p.add_argument("task", help="task name (see `amplification tasks list`)")
    for key, help_ in SIZE_OPTIONS.items():
        p.add_argument(f"--{key.replace('_', '-')}", dest=key, type=int, default=None, help=help_)
    if with_size:
        p.add_argument("--size", type=int, default=None, help="instance size (elements); default: full")


def task_from_args(args):
    from ..tasks import make_task

    params = {k: getattr(args, k) for k in SIZE_OPTIONS if getattr(args, k, None) is not None}
    return make_task(args.task, **params)


def cmd_list(args) -> int:
    from ..tasks import TASKS

    for name, cls in TASKS.items():
        t = cls()
        print(f"{name:15s} {t.title:24s} R={t.rounds} names={t.n_names} "
              f"fact/question/answer lengths={t.fact_length}/{t.question_length}/{t.answer_length} "
              f"params={t.params}")
    return 0


def render_example(task, size: int | None, seed: int) -> str:
    """One rendered example: facts, question, H's subquestions with oracle answers, answer."""
    from ..human import amplify_h_batch

    b = task.generate(1, task.max_size if size is None else size, seed, n_questions=1)
    tr = amplify_h_batch(task, b, rng=seed)
    lines = [f"{task.title} {task.params} size={b.size} seed={seed}", "facts:"]
    for f, m in zip(b.facts[0], b.fact_mask[0]):
        if m:
            lines.append(f"  {task.decode(f)}")
    cls = task.class_names[b.classes[0, 0]]
    lines.append(f"question: {task.decode(b.questions[0, 0])}    (class {cls})")
    prim = task.is_primitive(tr.subquestions[0])
    for r in range(int(tr.asked[0])):
        tag = "  (primitive: oracle)" if prim[r] else ""
        lines.append(f"  H asks: {task.decode(tr.subquestions[0, r]):24s} -> {task.decode(tr.subanswers[0, r])}{tag}")
    lines.append(f"answer: {task.decode(tr.answers[0])}    ground truth: {task.decode(b.answers[0, 0])}")
    return "\n".join(lines)


def cmd_show(args) -> int:
    task = task_from_args(args)
    print(render_example(task, args.size, args.seed))
    return 0


def export_records(task, n: int, seed: int, size: int | None):
    """Yield one JSON-able dict per question (see README, "Export format")."""
    from ..human import amplify_h_batch

    size = task.max_size if size is None else size
    b = task.generate(n, size, seed, n_questions=1)
    tr = amplify_h_batch(task, b, rng=seed)
    prim = task.is_primitive(tr.subquestions.reshape(-1, task.question_length)).reshape(n, task.rounds)
    for i in range(n):
        yield {
            "task": task.name,
            "params": task.params,
            "size": size,
            "seed": seed,
            "index": i,
            "facts": [task.decode(f) for f, m in zip(b.facts[i], b.fact_mask[i]) if m],
            "question": task.decode(b.questions[i, 0]),
            "question_tokens": b.questions[i, 0].tolist(),
            "answer": task.decode(b.answers[i, 0]),
            "answer_tokens": b.answers[i, 0].tolist(),
            "class": task.class_names[b.classes[i, 0]],
            "transcript": [
                {
                    "subquestion": task.decode(tr.subquestions[i, r]),
                    "subanswer": task.decode(tr.subanswers[i, r]),
                    "subquestion_tokens": tr.subquestions[i, r].tolist(),
                    "subanswer_tokens": tr.subanswers[i, r].tolist(),
                    "primitive": bool(prim[i, r]),
                }
                for r in range(int(tr.asked[i]))
            ],
            "h_answer": task.decode(tr.answers[i]),
            "h_answer_tokens": tr.answers[i].tolist(),
        }


def atomic_write_lines(path: str, lines) -> None:
    """Write lines to path through a temporary file and a rename, so a crash leaves no half file."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        for line in lines:
            fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def cmd_export(args) -> int:
    task = task_from_args(args)
    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    recs = export_records(task, args.n, args.seed, args.size)
    if args.out == "-":
        for r in recs:
            print(json.dumps(r))
    else:
        atomic_write_lines(args.out, (json.dumps(r) for r in recs))
        print(f"wrote {args.n} questions to {args.out}", file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("tasks", help="list, show and export the task environments")
    s = p.add_subparsers(dest="tasks_command", required=True, metavar="ACTION")
    s.add_parser("list", help="the registered tasks").set_defaults(func=cmd_list)
    sh = s.add_parser("show", help="one rendered example with H's decomposition")
    add_task_options(sh)
    sh.add_argument("--seed", type=int, default=0)
    sh.set_defaults(func=cmd_show)
    ex = s.add_parser("export", help="questions with ground truth and H transcripts as JSONL")
    add_task_options(ex)
    ex.add_argument("--n", type=int, required=True, help="number of questions (one per context)")
    ex.add_argument("--seed", type=int, required=True)
    ex.add_argument("--out", required=True, help="output .jsonl path, or - for stdout")
    ex.set_defaults(func=cmd_export)
