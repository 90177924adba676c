"""What every task environment shares: token vocabularies, names, batches, the task interface.

A task is an episode generator plus a scripted human. Everything is an integer token; token 0
means "unknown / I don't know" and is also the padding value. Facts, questions and answers are
fixed-length records right-padded with 0 (see ../shared/spec/tasks.md, "Shared shape").

Hot paths (context generation, ground truth, the primitive test) work on whole numpy batches.
The scripted human H is a plain Python generator per question: it is only run on the budgeted
decompose stage and in tests, and a generator reads like the decomposition in the spec.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Generator, Iterable

import numpy as np

UNKNOWN = 0  # "unknown / I don't know", also the padding token

# A scripted human: a generator that yields subquestions (int arrays of question_length tokens),
# receives each sub-answer (an int array of answer_length tokens) and returns the final answer.
HumanGen = Generator[np.ndarray, np.ndarray, np.ndarray]


class TaskError(ValueError):
    """Invalid task parameter; the message names the parameter and its allowed range."""


def check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    """Validate an integer parameter; raise TaskError naming it and its allowed range."""
    rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TaskError(f"{name} must be an integer in {rng}, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise TaskError(f"{name} must be in {rng}, got {value}")
    return int(value)


def check_bool(name: str, value) -> bool:
    """Validate a true/false parameter; raise TaskError naming it."""
    if not isinstance(value, (bool, np.bool_)):
        raise TaskError(f"{name} must be true or false, got {value!r}")
    return bool(value)


class Vocab:
    """Token ids and their labels: token 0 is '?', then control tokens, then labelled blocks."""

    def __init__(self) -> None:
        self.labels: list[str] = ["?"]
        # token id -> the number it stands for (depths, distances, sums): H' may embed these on a
        # shared number line (hprime.numbers), so that a value it has rarely seen is still a number
        self.numbers: dict[int, float] = {}

    def add(self, *labels: str) -> int:
        """Append a block of tokens; return the id of the first."""
        start = len(self.labels)
        self.labels.extend(labels)
        return start

    def add_numbers(self, values, *extra: str, label=str) -> int:
        """Append a block of number tokens, labelled `label(value)`, then `extra` labels (not
        numbers); return the id of the first."""
        values = list(values)
        start = self.add(*[label(v) for v in values], *extra)
        self.numbers.update({start + k: float(v) for k, v in enumerate(values)})
        return start

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Batch:
    """A batch of B contexts with Q top-level questions each.

    facts [B, F, fl], fact_mask [B, F] (True for a real fact; padding facts are all 0),
    questions [B, Q, ql], answers [B, Q, al] (ground truth), classes [B, Q] (index into the
    task's class_names). `db` holds the per-task arrays (leading axis B) that the oracle reads.
    """

    facts: np.ndarray
    fact_mask: np.ndarray
    questions: np.ndarray
    answers: np.ndarray
    classes: np.ndarray
    db: dict = field(repr=False)
    size: int = 0

    def __len__(self) -> int:
        return self.facts.shape[0]

    @property
    def ctx(self) -> np.ndarray:
        """Context index of every question, shape [B, Q]."""
        B, Q = self.questions.shape[:2]
        return np.broadcast_to(np.arange(B)[:, None], (B, Q))


class Task:
    """Base class of the five environments. Subclasses set the class attributes and implement
    `_contexts`, `_questions`, `answer`, `is_primitive`, `classify` and `human`."""

    name: str = ""
    title: str = ""
    # H's transcripts stay H's under any renaming of the name characters (H never orders or
    # compares names), so hprime_train.rename may train H' on renamed copies. False unless a
    # task's H is checked: wildcard's H asks the letters in alphabet order, for one
    renamable: bool = False
    # the task gives `counterfactual_answers`, so hprime_train.counterfactual may train H' on H's
    # transcripts for sub-answers X did not give (union find: X's depths shifted)
    counterfactual: bool = False
    rounds: int = 0  # R: the most subquestions H may ask
    fact_length: int = 0
    question_length: int = 0
    answer_length: int = 0
    class_names: list[str] = []
    question_forms: list[str] = []  # one line per question form, for help texts

    def __init__(self, nchars: int = 8, length: int = 2):
        self.nchars = check_int("nchars", nchars, 1, 26)
        self.length = check_int("length", length, 1, 8)
        self.n_names = self.nchars ** self.length
        self.vocab = Vocab()
        self._char_base = -1  # set by subclasses via _add_chars

    # ---- parameters ----------------------------------------------------------------------
    @property
    def params(self) -> dict:
        """The size parameters this task was built with (for configs and exports)."""
        return {"nchars": self.nchars, "length": self.length}

    @property
    def max_size(self) -> int:
        return self.n_names

    @property
    def min_size(self) -> int:
        return 1

    @property
    def start_size(self) -> int:
        """Where the original's curriculum starts (8 elements), capped at the name space."""
        return min(8, self.max_size)

    def check_size(self, size: int) -> int:
        return check_int("size", size, self.min_size, self.max_size)

    @property
    def nvocab(self) -> int:
        return len(self.vocab)

    # ---- names -----------------------------------------------------------------------------
    def _add_chars(self) -> None:
        self._char_base = self.vocab.add(*[chr(ord("a") + i) for i in range(self.nchars)])

    def encode_names(self, idx: np.ndarray) -> np.ndarray:
        """Name indices [...] -> tokens [..., length], most significant character first."""
        idx = np.asarray(idx, dtype=np.int64)
        powers = self.nchars ** np.arange(self.length - 1, -1, -1)
        digits = (idx[..., None] // powers) % self.nchars
        return digits + self._char_base

    def decode_names(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tokens [..., length] -> (name indices [...], valid [...]). Invalid names give index 0."""
        tokens = np.asarray(tokens, dtype=np.int64)
        digits = tokens - self._char_base
        valid = ((digits >= 0) & (digits < self.nchars)).all(-1)
        digits = np.where(valid[..., None], digits, 0)
        powers = self.nchars ** np.arange(self.length - 1, -1, -1)
        return (digits * powers).sum(-1), valid

    def name_of(self, tokens) -> int | None:
        """One name (tokens) -> index, or None if malformed. For the scripted human."""
        idx, valid = self.decode_names(np.asarray(tokens)[: self.length])
        return int(idx) if bool(valid) else None

    def is_char(self, t) -> bool:
        return self._char_base <= int(t) < self._char_base + self.nchars

    def in_name(self, t) -> bool:
        """Whether token t is written as part of a name word by `decode` (a character here)."""
        return self.is_char(t)

    # ---- records ----------------------------------------------------------------------------
    def record(self, parts: Iterable, length: int) -> np.ndarray:
        """Concatenate token pieces into one record right-padded with 0 to `length`."""
        out = np.zeros(length, dtype=np.int64)
        flat = np.concatenate([np.atleast_1d(np.asarray(p, dtype=np.int64)) for p in parts])
        out[: len(flat)] = flat[:length]
        return out

    def question(self, *parts) -> np.ndarray:
        return self.record(parts, self.question_length)

    def answer_record(self, *parts) -> np.ndarray:
        return self.record(parts, self.answer_length)

    def unknown(self) -> np.ndarray:
        return np.zeros(self.answer_length, dtype=np.int64)

    def decode(self, tokens) -> str:
        """Readable text of any record: labels joined by spaces, characters of a name merged,
        trailing padding dropped. '?' is the unknown token."""
        toks = [int(t) for t in np.asarray(tokens).reshape(-1)]
        while toks and toks[-1] == UNKNOWN:
            toks.pop()
        if not toks:
            return "?"
        words: list[str] = []
        run = 0  # characters in the name being merged; a name has `length` of them
        for t in toks:
            label = self.vocab.labels[t] if 0 <= t < self.nvocab else f"<{t}>"
            in_name = self.in_name(t)
            if in_name and 0 < run < self.length:
                words[-1] += label
                run += 1
            else:
                words.append(label)
                run = 1 if in_name else 0
        return " ".join(words)

    # ---- generation --------------------------------------------------------------------------
    def generate(self, n_contexts: int, size: int, seed_or_rng, n_questions: int | None = None) -> Batch:
        """Seeded batch of contexts at instance `size` with top-level questions and ground truth.

        n_questions defaults to the number of (padded) facts per context, as in training.
        """
        check_int("n_contexts", n_contexts, 1)
        size = self.check_size(size)
        rng = np.random.default_rng(seed_or_rng)
        facts, mask, db = self._contexts(n_contexts, size, rng)
        nq = facts.shape[1] if n_questions is None else check_int("n_questions", n_questions, 1)
        questions = self._questions(db, nq, rng)
        B, Q = questions.shape[:2]
        ctx = np.repeat(np.arange(B), Q)
        flat = questions.reshape(B * Q, -1)
        answers = self.answer(db, ctx, flat, rng).reshape(B, Q, self.answer_length)
        classes = self.classify(db, ctx, flat).reshape(B, Q)
        return Batch(facts, mask, questions, answers, classes, db, size)

    # ---- to implement --------------------------------------------------------------------------
    def _contexts(self, n: int, size: int, rng: np.random.Generator):
        """-> facts [B, F, fl], fact_mask [B, F], db (dict of arrays with leading axis B)."""
        raise NotImplementedError

    def _questions(self, db: dict, n_questions: int, rng: np.random.Generator) -> np.ndarray:
        """-> top-level (complex) questions [B, Q, ql]."""
        raise NotImplementedError

    def answer(self, db: dict, ctx: np.ndarray, q: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Ground truth of any question (top-level or primitive) -> [N, al]. For primitive
        questions this is the look-up oracle. Malformed questions get all-0 ("unknown").
        `rng` drives the stochastic primitives (random neighbours)."""
        raise NotImplementedError

    def is_primitive(self, q: np.ndarray) -> np.ndarray:
        """[N, ql] -> bool [N]: answered by the look-up oracle, never by the model."""
        raise NotImplementedError

    def classify(self, db: dict, ctx: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Difficulty class index (into class_names) of each question -> int [N]."""
        raise NotImplementedError

    def human(self, q: np.ndarray) -> HumanGen:
        """The scripted human H for one question; see HumanGen."""
        raise NotImplementedError

    def counterfactual_answers(self, subq: np.ndarray, suba: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Other sub-answers [N, R, al] for transcripts' subquestions [N, R, ql] and sub-answers: ones an
        answerer might have given, for which H asks the same subquestions (human.replay reruns H on
        them). Only tasks with `counterfactual = True` give them."""
        raise NotImplementedError(f"{self.name} gives no counterfactual sub-answers")

    def oracle(self, batch_or_db, rng=None) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """An answerer(ctx [N], questions [N, ql]) -> [N, al] that knows the truth of everything."""
        db = batch_or_db.db if isinstance(batch_or_db, Batch) else batch_or_db
        rng = np.random.default_rng(rng)
        return lambda ctx, q: self.answer(db, np.asarray(ctx), np.asarray(q), rng)

    def classes_at(self, size: int) -> list[str]:
        """The classes that can occur at instance `size` (default: all)."""
        return list(self.class_names)


def ceil_log2(n: int) -> int:
    return max(1, math.ceil(math.log2(max(n, 2))))
