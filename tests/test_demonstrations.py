"""Recorded demonstrations: atomic crash-safe appends, loading into Transcripts, validation, stats."""
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from amplification.commands.tasks_cmd import export_records
from amplification.demonstrations import (DemonstrationError, append_demonstration, demonstration_record,
                                          demonstration_stats, load_demonstrations)
from amplification.human import amplify_h_batch
from amplification.tasks import make_task

SRC = os.path.join(os.path.dirname(__file__), "..", "src")


@pytest.fixture
def task():
    return make_task("permutation", nchars=8, length=1, log_iters=4)


def _scripted_records(task, n=6, seed=5):
    return list(export_records(task, n, seed, 8))


def test_append_then_load_equals_scripted_transcripts(task, tmp_path):
    path = tmp_path / "demos" / "permutation.jsonl"
    recs = _scripted_records(task)
    for r in recs:
        append_demonstration(str(path), {**r, "source": "scripted", "agrees_with_truth": True})
    lines = path.read_text().splitlines()
    assert len(lines) == len(recs) and json.loads(lines[2])["index"] == 2
    tr = load_demonstrations(task, str(path))
    ref = amplify_h_batch(task, task.generate(6, 8, 5, n_questions=1), rng=5)
    for f in ("questions", "subquestions", "subanswers", "answers", "asked", "primitive"):
        assert np.array_equal(getattr(tr, f), getattr(ref, f)), f
    assert tr.tokens().shape == ref.tokens().shape
    assert demonstration_stats(str(path), "permutation") == (6, 6)
    assert demonstration_stats(str(path), "wildcard") == (0, 0)
    assert demonstration_stats(str(tmp_path / "missing.jsonl"), "permutation") == (0, 0)
    assert not [p for p in os.listdir(path.parent) if p != "permutation.jsonl"], "temporary files left"


def test_demonstration_record_matches_export_format(task, tmp_path):
    b = task.generate(1, 8, 11, n_questions=1)
    tr = amplify_h_batch(task, b, rng=11)
    k = int(tr.asked[0])
    rec = demonstration_record(task, b, 11, tr.subquestions[0, :k], tr.subanswers[0, :k], tr.answers[0],
                               source="human", time="2025-01-01T00:00:00Z")
    (ref,) = export_records(task, 1, 11, 8)
    assert set(ref) <= set(rec)
    assert {k: rec[k] for k in ref} == ref
    assert rec["source"] == "human" and rec["agrees_with_truth"] is True
    wrong = demonstration_record(task, b, 11, [], [], np.zeros(1, int))
    assert wrong["agrees_with_truth"] is False and wrong["transcript"] == []
    path = str(tmp_path / "d.jsonl")
    append_demonstration(path, rec)
    append_demonstration(path, wrong)
    tr2 = load_demonstrations(task, path)
    assert tr2.asked.tolist() == [k, 0] and not tr2.subquestions[1].any()
    assert demonstration_stats(path) == (2, 1)


def test_failed_replace_leaves_file_and_no_temp(task, tmp_path, monkeypatch):
    path = tmp_path / "p.jsonl"
    recs = _scripted_records(task, 3)
    for r in recs[:2]:
        append_demonstration(str(path), r)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        append_demonstration(str(path), recs[2])
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["p.jsonl"]


CRASH = r"""
import os, sys
sys.path.insert(0, {src!r})
from amplification import demonstrations as d
real_fdopen = os.fdopen
class Half:
    # a file object that writes half of what it is given, then the process dies (power cut)
    def __init__(self, fh): self.fh = fh
    def __enter__(self): return self
    def __exit__(self, *a): return False
    def write(self, b):
        self.fh.write(b[: max(1, len(b) // 2)]); self.fh.flush(); os._exit(9)
    def __getattr__(self, k): return getattr(self.fh, k)
os.fdopen = lambda fd, mode: Half(real_fdopen(fd, mode))
d.append_demonstration({path!r}, {{"task": "permutation", "big": "x" * 10000}})
"""


def test_crash_mid_write_never_corrupts_earlier_lines(task, tmp_path):
    path = tmp_path / "p.jsonl"
    recs = _scripted_records(task, 4)
    for r in recs:
        append_demonstration(str(path), r)
    before = path.read_bytes()
    p = subprocess.run([sys.executable, "-c", CRASH.format(src=os.path.abspath(SRC), path=str(path))],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 9, p.stderr
    assert path.read_bytes() == before  # the live file is untouched: only the temp file was cut
    assert len(load_demonstrations(task, str(path))) == 4
    # the next append still works and the stale temp file of the dead writer does not matter
    append_demonstration(str(path), recs[0])
    assert len(load_demonstrations(task, str(path))) == 5


def test_concurrent_appends_lose_nothing(task, tmp_path):
    path = str(tmp_path / "p.jsonl")
    recs = _scripted_records(task, 16)
    threads = [threading.Thread(target=append_demonstration, args=(path, r)) for r in recs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(json.loads(x)["index"] for x in open(path)) == list(range(16))


@pytest.mark.parametrize("mutate,match", [
    (lambda r: "{not json", r"p.jsonl:2: not a JSON line"),
    (lambda r: "[1, 2]", r"p.jsonl:2: expected a JSON object"),
    (lambda r: {**r, "task": "wildcard"}, r"p.jsonl:2: task 'wildcard'"),
    (lambda r: {**r, "params": {**r["params"], "log_iters": 6}}, r"p.jsonl:2: params"),
    (lambda r: {**r, "question_tokens": r["question_tokens"][:-1]}, r"p.jsonl:2: 'question_tokens'"),
    (lambda r: {**r, "h_answer_tokens": [999]}, r"p.jsonl:2: 'h_answer_tokens'"),
    (lambda r: {**r, "h_answer_tokens": ["a"]}, r"p.jsonl:2: 'h_answer_tokens'"),
    (lambda r: {**r, "transcript": r["transcript"] * 2}, r"p.jsonl:2: 'transcript'.*R=3"),
    (lambda r: {**r, "transcript": [{"subquestion_tokens": [0] * 5, "subanswer_tokens": [0]}]},
     r"p.jsonl:2: round 1 has a blank"),
    (lambda r: {**r, "transcript": [{"subquestion_tokens": [1] * 5}]}, r"p.jsonl:2: round 1: 'subanswer_tokens'"),
    (lambda r: {k: v for k, v in r.items() if k != "transcript"}, r"p.jsonl:2: 'transcript'"),
])
def test_bad_lines_name_file_and_line(task, tmp_path, mutate, match):
    path = tmp_path / "p.jsonl"
    good, bad = _scripted_records(task, 2)
    b = mutate(bad)
    path.write_text(json.dumps(good) + "\n" + (b if isinstance(b, str) else json.dumps(b)) + "\n")
    with pytest.raises(DemonstrationError, match=match) as e:
        load_demonstrations(task, str(path))
    assert "\n" not in str(e.value)


def test_load_missing_and_empty(task, tmp_path):
    with pytest.raises(FileNotFoundError):
        load_demonstrations(task, str(tmp_path / "none.jsonl"))
    (tmp_path / "e.jsonl").write_text("\n")
    tr = load_demonstrations(task, str(tmp_path / "e.jsonl"))
    assert len(tr) == 0 and tr.subquestions.shape == (0, 3, task.question_length)


def test_refuses_to_append_after_a_foreign_partial_line(task, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"task": "permutation"')  # written by something else, cut off
    with pytest.raises(DemonstrationError, match="incomplete"):
        append_demonstration(str(path), _scripted_records(task, 1)[0])
    assert path.read_text() == '{"task": "permutation"'
