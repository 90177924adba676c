"""Permutation powering against an independent solver: apply the permutation n times."""
import numpy as np
import pytest

from amplification.tasks import make_task


def brute(task, facts, mask, q):
    """Read sigma from the decoded facts and apply it n times (no repeated squaring)."""
    sigma = {}
    for f, m in zip(facts, mask):
        if m:
            a, b = task.decode(f).split()
            sigma[a] = b
    x, *bits = task.decode(q).split()
    n = int("".join(bits), 2)
    for _ in range(n):
        x = sigma[x]
    return x


@pytest.mark.parametrize("params", [{}, dict(nchars=2, length=1, log_iters=2), dict(nchars=3, length=2, log_iters=4)])
def test_ground_truth_matches_repeated_application(params):
    task = make_task("permutation", **params)
    for size in {1, task.start_size, task.max_size}:
        b = task.generate(40, size, size, n_questions=50)
        for i in range(len(b)):
            for j in range(b.questions.shape[1]):
                assert task.decode(b.answers[i, j]) == brute(task, b.facts[i], b.fact_mask[i], b.questions[i, j])


def test_exponent_distribution():
    task = make_task("permutation")
    b = task.generate(100, 64, 0, n_questions=64)
    n, ok = task.decode_bits(b.questions[..., task.length:])
    assert ok.all() and n.min() >= 2 and n.max() <= 63
    counts = np.bincount(b.classes.reshape(-1), minlength=5) / b.classes.size
    assert np.allclose(counts, 0.2, atol=0.02)  # bit-length uniform on 2..6


def test_primitive_questions_are_lookups():
    task = make_task("permutation")
    b = task.generate(1, 64, 0)
    x = b.facts[0, :, :2]
    q0 = np.concatenate([x, task.encode_bits(np.zeros(len(x), int))], -1)
    q1 = np.concatenate([x, task.encode_bits(np.ones(len(x), int))], -1)
    assert task.is_primitive(q0).all() and task.is_primitive(q1).all()
    ctx = np.zeros(len(x), int)
    assert np.array_equal(task.answer(b.db, ctx, q0), x)
    assert np.array_equal(task.answer(b.db, ctx, q1), b.facts[0, :, 2:])


def test_mean_subquestions_matches_spec():
    from amplification.human import amplify_h_batch

    task = make_task("permutation")
    tr = amplify_h_batch(task, task.generate(50, 64, 0))
    assert abs(tr.asked.mean() - 2.5) < 0.05
