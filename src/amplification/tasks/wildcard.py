"""Wildcard search: facts give +1/-1 values to strings; a question is a pattern with wildcards
and asks for the sum of the values of the context strings that match it.

Rendered example (nchars=2, length=3, size 6;
`amplification tasks show wildcard --length 3 --size 6 --seed 3`):

    facts:     aaa +1 | baa +1 | bbb -1 | aab -1 | bab -1 | bba -1     (aba, abb absent: 0)
    question:  **b                              strings ending in b (2 wildcards)
    H asks:    a*b  -> -1                       aab -1, abb absent
               b*b  -> -2                       bab -1, bbb -1
    answer:    -3

Facts: `(s_1 ... s_length, value)`, one per context string, value a number token +1 or -1;
strings absent from the context count 0. Question: a uniformly random string in which k
positions (k uniform on 1..length, the positions a uniform k-subset) are replaced by `*`.
Class: `wilds<k>`. Primitive: a question with no `*` (one fact look-up: the string's value, or
the number token 0 when it is absent, not the unknown token).

The clip. The spec clips answers to [-size/2, size/2]. We read "size" as the name space,
C = ceil(nchars**length / 2) (32 at paper scale), not the curriculum's instance size: H sees
only the question and its sub-answers, never the context, so the bound it clips to must follow
from the question alone. The original, too, fixes the bound when the task is built (+-32 at
paper scale, one number token each), not per instance. At full size both readings agree.
Clipping loses nothing inside H: a subquestion fixes at least one position, so it matches at
most nchars**(length-1) <= C strings and its true sum is never clipped; only H's final sum is,
so clip(sum of sub-answers) equals the clipped true sum.

H asks R = nchars subquestions: it replaces the first `*` by each letter in alphabet order and
answers the clipped sum. Each step removes one wildcard, so the recursion depth is k. Every
top-level question has a wildcard, so H always asks exactly nchars (2.0 at paper scale).
"""
from __future__ import annotations

import math

import numpy as np

from .base import UNKNOWN, HumanGen, Task, TaskError

MAX_NAMES = 4096  # one number token per possible sum, and a per-context table of all patterns


class WildcardSearch(Task):
    name = "wildcard"
    title = "Wildcard search"
    question_forms = [
        "PATTERN: length letters or '*'; the sum of the values of the matching strings",
        "STRING (no '*'): its value, 0 if absent (primitive)",
    ]

    def __init__(self, nchars: int = 2, length: int = 6):
        super().__init__(nchars, length)
        if self.n_names > MAX_NAMES:
            raise TaskError(f"nchars**length must be <= {MAX_NAMES} for wildcard, got {self.n_names}")
        self.clip = math.ceil(self.n_names / 2)  # C: fixed by the name space (module docstring)
        self.star = self.vocab.add("*")
        self._add_chars()
        C = self.clip
        self.num0 = self.vocab.add_numbers(range(-C, C + 1), label=lambda v: f"{v:+d}" if v else "0") + C
        self.rounds = self.nchars
        self.fact_length = self.length + 1
        self.question_length = self.length
        self.answer_length = 1
        self.class_names = [f"wilds{k}" for k in range(1, self.length + 1)]

    def is_number(self, t) -> np.ndarray:
        t = np.asarray(t)
        return (t >= self.num0 - self.clip) & (t <= self.num0 + self.clip)

    def encode_number(self, v) -> np.ndarray:
        return self.num0 + np.clip(v, -self.clip, self.clip)

    def in_name(self, t) -> bool:
        """A pattern reads as one word: '*' merges like a letter ('a*b')."""
        return self.is_char(t) or int(t) == self.star

    def _contexts(self, n, size, rng):
        M, n1, L = self.n_names, self.nchars + 1, self.length
        elems = np.argsort(rng.random((n, M)), axis=1)[:, :size]  # distinct, random order
        vals = 2 * rng.integers(0, 2, (n, size)) - 1
        value = np.zeros((n, M), dtype=np.int64)
        value[np.arange(n)[:, None], elems] = vals
        # the sum over every pattern at once: give each axis (position) an extra index nchars
        # meaning '*', holding the sum over that axis; a pattern is then one index
        s = value.reshape((n,) + (self.nchars,) * L)
        for ax in range(1, L + 1):
            s = np.concatenate([s, s.sum(axis=ax, keepdims=True)], axis=ax)
        sums = s.reshape(n, n1**L)
        facts = np.concatenate([self.encode_names(elems), (self.num0 + vals)[:, :, None]], axis=-1)
        mask = np.ones((n, size), dtype=bool)
        return facts, mask, {"elems": elems, "value": value, "sums": sums}

    def _questions(self, db, nq, rng):
        B = db["value"].shape[0]
        q = self.encode_names(rng.integers(0, self.n_names, (B, nq)))
        k = rng.integers(1, self.length + 1, (B, nq))
        # a uniform random permutation of the positions; the k of lowest rank become '*'
        rank = np.argsort(rng.random((B, nq, self.length)), axis=-1)
        return np.where(rank < k[..., None], self.star, q)

    # ---- truth ---------------------------------------------------------------------------------
    def _parse(self, q):
        """-> pattern index into db['sums'] [N], number of '*' [N], well-formed [N]."""
        q = np.asarray(q, dtype=np.int64)
        star = q == self.star
        digit = q - self._char_base
        letter = (digit >= 0) & (digit < self.nchars)
        valid = (star | letter).all(-1)
        digit = np.where(letter, digit, self.nchars)  # '*' (and junk) -> the sum index
        powers = (self.nchars + 1) ** np.arange(self.length - 1, -1, -1)
        return (digit * powers).sum(-1), star.sum(-1), valid

    def answer(self, db, ctx, q, rng=None):
        idx, _, valid = self._parse(q)
        out = self.encode_number(db["sums"][np.asarray(ctx), idx])
        return np.where(valid, out, UNKNOWN)[:, None]

    def is_primitive(self, q):
        return ~(np.asarray(q) == self.star).any(-1)

    def classify(self, db, ctx, q):
        _, k, valid = self._parse(q)
        return np.where(valid & (k >= 1), k - 1, -1)

    # ---- the scripted human -----------------------------------------------------------------------
    def human(self, q) -> HumanGen:
        q = np.asarray(q, dtype=np.int64)
        star = q == self.star
        if not all(s or self.is_char(t) for s, t in zip(star, q)):
            return self.unknown()
        if not star.any():
            a = yield q.copy()  # primitive: the oracle answers
            return self.answer_record(a[0]) if self.is_number(a[0]) else self.unknown()
        w = int(np.argmax(star))  # the first wildcard
        total = 0
        ok = True
        for c in range(self.nchars):
            sub = q.copy()
            sub[w] = self._char_base + c
            a = yield sub
            ok &= bool(self.is_number(a[0]))
            total += int(a[0]) - self.num0
        return self.answer_record(self.encode_number(total)) if ok else self.unknown()
