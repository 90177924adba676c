"""Wildcard search against an independent solver that reads only the decoded facts."""
import itertools
import math

import numpy as np
import pytest

from amplification.human import amplify_h, amplify_h_batch
from amplification.tasks import TaskError, make_task


def parse(task, facts, mask):
    """Decoded facts -> {string: +1/-1}."""
    values = {}
    for f, m in zip(facts, mask):
        assert m
        s, v = task.decode(f).split()
        assert s not in values and v in ("+1", "-1")
        values[s] = int(v)
    return values


def brute(values, pattern, nchars, length):
    """Enumerate every string the pattern matches and sum the values; clip to the name space."""
    assert len(pattern) == length
    letters = [chr(ord("a") + i) for i in range(nchars)]
    stars = [i for i, ch in enumerate(pattern) if ch == "*"]
    total = 0
    for fill in itertools.product(letters, repeat=len(stars)):
        s = list(pattern)
        for i, ch in zip(stars, fill):
            s[i] = ch
        total += values.get("".join(s), 0)
    c = math.ceil(nchars**length / 2)
    total = max(-c, min(c, total))
    return f"{total:+d}" if total else "0"


@pytest.mark.parametrize("params,sizes", [
    ({}, [1, 8, 33, 64]),
    (dict(length=2), [1, 2, 3, 4]),
    (dict(length=1), [1, 2]),  # C = 1: '*' over two equal values is clipped
    (dict(nchars=3, length=1), [1, 3]),
    (dict(nchars=3, length=3), [1, 27]),
])
def test_ground_truth_matches_enumeration(params, sizes):
    task = make_task("wildcard", **params)
    for size in sizes:
        b = task.generate(40, size, size, n_questions=50)
        for i in range(len(b)):
            values = parse(task, b.facts[i], b.fact_mask[i])
            assert len(values) == size
            for q, a, c in zip(b.questions[i], b.answers[i], b.classes[i]):
                pattern = task.decode(q)
                assert task.decode(a) == brute(values, pattern, task.nchars, task.length), pattern
                assert task.class_names[c] == f"wilds{pattern.count('*')}"


def test_clipping_happens_where_sums_can_exceed_the_bound():
    task = make_task("wildcard", nchars=3, length=1)  # C = 2, '*' sums three values
    b = task.generate(200, 3, 0, n_questions=1)
    sums = b.db["value"].sum(1)
    assert (np.abs(sums) == 3).any()
    assert np.array_equal(b.answers[:, 0, 0] - task.num0, np.clip(sums, -2, 2))


def test_primitive_questions_are_lookups():
    task = make_task("wildcard")
    b = task.generate(2, 40, 0)
    q = task.encode_names(np.arange(task.n_names))
    assert task.is_primitive(q).all()
    for i in range(2):
        values = parse(task, b.facts[i], b.fact_mask[i])
        a = task.answer(b.db, np.full(len(q), i), q)
        for s, r in zip(q, a):
            v = values.get(task.decode(s), 0)
            assert task.decode(r) == (f"{v:+d}" if v else "0")
            assert r[0] != 0  # absent is the number 0, not "unknown"
    assert not task.is_primitive(b.questions.reshape(-1, task.length)).any()
    # malformed questions: unknown
    bad = np.array([[0] * 6, [task.star, 0, 2, 2, 2, 2], [task.num0] * 6])
    assert (task.answer(b.db, np.zeros(3, int), bad) == 0).all()


def test_mean_subquestions_matches_spec():
    task = make_task("wildcard")
    b = task.generate(50, 64, 0)
    tr = amplify_h_batch(task, b)
    assert tr.asked.mean() == 2.0
    # both subquestions are primitive exactly when k = 1 (a sixth of the questions)
    assert abs(tr.primitive.mean() - 2 / 6) < 0.03
    assert np.array_equal(tr.primitive == 2, b.classes.reshape(-1) == 0)


def test_question_distribution():
    task = make_task("wildcard")
    b = task.generate(100, 64, 0, n_questions=64)
    q = b.questions.reshape(-1, task.length)
    star = q == task.star
    k = star.sum(1)
    assert k.min() >= 1 and k.max() <= 6
    assert np.allclose(np.bincount(k, minlength=7)[1:] / len(k), 1 / 6, atol=0.015)  # k uniform
    for kk in range(1, 7):  # given k, every position is equally likely a wildcard
        assert np.allclose(star[k == kk].mean(0), kk / 6, atol=0.05)
    letters = q[~star] - task._char_base
    assert set(np.unique(letters)) == {0, 1} and abs(letters.mean() - 0.5) < 0.02


def test_human_steps():
    task = make_task("wildcard")
    b = task.generate(1, 64, 0, n_questions=20)
    q = b.questions[0]
    ctx = np.zeros(len(q), int)
    tr = amplify_h(task, ctx, q, task.oracle(b), task.oracle(b))
    for j in range(len(q)):  # the first '*' becomes a, then b; the rest is unchanged
        w = int(np.argmax(q[j] == task.star))
        for c in range(2):
            sub = q[j].copy()
            sub[w] = task._char_base + c
            assert np.array_equal(tr.subquestions[j, c], sub)
    # a complete string: H asks it itself (one primitive round)
    s = task.encode_names(np.array([5, 9]))
    tr = amplify_h(task, np.zeros(2, int), s, task.oracle(b), task.oracle(b))
    assert (tr.asked == 1).all() and np.array_equal(tr.subquestions[:, 0], s)
    assert np.array_equal(tr.answers, task.answer(b.db, np.zeros(2, int), s))
    # a token that is neither a letter nor '*': unknown without a subquestion
    bad = q[:1].copy()
    bad[0, -1] = task.num0
    tr = amplify_h(task, np.zeros(1, int), bad, task.oracle(b), task.oracle(b))
    assert tr.asked[0] == 0 and tr.answers[0, 0] == 0
    # an "unknown" sub-answer makes the answer unknown
    tr = amplify_h(task, ctx, q, lambda c, x: np.zeros((len(x), 1), int), None)
    assert (tr.answers == 0).all()


def test_vocab_and_decode():
    task = make_task("wildcard")
    assert task.nvocab == 69 and task.clip == 32  # '?', '*', a, b, -32..+32 as in the original
    assert task.vocab.labels[task.num0] == "0" and task.vocab.labels[task.num0 + 3] == "+3"
    assert task.decode([task.star, 2, task.star, 3, 3, task.star]) == "*a*bb*"
    assert task.decode([2, 3, 2, 2, 2, 3, task.num0 - 1]) == "abaaab -1"
    with pytest.raises(TaskError, match="nchars"):
        make_task("wildcard", nchars=5, length=8)
