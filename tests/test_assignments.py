"""Sequential assignments against an independent solver that reads only the decoded facts."""
import re

import numpy as np
import pytest

from amplification.human import amplify_h, amplify_h_batch
from amplification.tasks import TaskError, make_task

VALUE = re.compile(r"v\d+$")  # value labels; names are letters only


def parse(task, facts, mask):
    """Decoded facts -> (definitions {x: value label | (y, z)}, table {(a, b): c})."""
    defs, table = {}, {}
    for f, m in zip(facts, mask):
        if not m:
            assert not f.any()
            continue
        words = task.decode(f).split()
        if len(words) == 2:  # leaf: x v
            assert VALUE.match(words[1]) and not VALUE.match(words[0])
            defs[words[0]] = words[1]
        elif VALUE.match(words[0]):  # table: a b c
            a, b, c = words
            assert (a, b) not in table, "a table pair must appear once"
            table[a, b] = c
        else:  # compound: x y z
            x, y, z = words
            defs[x] = (y, z)
    return defs, table


def evaluate(defs, table):
    """Value and depth of every variable, by plain recursion with memoisation."""
    memo = {}

    def ev(x):
        if x not in memo:
            d = defs[x]
            if isinstance(d, str):
                memo[x] = (d, 0)
            else:
                (vy, dy), (vz, dz) = ev(d[0]), ev(d[1])
                memo[x] = (table[vy, vz], 1 + max(dy, dz))
        return memo[x]

    return {x: ev(x) for x in defs}


def band(depth):
    return "depth0 depth1 depth2 depth3-4 depth3-4".split()[depth] if depth < 5 else "depth5+"


def check_batch(task, b):
    n = 0
    for i in range(len(b)):
        defs, table = parse(task, b.facts[i], b.fact_mask[i])
        assert len(defs) == b.size
        truth = evaluate(defs, table)
        # the table is lazy: exactly the pairs some definition needs, each once
        compounds = [d for d in defs.values() if not isinstance(d, str)]
        needed = {(truth[y][0], truth[z][0]) for y, z in compounds}
        assert set(table) == needed
        assert b.fact_mask[i].sum() == len(defs) + len(table)
        for q, a, c in zip(b.questions[i], b.answers[i], b.classes[i]):
            kind, x = task.decode(q).split()
            assert kind == "C"
            value, depth = truth[x]
            assert task.decode(a) == value
            assert task.class_names[c] == band(depth)
            n += 1
    return n


@pytest.mark.parametrize("params,sizes", [
    ({}, [1, 8, 30, 64]),
    (dict(nchars=2, length=1), [1, 2]),
    (dict(nchars=3, length=2), [1, 2, 5, 9]),
    (dict(nchars=8, length=2, num_values=3), [64]),
])
def test_ground_truth_matches_recursive_evaluation(params, sizes):
    task = make_task("assignments", **params)
    for size in sizes:
        b = task.generate(40, size, size, n_questions=50)
        assert check_batch(task, b) >= 2000


def test_primitive_questions_are_lookups():
    task = make_task("assignments")
    b = task.generate(3, 64, 1)
    for i in range(len(b)):
        defs, table = parse(task, b.facts[i], b.fact_mask[i])
        enc = task.encode_names(b.db["order"][i])  # every variable of the context
        assert {task.decode(x) for x in enc} == set(defs)
        qa, qb, qc = (np.concatenate([np.full((len(enc), 1), t), enc], 1)
                      for t in (task.tok_a, task.tok_b, task.tok_c))
        assert task.is_primitive(qa).all() and task.is_primitive(qb).all() and not task.is_primitive(qc).any()
        ctx = np.full(len(enc), i)
        aa, ab = task.answer(b.db, ctx, qa), task.answer(b.db, ctx, qb)
        for x, ra, rb in zip(enc, aa, ab):
            d = defs[task.decode(x)]
            if isinstance(d, str):  # a leaf: both operand questions give its value
                assert task.decode(ra) == task.decode(rb) == d
            else:
                assert (task.decode(ra), task.decode(rb)) == d
        # every ordered value pair: the table entry if the context has that fact, else unknown
        K = task.num_values
        a, c = np.divmod(np.arange(K * K), K)
        qt = np.stack([task.val0 + a, task.val0 + c, np.zeros(K * K, int)], 1)
        assert task.is_primitive(qt).all()
        at = task.answer(b.db, np.full(K * K, i), qt)
        for p, r in zip(qt, at):
            key = tuple(task.decode(p).split())
            assert task.decode(r) == table.get(key, "?")
    # questions about names that are not variables of the context, or malformed ones: unknown
    small = task.generate(1, 4, 0)
    absent = np.setdiff1d(np.arange(task.n_names), small.db["order"][0])[:5]
    q = np.concatenate([np.full((5, 1), task.tok_c), task.encode_names(absent)], 1)
    assert (task.answer(small.db, np.zeros(5, int), q) == 0).all()
    assert (task.answer(small.db, np.zeros(2, int), np.array([[0, 0, 0], [task.tok_c, 1, 2]])) == 0).all()


def test_mean_subquestions_matches_spec():
    task = make_task("assignments")
    b = task.generate(50, 64, 0)
    tr = amplify_h_batch(task, b)
    assert abs(tr.asked.mean() - 4.5) < 0.08
    assert abs(tr.primitive.mean() - 2.75) < 0.08  # A x always; B x and the look-up for compounds
    leaf = b.classes.reshape(-1) == 0
    assert (tr.asked[leaf] == 1).all() and (tr.asked[~leaf] == 5).all()


def test_question_distribution_uniform_over_variables():
    task = make_task("assignments")
    b = task.generate(200, 64, 0, n_questions=64)
    x, ok = task.decode_names(b.questions[..., 1:])
    assert ok.all() and (b.questions[..., 0] == task.tok_c).all()
    pos = np.take_along_axis(b.db["pos"], x, axis=1)  # definition position of each question
    assert (pos >= 0).all()
    counts = np.bincount(pos.reshape(-1), minlength=64) / pos.size
    assert np.abs(counts - 1 / 64).max() < 0.006
    assert abs((pos < 8).mean() - 1 / 8) < 0.01  # 8 leaves at size 64


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8, 11, 12, 16, 40, 64])
def test_listed_classes_occur_and_unlisted_are_rare(size):
    task = make_task("assignments")
    listed = task.classes_at(size)
    # as the common test draws them: 2000 questions in contexts of 64 questions
    b = task.generate(32, size, 100 + size, n_questions=64)
    seen = {task.class_names[c] for c in b.classes.reshape(-1)}
    assert set(listed) <= seen
    # frequencies from many contexts: listed bands hold >= 2%, unlisted ones < 3%
    b = task.generate(400, size, 200 + size, n_questions=16)
    freq = np.bincount(b.classes.reshape(-1), minlength=len(task.class_names)) / b.classes.size
    for name, f in zip(task.class_names, freq):
        assert (f >= 0.02) if name in listed else (f < 0.03), (name, f)


def test_facts_are_shuffled_and_padded():
    task = make_task("assignments")
    b = task.generate(20, 64, 0)
    counts = b.fact_mask.sum(1)
    assert counts.min() < counts.max() == b.facts.shape[1]  # fact count varies; padded to max
    assert (b.fact_mask[:, :-1] >= b.fact_mask[:, 1:]).all()  # padding at the tail
    # table facts (first token a value) are spread among the definitions, not grouped at the end
    is_table = task.is_value(b.facts[..., 0]) & b.fact_mask
    first_def = np.argmax(~is_table & b.fact_mask, axis=1)
    assert (first_def > 0).any()
    # definitions are not in definition order: some compound precedes a leaf
    leaf = (b.facts[..., task.length] >= task.val0) & ~is_table
    compound = b.fact_mask & ~is_table & ~leaf
    assert (np.argmax(compound, 1) < np.argmax(leaf, 1)).any()


def test_human_guards():
    task = make_task("assignments")
    b = task.generate(2, 64, 0, n_questions=10)
    q = b.questions.reshape(-1, task.question_length)
    ctx = np.repeat(np.arange(2), 10)
    # a value where a compound's second operand belongs is malformed -> unknown
    def liar(c, qs):
        out = task.answer(b.db, c, qs)
        bad = qs[:, 0] == task.tok_b
        out[bad] = [task.val0, 0]
        return out
    tr = amplify_h(task, ctx, q, liar, None)
    compound = b.classes.reshape(-1) > 0
    assert (tr.answers[compound] == 0).all()
    assert np.array_equal(tr.answers[~compound], b.answers.reshape(-1, 2)[~compound])
    # questions that are not `C name` get unknown without a subquestion
    tr = amplify_h(task, np.zeros(2, int), np.array([[task.tok_a, *q[0, 1:]], [task.tok_c, 0, 0]]), liar, None)
    assert (tr.answers == 0).all() and (tr.asked == 0).all()


def test_num_values_parameter():
    assert make_task("assignments").num_values == 8
    assert make_task("assignments", nchars=2, length=1).num_values == 1
    task = make_task("assignments", num_values=3)
    b = task.generate(5, 64, 0)
    vals = b.answers[..., 0] - task.val0
    assert set(np.unique(vals)) <= {0, 1, 2}
    for bad in (0, 65, 2.5, True):
        with pytest.raises(TaskError, match="num_values"):
            make_task("assignments", num_values=bad)
    with pytest.raises(TaskError, match="nchars"):
        make_task("assignments", nchars=26, length=3)
