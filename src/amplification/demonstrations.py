"""Recorded demonstrations: transcripts of a person acting as H, one JSON object per line.

A line has the keys of the scripted-H export (`commands.tasks_cmd.export_records`: task, params,
size, seed, index, facts, question(_tokens), answer(_tokens), class, transcript, h_answer(_tokens)),
the transcript listing only the rounds that were used, plus extra keys such as "source" ("human"),
"agrees_with_truth" and "time".

Writing: `append_demonstration` is atomic. We rewrite the whole file: copy the existing bytes and
the new line into a temporary file in the same directory, fsync it, `os.replace` it over the
old file, and fsync the directory. Why not O_APPEND with one write: a crash (or a full disk) in
the middle of that write leaves a partial last line in the live file, which every reader must
then detect and repair, and the repair (a truncate) races with the next writer. With the rename,
readers only ever see the old file or the new one; no reader needs repair logic. The cost, a copy
of the file per append, is nothing at the scale of demonstrations typed by a person (a few
hundred lines). Writers are serialised by an flock on the directory (processes) and a lock
(threads), so two concurrent appends cannot lose one another.

Reading: `load_demonstrations` validates every line and turns the file into `human.Transcripts`
(unused rounds all 0), the layout the decompose stage trains H' on.
"""
from __future__ import annotations

import fcntl
import json
import os
import tempfile
import threading
from contextlib import contextmanager

import numpy as np

from .human import Transcripts
from .tasks.base import Task

_THREAD_LOCK = threading.Lock()


class DemonstrationError(ValueError):
    """A demonstrations file that cannot be used; the message names the file and line."""


@contextmanager
def _dir_lock(directory: str):
    with _THREAD_LOCK:
        fd = os.open(directory, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def append_demonstration(path: str, record: dict) -> None:
    """Append one record as one JSON line, atomically (see the module docstring)."""
    line = (json.dumps(record) + "\n").encode("utf-8")
    if b"\n" in line[:-1]:  # json.dumps never emits raw newlines; keep the invariant explicit
        raise ValueError("a demonstration record must serialise to one line")
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    with _dir_lock(directory):
        try:
            with open(path, "rb") as fh:
                old = fh.read()
        except FileNotFoundError:
            old = b""
        if old and not old.endswith(b"\n"):
            raise DemonstrationError(f"{path}: the last line is incomplete; not appending")
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(old)
                out.write(line)
                out.flush()
                os.fsync(out.fileno())
            if os.path.exists(path):
                os.chmod(tmp, os.stat(path).st_mode & 0o777)
            else:
                os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)  # make the rename itself durable
        finally:
            os.close(dfd)


def read_records(path: str):
    """Yield (line number, record) for every non-blank line; a bad line raises
    DemonstrationError naming the file and line. A missing file yields nothing."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return
    with fh:
        for no, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise DemonstrationError(f"{path}:{no}: not a JSON line ({str(e).splitlines()[0]})") from None
            if not isinstance(rec, dict):
                raise DemonstrationError(f"{path}:{no}: expected a JSON object, got {type(rec).__name__}")
            yield no, rec


def _tokens(rec: dict, key: str, length: int, nvocab: int, where: str) -> np.ndarray:
    v = rec.get(key)
    if not isinstance(v, list) or len(v) != length or not all(
            isinstance(t, int) and not isinstance(t, bool) and 0 <= t < nvocab for t in v):
        raise DemonstrationError(f"{where}: '{key}' must be a list of {length} tokens in [0, {nvocab})")
    return np.asarray(v, dtype=np.int64)


def load_demonstrations(task: Task, path: str) -> Transcripts:
    """Read a demonstrations JSONL file into Transcripts for `task`.

    Every line must be for this task (same name and parameters, so that token ids agree), with
    "question_tokens", at most R transcript rounds of "subquestion_tokens"/"subanswer_tokens", and
    "h_answer_tokens". Unused rounds are all 0. A bad line raises DemonstrationError naming the
    file and line. A missing file is an error (FileNotFoundError); an empty one gives 0 transcripts."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no demonstrations file {path}")
    R, ql, al, V = task.rounds, task.question_length, task.answer_length, task.nvocab
    qs, sqs, sas, ans, asked, prim = [], [], [], [], [], []
    for no, rec in read_records(path):
        where = f"{path}:{no}"
        if rec.get("task") != task.name:
            raise DemonstrationError(f"{where}: task {rec.get('task')!r}, expected {task.name!r}")
        if "params" in rec and rec["params"] != task.params:
            raise DemonstrationError(f"{where}: params {rec['params']} differ from the task's {task.params}")
        q = _tokens(rec, "question_tokens", ql, V, where)
        rounds = rec.get("transcript")
        if not isinstance(rounds, list) or len(rounds) > R:
            raise DemonstrationError(f"{where}: 'transcript' must be a list of at most R={R} rounds")
        sq = np.zeros((R, ql), dtype=np.int64)
        sa = np.zeros((R, al), dtype=np.int64)
        for r, step in enumerate(rounds):
            if not isinstance(step, dict):
                raise DemonstrationError(f"{where}: transcript round {r + 1} must be an object")
            sq[r] = _tokens(step, "subquestion_tokens", ql, V, f"{where}: round {r + 1}")
            sa[r] = _tokens(step, "subanswer_tokens", al, V, f"{where}: round {r + 1}")
            if not sq[r].any():
                raise DemonstrationError(f"{where}: round {r + 1} has a blank subquestion")
        qs.append(q)
        sqs.append(sq)
        sas.append(sa)
        ans.append(_tokens(rec, "h_answer_tokens", al, V, where))
        asked.append(len(rounds))
        prim.append(int(task.is_primitive(sq[: len(rounds)]).sum()) if rounds else 0)
    if not qs:
        return Transcripts(np.zeros((0, ql), np.int64), np.zeros((0, R, ql), np.int64),
                           np.zeros((0, R, al), np.int64), np.zeros((0, al), np.int64),
                           np.zeros(0, np.int64), np.zeros(0, np.int64))
    return Transcripts(np.stack(qs), np.stack(sqs), np.stack(sas), np.stack(ans),
                       np.asarray(asked, dtype=np.int64), np.asarray(prim, dtype=np.int64))


def demonstration_stats(path: str, task_name: str | None = None) -> tuple[int, int]:
    """(count, agreed): the demonstrations in `path` (of `task_name`, if given) and how many
    of them have "agrees_with_truth" true. A missing file gives (0, 0)."""
    count = agreed = 0
    for _, rec in read_records(path):
        if task_name is not None and rec.get("task") != task_name:
            continue
        count += 1
        agreed += rec.get("agrees_with_truth") is True
    return count, agreed


def demonstration_record(task: Task, batch, seed: int, subquestions, subanswers, h_answer,
                         ctx: int = 0, question: int = 0, **extra) -> dict:
    """One demonstration in the export format, for question `question` of context `ctx` of a
    Batch generated with `seed`: the rounds actually asked, H's answer, whether it agrees with
    the ground truth, and the extra keys (e.g. source="human", time=...)."""
    q = batch.questions[ctx, question]
    truth = batch.answers[ctx, question]
    h = np.asarray(h_answer, dtype=np.int64).reshape(-1)
    sq = [np.asarray(x, dtype=np.int64).reshape(-1) for x in subquestions]
    sa = [np.asarray(x, dtype=np.int64).reshape(-1) for x in subanswers]
    if len(sq) != len(sa) or len(sq) > task.rounds:
        raise ValueError(f"{len(sq)} subquestions and {len(sa)} sub-answers; at most R={task.rounds} rounds")
    prim = task.is_primitive(np.stack(sq)) if sq else np.zeros(0, bool)
    rec = {
        "task": task.name,
        "params": task.params,
        "size": int(batch.size),
        "seed": int(seed),
        "index": int(ctx),
        "facts": [task.decode(f) for f, m in zip(batch.facts[ctx], batch.fact_mask[ctx]) if m],
        "question": task.decode(q),
        "question_tokens": q.tolist(),
        "answer": task.decode(truth),
        "answer_tokens": truth.tolist(),
        "class": task.class_names[batch.classes[ctx, question]],
        "transcript": [
            {"subquestion": task.decode(a), "subanswer": task.decode(b),
             "subquestion_tokens": a.tolist(), "subanswer_tokens": b.tolist(), "primitive": bool(p)}
            for a, b, p in zip(sq, sa, prim)
        ],
        "h_answer": task.decode(h),
        "h_answer_tokens": h.tolist(),
        "agrees_with_truth": bool(np.array_equal(h, truth)),
    }
    rec.update(extra)
    return rec


def default_path(task_name: str, root: str = ".") -> str:
    """data/demonstrations/<task>.jsonl under the project root."""
    return os.path.join(root, "data", "demonstrations", f"{task_name}.jsonl")


__all__ = ["DemonstrationError", "append_demonstration", "default_path", "demonstration_record",
           "demonstration_stats",
           "load_demonstrations", "read_records"]
