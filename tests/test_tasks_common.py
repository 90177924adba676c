"""Properties every registered task must have, at paper scale and at the smallest sizes."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from amplification.human import amplify_h, amplify_h_batch
from amplification.tasks import TASKS, TaskError, make_task

# (task, params) at paper scale and a small configuration; sizes: full and the smallest useful
PAPER = {name: {} for name in TASKS}
SMALL = {
    "permutation": dict(nchars=2, length=1, log_iters=2),
    "assignments": dict(nchars=2, length=1),
    "wildcard": dict(nchars=2, length=1),
    "shortest_path": dict(nchars=2, length=1),
    "union_find": dict(nchars=2, length=1),
}
CASES = [(n, PAPER[n]) for n in TASKS] + [(n, SMALL[n]) for n in TASKS if n in SMALL]
IDS = [f"{n}-{'paper' if not p else 'small'}" for n, p in CASES]


def questions(task, n=2000, size=None, seed=0):
    size = size or task.max_size
    per = max(1, min(64, n))
    b = task.generate((n + per - 1) // per, size, seed, n_questions=per)
    return b


@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_h_with_oracle_returns_ground_truth(name, params):
    task = make_task(name, **params)
    for size in sorted({task.min_size, task.start_size, task.max_size}):
        b = questions(task, 2000, size, seed=size)
        tr = amplify_h_batch(task, b, rng=1)
        truth = b.answers.reshape(-1, task.answer_length)
        bad = np.flatnonzero((tr.answers != truth).any(-1))
        assert len(bad) == 0, (
            f"{name} size {size}: H wrong on {len(bad)} of {len(truth)}; first: "
            f"{task.decode(tr.questions[bad[0]])} -> {task.decode(tr.answers[bad[0]])}, "
            f"truth {task.decode(truth[bad[0]])}")
        assert (tr.asked <= task.rounds).all()


@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_every_class_occurs(name, params):
    task = make_task(name, **params)
    b = questions(task, 2000, task.max_size, seed=3)
    seen = {task.class_names[c] for c in b.classes.reshape(-1)}
    assert (b.classes >= 0).all(), "top-level questions must all have a class"
    assert set(task.classes_at(task.max_size)) <= seen


@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_top_level_questions_are_complex(name, params):
    task = make_task(name, **params)
    b = questions(task, 500, task.max_size, seed=4)
    assert not task.is_primitive(b.questions.reshape(-1, task.question_length)).any()


@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_h_with_random_subanswers_never_raises(name, params):
    task = make_task(name, **params)
    b = questions(task, 600, task.max_size, seed=5)
    rng = np.random.default_rng(0)
    ctx = np.repeat(np.arange(len(b)), b.questions.shape[1])
    qs = b.questions.reshape(-1, task.question_length)

    def random_tokens(c, q):  # any token of the vocabulary, or out of range
        return rng.integers(-3, task.nvocab + 3, (len(q), task.answer_length))

    def wrong_kind(c, q):  # well-formed but wrong: all-unknown
        return np.zeros((len(q), task.answer_length), dtype=np.int64)

    for answerer in (random_tokens, wrong_kind):
        tr = amplify_h(task, ctx, qs, answerer, None)
        assert tr.answers.shape == (len(qs), task.answer_length)
        assert ((tr.answers >= 0) & (tr.answers < task.nvocab)).all()
    # answering "unknown" to every subquestion gives "unknown" answers (the spec's fallback)
    tr = amplify_h(task, ctx, qs, wrong_kind, None)
    fallback = (tr.answers == 0).all(-1)
    if name == "shortest_path":  # the spec's H answers "infinite" when no step is a vertex
        fallback |= tr.answers[:, 0] == task.inf
    asked = tr.asked > 0  # questions H answers without asking (shortest path's a == b) do not count
    assert fallback[asked].mean() > 0.5


@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_same_seed_same_data_different_seed_differs(name, params):
    task = make_task(name, **params)
    a, b, c = (task.generate(8, task.max_size, s) for s in (7, 7, 8))
    for f in ("facts", "fact_mask", "questions", "answers", "classes"):
        assert np.array_equal(getattr(a, f), getattr(b, f))
    assert not (np.array_equal(a.facts, c.facts) and np.array_equal(a.questions, c.questions))


@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_shapes_and_padding(name, params):
    task = make_task(name, **params)
    b = task.generate(5, task.max_size, 0)
    assert b.facts.shape[2] == task.fact_length
    assert b.questions.shape[1] == b.facts.shape[1]  # default: one question per fact
    assert b.questions.shape[2] == task.question_length
    assert b.answers.shape[2] == task.answer_length
    assert (b.facts[~b.fact_mask] == 0).all() and (b.facts[b.fact_mask] != 0).any(-1).all()
    assert ((b.facts >= 0) & (b.facts < task.nvocab)).all()
    assert ((b.questions >= 0) & (b.questions < task.nvocab)).all()


@pytest.mark.parametrize("name", list(TASKS))
@settings(max_examples=60, deadline=None)
@given(idx=st.lists(st.integers(0, 10**6), min_size=1, max_size=20))
def test_name_encoding_round_trips(name, idx):
    task = make_task(name)
    idx = np.array(idx) % task.n_names
    tok = task.encode_names(idx)
    back, valid = task.decode_names(tok)
    assert valid.all() and np.array_equal(back, idx)
    text = task.decode(tok[0])
    assert len(text) == task.length and " " not in text


@pytest.mark.parametrize("name", list(TASKS))
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_decode_renders_every_record(name, seed):
    task = make_task(name)
    b = task.generate(1, task.max_size, seed, n_questions=3)
    for rec in list(b.facts[0]) + list(b.questions[0]) + list(b.answers[0]):
        text = task.decode(rec)
        assert text and "<" not in text


@pytest.mark.parametrize("name", list(TASKS))
def test_invalid_parameters_name_the_parameter(name):
    task = make_task(name)
    with pytest.raises(TaskError, match="size"):
        task.generate(1, task.max_size + 1, 0)
    with pytest.raises(TaskError, match="size"):
        task.generate(1, 0, 0)
    with pytest.raises(TaskError, match="nchars"):
        make_task(name, nchars=0)
    with pytest.raises(TaskError, match="bogus"):
        make_task(name, bogus=1)


def test_unknown_task():
    with pytest.raises(TaskError, match="unknown task"):
        make_task("nope")


def test_negative_exponent_bits():
    with pytest.raises(TaskError, match="log_iters"):
        make_task("permutation", log_iters=-1)


@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_replay_with_the_recorded_answers_gives_the_transcripts_back(name, params):
    """human.replay (what hprime_train.counterfactual builds on) reruns H on the flat transcripts
    H' trains on: with the recorded sub-answers it writes them again token for token, with the
    oracle and with random sub-answers; an answer that sends H elsewhere is refused."""
    from amplification.human import HumanProtocolError, Transcripts, replay

    task = make_task(name, **params)
    b = questions(task, 300, task.max_size, seed=3)
    rng = np.random.default_rng(0)
    ctx = np.repeat(np.arange(len(b)), b.questions.shape[1])
    qs = b.questions.reshape(-1, task.question_length)
    random_x = lambda c, q: rng.integers(0, task.nvocab, (len(q), task.answer_length))  # noqa: E731
    for answerer in (task.oracle(b, 1), random_x):
        tr = amplify_h(task, ctx, qs, answerer, task.oracle(b, 2))
        back = Transcripts.from_tokens(task, tr.tokens())
        for field in Transcripts.__dataclass_fields__:
            assert (getattr(back, field) == getattr(tr, field)).all(), field
        assert (replay(task, back, back.subanswers).tokens() == tr.tokens()).all()
    with pytest.raises(ValueError, match="transcripts of"):
        Transcripts.from_tokens(task, tr.tokens()[:, :-1])
    if name == "union_find":  # H's second question follows the first answer (wildcard's never do)
        other = tr.subanswers.copy()
        other[:, 0] = (other[:, 0] + 1) % task.nvocab
        with pytest.raises(HumanProtocolError, match="on replay, H asked transcript"):
            replay(task, tr, other)
