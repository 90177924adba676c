"""The command line: one-line errors with exit status 2, and the tasks commands."""
import json
import subprocess
import sys

import pytest

from amplification.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "amplification.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("args,needle", [
    (["tasks", "show", "nope"], "unknown task 'nope'"),
    (["tasks", "show", "permutation", "--size", "65"], "size must be in [1, 64]"),
    (["tasks", "show", "permutation", "--size", "0"], "size must be in [1, 64]"),
    (["tasks", "show", "permutation", "--log-iters", "-1"], "log_iters must be in"),
    (["tasks", "show", "wildcard", "--log-iters", "3"], "log_iters"),
    (["tasks", "export", "permutation", "--n", "0", "--seed", "1", "--out", "-"], "--n must be >= 1"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle):
    r = run(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("amplification: error:") and needle in lines[0], r.stderr


def test_tasks_list_names_all_five(capsys):
    assert main(["tasks", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("permutation", "assignments", "wildcard", "shortest_path", "union_find"):
        assert name in out


def test_tasks_show_renders_a_decomposition(capsys):
    assert main(["tasks", "show", "permutation", "--nchars", "4", "--length", "1", "--log-iters", "3", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "facts:" in out and "H asks:" in out and "ground truth:" in out


def test_tasks_export_jsonl(tmp_path):
    out = tmp_path / "perm.jsonl"
    assert main(["tasks", "export", "permutation", "--n", "20", "--seed", "4", "--out", str(out)]) == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 20
    r = recs[0]
    for key in ("facts", "question", "answer", "class", "transcript", "h_answer", "question_tokens", "answer_tokens"):
        assert key in r
    assert all(r["h_answer"] == r["answer"] for r in recs)  # H with oracle answers is right
    assert all(1 <= len(r["transcript"]) <= 3 for r in recs)
    again = tmp_path / "again.jsonl"
    main(["tasks", "export", "permutation", "--n", "20", "--seed", "4", "--out", str(again)])
    assert again.read_text() == out.read_text()  # same seed, same file
