"""Permutation powering: facts are a permutation sigma; a question (x, n) asks for sigma^n(x).

Rendered example (nchars=4, length=1, log_iters=3, size 4; `amplification tasks show permutation`):

    facts:     a c | b d | c a | d b            (x, sigma(x))
    question:  b 1 0 1                          sigma^5(b), exponent bits most significant first
    H asks:    b 0 1 0  -> d                    y = sigma^2(b)
               d 0 1 0  -> b                    z = sigma^2(y)
               b 0 0 1  -> d   (primitive)      n is odd: sigma(z)
    answer:    d

H halves the exponent: sigma^(2h)(x) = sigma^h(sigma^h(x)) and sigma^(2h+1)(x) =
sigma(sigma^h(sigma^h(x))); exponents 0 and 1 are single fact look-ups (primitive).
"""
from __future__ import annotations

import numpy as np

from .base import HumanGen, Task, check_int


class PermutationPowering(Task):
    name = "permutation"
    title = "Permutation powering"
    question_forms = ["NAME BITS: sigma^n(NAME), n written in log_iters bits (0/1), most significant first"]

    def __init__(self, nchars: int = 8, length: int = 2, log_iters: int = 6):
        super().__init__(nchars, length)
        # the bit-length of a top-level exponent is uniform on 2..log_iters, so we need >= 2
        self.log_iters = check_int("log_iters", log_iters, 2, 16)
        self.bit0 = self.vocab.add("0", "1")
        self.bit1 = self.bit0 + 1
        self._add_chars()
        self.rounds = 3
        self.fact_length = 2 * self.length
        self.question_length = self.length + self.log_iters
        self.answer_length = self.length
        self.class_names = [f"bits{L}" for L in range(2, self.log_iters + 1)]

    @property
    def params(self) -> dict:
        return {**super().params, "log_iters": self.log_iters}

    # ---- encodings --------------------------------------------------------------------------
    def encode_bits(self, n: np.ndarray) -> np.ndarray:
        """Exponents [...] -> bit tokens [..., log_iters], most significant first."""
        shifts = np.arange(self.log_iters - 1, -1, -1)
        return ((np.asarray(n)[..., None] >> shifts) & 1) + self.bit0

    def decode_bits(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bits = np.asarray(tokens) - self.bit0
        valid = ((bits == 0) | (bits == 1)).all(-1)
        bits = np.where(valid[..., None], bits, 0)
        return (bits << np.arange(self.log_iters - 1, -1, -1)).sum(-1), valid

    # ---- generation -------------------------------------------------------------------------
    def _contexts(self, n, size, rng):
        M = self.n_names
        # size distinct names per context: the first `size` of a random permutation of the domain
        elems = np.argsort(rng.random((n, M)), axis=1)[:, :size]
        images = elems[np.arange(n)[:, None], np.argsort(rng.random((n, size)), axis=1)]
        perm = np.full((n, M), -1, dtype=np.int64)
        np.put_along_axis(perm, elems, images, axis=1)
        # sigma^(2^k) by repeated squaring; absent names map to themselves (never queried)
        ident = np.broadcast_to(np.arange(M), (n, M))
        p = np.where(perm >= 0, perm, ident)
        pows = [p]
        for _ in range(self.log_iters - 1):
            p = np.take_along_axis(p, p, axis=1)
            pows.append(p)
        facts = np.concatenate([self.encode_names(elems), self.encode_names(images)], axis=-1)
        mask = np.ones((n, size), dtype=bool)
        return facts, mask, {"elems": elems, "perm": perm, "pow2": np.stack(pows, axis=1)}

    def _questions(self, db, nq, rng):
        elems = db["elems"]
        B, size = elems.shape
        x = np.take_along_axis(elems, rng.integers(0, size, (B, nq)), axis=1)
        L = rng.integers(2, self.log_iters + 1, (B, nq))  # bit-length, uniform
        low = rng.integers(0, 1 << 62, (B, nq)) & ((1 << (L - 1)) - 1)
        n = (1 << (L - 1)) | low
        return np.concatenate([self.encode_names(x), self.encode_bits(n)], axis=-1)

    # ---- truth ---------------------------------------------------------------------------------
    def _parse(self, q):
        q = np.asarray(q, dtype=np.int64)
        x, xv = self.decode_names(q[:, : self.length])
        n, nv = self.decode_bits(q[:, self.length : self.length + self.log_iters])
        return x, n, xv & nv

    def answer(self, db, ctx, q, rng=None):
        ctx = np.asarray(ctx)
        x, n, valid = self._parse(q)
        valid &= db["perm"][ctx, x] >= 0  # x must be an element of this context
        cur = x
        pow2 = db["pow2"]
        for k in range(self.log_iters):
            cur = np.where((n >> k) & 1 == 1, pow2[ctx, k, cur], cur)
        out = self.encode_names(cur)
        return np.where(valid[:, None], out, 0)

    def is_primitive(self, q):
        _, n, _ = self._parse(q)
        bits_ok = self.decode_bits(np.asarray(q)[:, self.length : self.length + self.log_iters])[1]
        return bits_ok & (n <= 1)

    def classify(self, db, ctx, q):
        _, n, valid = self._parse(q)
        L = np.floor(np.log2(np.maximum(n, 1))).astype(np.int64) + 1
        return np.where(valid & (n >= 2), L - 2, -1)

    # ---- the scripted human -----------------------------------------------------------------------
    def human(self, q) -> HumanGen:
        q = np.asarray(q, dtype=np.int64)
        x = q[: self.length]
        n, ok = self.decode_bits(q[self.length : self.length + self.log_iters])
        if self.name_of(x) is None or not ok:
            return self.unknown()
        n = int(n)
        if n <= 1:
            a = yield q.copy()  # primitive: the oracle answers
            return self._name_answer(a)
        half = self.encode_bits(n >> 1)
        y = yield self.question(x, half)
        if self.name_of(y) is None:
            return self.unknown()
        z = yield self.question(y[: self.length], half)
        if self.name_of(z) is None:
            return self.unknown()
        if n & 1:
            w = yield self.question(z[: self.length], self.encode_bits(1))
            return self._name_answer(w)
        return self._name_answer(z)

    def _name_answer(self, a) -> np.ndarray:
        a = np.asarray(a)
        return self.answer_record(a[: self.length]) if self.name_of(a) is not None else self.unknown()
