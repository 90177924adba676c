"""Typed text -> token records for any Task: the inverse of `Task.decode`.

A person acting as H types questions and answers as words separated by spaces, exactly as
`Task.decode` shows them. A word is either

- a vocabulary label of a non-character token (e.g. '0', '1', 'D', '*', '+3'), or
- a name: exactly `task.length` characters of the task's alphabet ('a'.. in `nchars` letters),
  which becomes `task.length` character tokens. With length-1 names a character label and a
  name coincide;
- a word that the task's own `decode` merges from one-character tokens, such as a wildcard
  pattern 'a*b' (read letter by letter, kept only if `decode` gives the word back).

A word that means more than one token (two blocks that share a label, or a label that is also a
name) is ambiguous; parsing tries every reading, in vocabulary order, and keeps the first that
passes the check of its use (a valid subquestion form, a valid answer type).

Checks, each raising `ParseError` with a one-line message that names the problem:

- raw input: binary (not UTF-8) or non-printable characters, empty, longer than MAX_CHARS;
- words: unknown word, a name of the wrong length, too many tokens for the record;
- subquestions (`parse_question` with a context): an unknown name (a well-formed name that is not
  in play: it occurs in none of the context's facts or top-level questions, nor in the names
  passed in, e.g. those answered so far; and the question's ground truth is "unknown"; the second
  condition keeps questions about legitimately absent elements, such as a wildcard string that
  is not in the context), or a wrong form:
  the question must be either primitive (`task.is_primitive`) or of a class
  (`task.classify(...) >= 0`), i.e. its ground truth is computable;
- final answers (`parse_answer` with the ground truth): at most `answer_length` tokens, and of
  the right kind. The rule is deliberately generic: the answer's first token must be in the same
  token block as the ground truth's first token, where the blocks are "a character of a name"
  and "any other label". So a name cannot answer a question whose answer is a value, number or
  distance, and vice versa. A lone '?' ("I don't know", the all-0 record) is always accepted: the
  scripted H answers unknown too when a sub-answer is malformed.

The unknown token '?' may not appear inside a question or next to other answer words: it is also
the padding value, so it could not round-trip.
"""
from __future__ import annotations

import itertools
from typing import Iterable

import numpy as np

from .tasks.base import UNKNOWN, Task

MAX_CHARS = 200  # the longest text accepted for one question or answer
MAX_READINGS = 4096  # ambiguous words: the most readings tried before giving up


class ParseError(ValueError):
    """Typed text that is not a valid record; the message is one line naming the problem."""


# ---- the vocabulary as words ------------------------------------------------------------------
def _alphabet(task: Task) -> str:
    return "".join(task.vocab.labels[t] for t in range(task.nvocab) if task.is_char(t))


def _label_tokens(task: Task) -> dict[str, list[int]]:
    """Non-character labels -> their tokens (a list: blocks may share a label), '?' excluded."""
    out: dict[str, list[int]] = {}
    for t, label in enumerate(task.vocab.labels):
        if t == UNKNOWN or task.is_char(t):
            continue
        out.setdefault(label, []).append(t)
    return out


def word_labels(task: Task) -> list[str]:
    """The non-name words the task knows (for help texts), in vocabulary order, deduplicated."""
    return list(_label_tokens(task))


def _describe_words(task: Task) -> str:
    alpha = _alphabet(task)
    span = f"{alpha[0]}-{alpha[-1]}" if len(alpha) > 1 else alpha
    plural = "s" if task.length > 1 else ""
    labels = word_labels(task)
    shown = " ".join(labels[:24]) + (" ..." if len(labels) > 24 else "")
    return f"a name of {task.length} character{plural} from {span}" + (f", or one of: {shown}" if labels else "")


def _word_readings(task: Task, word: str, labels: dict[str, list[int]], alphabet: str) -> list[list[int]]:
    readings = [[t] for t in labels.get(word, [])]
    if word and all(c in alphabet for c in word):
        if len(word) == task.length:
            readings.append([task._char_base + alphabet.index(c) for c in word])
        elif not readings:
            plural = "s" if task.length > 1 else ""
            raise ParseError(f"'{word}' is not a name: a name has exactly {task.length} character{plural}")
    if not readings and 1 < len(word) <= task.length:
        # a word that the task's own decode merges from several one-character tokens, such as a
        # wildcard pattern 'a*b': read it letter by letter and keep it if decode gives it back
        toks = []
        for c in word:
            if c in alphabet:
                toks.append(task._char_base + alphabet.index(c))
            elif c in labels:
                toks.append(labels[c][0])
            else:
                break
        else:
            if task.decode(toks) == word:
                readings.append(toks)
    if not readings:
        raise ParseError(f"unknown word '{_short(word)}': expected {_describe_words(task)}")
    return readings


def _short(s: str, n: int = 20) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


# ---- raw text ---------------------------------------------------------------------------------------
def clean_text(text) -> str:
    """Check raw input (str or bytes): UTF-8, printable, not empty, at most MAX_CHARS."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("binary input: the text is not UTF-8") from None
    if not isinstance(text, str):
        raise ParseError(f"expected text, got {type(text).__name__}")
    if len(text) > MAX_CHARS:
        raise ParseError(f"input too long: {len(text)} characters, at most {MAX_CHARS}")
    for i, c in enumerate(text):
        if not (c.isprintable() or c in " \t"):
            raise ParseError(f"non-printable character U+{ord(c):04X} at position {i + 1}")
    text = text.strip()
    if not text:
        raise ParseError("empty input")
    return text


def tokenize(task: Task, text) -> list[list[list[int]]]:
    """Text -> per word, its readings (each a list of tokens). Raises ParseError."""
    text = clean_text(text)
    labels = _label_tokens(task)
    alphabet = _alphabet(task)
    words = text.split()
    if "?" in words:
        raise ParseError("'?' (unknown) may only be given alone, as the answer 'I don't know'")
    return [_word_readings(task, w, labels, alphabet) for w in words]


def _readings(task: Task, text, length: int, what: str) -> Iterable[np.ndarray]:
    per_word = tokenize(task, text)
    n_min = sum(min(len(r) for r in rs) for rs in per_word)
    if n_min > length:
        article = "an" if what[0] in "aeiou" else "a"
        raise ParseError(f"{what} too long: {n_min} tokens, {article} {what} has at most {length}")
    count = 0
    for combo in itertools.product(*per_word):
        count += 1
        if count > MAX_READINGS:
            break
        flat = [t for r in combo for t in r]
        if len(flat) <= length:
            out = np.zeros(length, dtype=np.int64)
            out[: len(flat)] = flat
            yield out


# ---- the context: names in play -----------------------------------------------------------------
def record_names(task: Task, tokens) -> list[str]:
    """Names in one record: runs of `length` character tokens, split as `Task.decode` merges them."""
    alpha = _alphabet(task)
    names: list[str] = []
    run: list[str] = []
    for t in [int(t) for t in np.asarray(tokens).reshape(-1)]:
        if task.is_char(t):
            run.append(alpha[t - task._char_base])
            if len(run) == task.length:
                names.append("".join(run))
                run = []
        else:
            run = []
    return names


def context_names(task: Task, batch, ctx: int = 0, questions: bool = True) -> list[str]:
    """The names in play in context `ctx` of a Batch, sorted: those occurring in its facts and,
    with `questions`, in its top-level questions (an element may occur in no fact, such as an
    isolated vertex, and still be asked about)."""
    names: set[str] = set()
    for f, m in zip(batch.facts[ctx], batch.fact_mask[ctx]):
        if m:
            names.update(record_names(task, f))
    if questions:
        for q in batch.questions[ctx]:
            names.update(record_names(task, q))
    return sorted(names)


# ---- questions and answers ------------------------------------------------------------------------
def _form_ok(task: Task, batch, ctx: int, q: np.ndarray) -> bool:
    q2 = q[None, :]
    try:
        if bool(task.is_primitive(q2)[0]):
            return True
        return batch is not None and int(task.classify(batch.db, np.array([ctx]), q2)[0]) >= 0
    except Exception:  # noqa: BLE001 - a task that does not guard a malformed record: not a valid form
        return False


def _truth(task: Task, batch, ctx: int, q: np.ndarray) -> np.ndarray:
    try:
        rng = np.random.default_rng(0)  # stochastic primitives: any draw tells known/unknown
        return task.answer(batch.db, np.array([ctx]), q[None, :], rng)[0]
    except Exception:  # noqa: BLE001 - as above: unknown
        return np.zeros(task.answer_length, dtype=np.int64)


def parse_question(task: Task, text, batch=None, ctx: int = 0, names: Iterable[str] | None = None) -> np.ndarray:
    """Text -> question record [question_length].

    Without a batch only the words are checked (and the first reading is returned). With a Batch
    and a context index, the question must be a subquestion H may ask in that context: no unknown
    name, and a form the task accepts (primitive, or of a difficulty class). `names` overrides
    the names in play (default: `context_names`, the names in the context's facts and questions)."""
    readings = list(_readings(task, text, task.question_length, "question"))
    if not readings:
        raise ParseError(f"question too long: a question has at most {task.question_length} tokens")
    if batch is None:
        return readings[0]
    known = set(context_names(task, batch, ctx) if names is None else names)
    first_error = None
    for q in readings:
        missing = [n for n in record_names(task, q) if n not in known]
        if missing and not _truth(task, batch, ctx, q).any():
            first_error = first_error or ParseError(f"unknown name '{missing[0]}': it is not in this context")
            continue
        if _form_ok(task, batch, ctx, q):
            return q
        first_error = first_error or ParseError(
            f"wrong form: '{task.decode(q)}' is not a question of this task; forms: "
            + "; ".join(task.question_forms))
    raise first_error


def _block(task: Task, t: int) -> str:
    return "name" if task.is_char(t) else "value"


def parse_answer(task: Task, text, truth=None) -> np.ndarray:
    """Text -> answer record [answer_length]. '?' alone is the unknown answer (all 0).

    With the ground-truth answer `truth`, the answer's first token must be of the same block
    (a name's character vs any other label) as the truth's first token (see module docstring)."""
    cleaned = clean_text(text)
    if cleaned == "?":
        return np.zeros(task.answer_length, dtype=np.int64)
    readings = list(_readings(task, cleaned, task.answer_length, "answer"))
    if not readings:
        raise ParseError(f"answer too long: an answer has at most {task.answer_length} tokens")
    if truth is None:
        return readings[0]
    truth = np.asarray(truth, dtype=np.int64).reshape(-1)
    if truth.shape[0] != task.answer_length or truth[0] == UNKNOWN:
        return readings[0]
    want = _block(task, truth[0])
    for a in readings:
        if _block(task, a[0]) == want:
            return a
    got = _block(task, readings[0][0])
    raise ParseError(f"wrong answer type: '{cleaned}' is a {got}, this question's answer is a {want}")


def format_record(task: Task, tokens) -> str:
    """The text a person sees for a record (`Task.decode`); `parse_*` accepts it back."""
    return task.decode(tokens)


__all__ = ["MAX_CHARS", "ParseError", "clean_text", "context_names", "format_record", "parse_answer",
           "parse_question", "record_names", "tokenize", "word_labels"]
