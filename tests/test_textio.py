"""Typed text <-> token records: decode -> parse round trips for every registered task, and each
error a person can make."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from amplification.human import amplify_h_batch
from amplification.tasks import TASKS, make_task
from amplification.textio import (MAX_CHARS, ParseError, clean_text, context_names, parse_answer,
                                  parse_question, record_names)

SMALL = {
    "permutation": dict(nchars=8, length=1, log_iters=4),
    "assignments": dict(nchars=4, length=1),
    "wildcard": dict(nchars=2, length=3),
    "shortest_path": dict(nchars=4, length=1),
    "union_find": dict(nchars=4, length=1),
}
CASES = [(n, {}) for n in TASKS] + [(n, SMALL[n]) for n in TASKS if n in SMALL]
IDS = [f"{n}-{'paper' if not p else 'small'}" for n, p in CASES]


def _make(name, params):
    try:
        return make_task(name, **params)
    except Exception as e:  # a task under construction that does not take these parameters
        pytest.skip(f"{name}{params}: {e}")


def _round_trip(task, size, seed, n=4):
    b = task.generate(n, size, seed, n_questions=3)
    tr = amplify_h_batch(task, b, rng=seed)
    B, Q = b.questions.shape[:2]
    ctx = np.repeat(np.arange(B), Q)
    for i, q in enumerate(b.questions.reshape(B * Q, -1)):
        c = int(ctx[i])
        text = task.decode(q)
        assert np.array_equal(parse_question(task, text), q), text
        assert np.array_equal(parse_question(task, text, b, c), q), text
        truth = b.answers.reshape(B * Q, -1)[i]
        assert np.array_equal(parse_answer(task, task.decode(truth), truth), truth)
        assert np.array_equal(parse_answer(task, task.decode(tr.answers[i]), truth), tr.answers[i])
        for r in range(int(tr.asked[i])):
            sq, sa = tr.subquestions[i, r], tr.subanswers[i, r]
            assert np.array_equal(parse_question(task, task.decode(sq), b, c), sq), task.decode(sq)
            assert np.array_equal(parse_answer(task, task.decode(sa)), sa), task.decode(sa)


@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_round_trip_every_task(name, params):
    task = _make(name, params)
    for size in sorted({task.min_size, task.start_size, task.max_size}):
        _round_trip(task, size, seed=size)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), frac=st.floats(0, 1), which=st.sampled_from(sorted(TASKS)))
def test_round_trip_random(seed, frac, which):
    task = make_task(which)
    size = task.min_size + int(frac * (task.max_size - task.min_size))
    _round_trip(task, size, seed, n=2)


@settings(max_examples=50, deadline=None)
@given(toks=st.lists(st.integers(1, 20), min_size=1, max_size=5))
def test_any_token_record_round_trips_syntactically(toks):
    task = make_task("permutation", nchars=8, length=1, log_iters=4)
    rec = np.zeros(task.question_length, dtype=np.int64)
    rec[: len(toks)] = [t % (task.nvocab - 1) + 1 for t in toks]  # any non-zero token
    assert np.array_equal(parse_question(task, task.decode(rec)), rec)


# ---- errors ----------------------------------------------------------------------------------------
@pytest.fixture
def perm():
    task = make_task("permutation", nchars=8, length=1, log_iters=4)
    b = task.generate(1, 6, 0, n_questions=1)  # 6 of the 8 names are in the context
    return task, b


def _err(fn, *args, match):
    with pytest.raises(ParseError, match=match) as e:
        fn(*args)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_errors_on_raw_input(perm):
    task, b = perm
    _err(parse_question, task, "", match="empty")
    _err(parse_question, task, "   \t ", match="empty")
    _err(parse_question, task, "a " * (MAX_CHARS // 2 + 1), match=f"at most {MAX_CHARS}")
    _err(parse_question, task, b"\xff\xfe\x00binary", match="binary")
    _err(parse_question, task, "a\x00 0 0 1 0", match="non-printable character U\\+0000")
    _err(parse_question, task, "a\x1b[31m", match="non-printable")
    _err(parse_answer, task, b"\x80", match="binary")
    assert clean_text(b" a 1 ") == "a 1"


def test_errors_on_words(perm):
    task, b = perm
    _err(parse_question, task, "z 0 0 1 0", match="unknown word 'z'.*a-h, or one of: 0 1")
    _err(parse_question, task, "a 0 0 1 2", match="unknown word '2'")
    _err(parse_question, task, "ab 0 0 1 0", match="'ab' is not a name: a name has exactly 1 character")
    _err(parse_question, task, "a 0 0 1 0 1", match="too long: 6 tokens.*at most 5")
    _err(parse_question, task, "a ? 1", match="'\\?'")
    task2 = make_task("permutation")  # names of 2 characters
    _err(parse_question, task2, "a 0 0 0 0 1 1", match="exactly 2 characters")
    c = task2._char_base
    assert parse_question(task2, "ab 0 0 0 0 1 1").tolist() == [c, c + 1, 1, 1, 1, 1, 2, 2]
    _err(parse_question, task2, "a1 0 0 0 0 1 1", match="unknown word 'a1'")  # decode never merges these


def test_wrong_form_and_unknown_name(perm):
    task, b = perm
    names = context_names(task, b)
    absent = sorted(set("abcdefgh") - set(names))
    assert len(names) == 6 and len(absent) == 2
    x = names[0]
    # forms: NAME + exactly log_iters bits; too few bits or bits first is the wrong form
    _err(parse_question, task, f"{x} 0 1", b, 0, match="wrong form")
    _err(parse_question, task, f"0 0 1 0 {x}", b, 0, match="wrong form")
    _err(parse_question, task, f"{x} {x} 0 1 0", b, 0, match="wrong form")
    _err(parse_question, task, f"{absent[0]} 0 0 1 0", b, 0, match=f"unknown name '{absent[0]}'")
    # valid: complex and primitive forms, the exponent 0 included
    assert parse_question(task, f"{x} 0 0 1 0", b, 0)[0] == task._char_base + "abcdefgh".index(x)
    assert task.is_primitive(parse_question(task, f"{x} 0 0 0 1", b, 0)[None])[0]
    assert task.is_primitive(parse_question(task, f"{x} 0 0 0 0", b, 0)[None])[0]
    # explicit names in play override the context's
    assert parse_question(task, f"{absent[0]} 0 0 1 0", b, 0, [absent[0]]) is not None


def test_answer_type(perm):
    task, b = perm
    truth = b.answers[0, 0]
    assert task.is_char(truth[0])
    _err(parse_answer, task, "1", truth, match="wrong answer type: '1' is a value.*is a name")
    _err(parse_answer, task, "a b", truth, match="answer too long")
    _err(parse_answer, task, "ab", truth, match="not a name")
    assert parse_answer(task, "?", truth).tolist() == [0]
    assert parse_answer(task, " c ", truth).tolist() == [task._char_base + 2]
    _err(parse_answer, task, "? a", truth, match="alone")


def test_record_names():
    task = make_task("permutation")
    q = parse_question(task, "ab 0 0 1 0 1 1")
    assert record_names(task, q) == ["ab"]
    f = np.array([task._char_base, task._char_base + 1, task._char_base + 2, task._char_base + 3])
    assert record_names(task, f) == ["ab", "cd"]


@pytest.mark.skipif("wildcard" not in TASKS, reason="wildcard task not registered")
def test_wildcard_patterns_and_absent_strings():
    task = make_task("wildcard", nchars=2, length=3)
    b = task.generate(1, 4, 1, n_questions=1)  # 4 of the 8 strings present
    present = set(context_names(task, b, questions=False))
    absent = sorted({a + b_ + c for a in "ab" for b_ in "ab" for c in "ab"} - present)
    # an absent string is a legitimate primitive question (value 0), not an unknown name
    q = parse_question(task, absent[0], b, 0)
    assert task.is_primitive(q[None])[0]
    assert parse_question(task, "a*b", b, 0).tolist() == parse_question(task, "a*b").tolist()
    _err(parse_question, task, "a*", b, 0, match="unknown word|wrong form")


@settings(max_examples=60, deadline=None)
@given(which=st.sampled_from(sorted(TASKS)), data=st.data())
def test_any_typed_words_parse_or_raise_parse_error(which, data):
    """Whatever a person types from the task's words, parsing in context never fails otherwise."""
    from amplification.textio import word_labels

    task = make_task(which, **SMALL.get(which, {}))
    b = task.generate(1, task.start_size, data.draw(st.integers(0, 1000)), n_questions=1)
    alpha = "".join(chr(ord("a") + i) for i in range(task.nchars))
    name = st.text(alphabet=alpha, min_size=task.length, max_size=task.length)
    words = st.lists(st.one_of(st.sampled_from(word_labels(task)), name, st.sampled_from(["?", "x", "**", "a1"])),
                     min_size=0, max_size=task.question_length + 1)
    text = " ".join(data.draw(words))
    for fn, args in [(parse_question, (b, 0)), (parse_answer, (b.answers[0, 0],))]:
        try:
            fn(task, text, *args)
        except ParseError:
            pass
