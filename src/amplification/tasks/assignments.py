"""Sequential assignments: variables defined by leaf values and an unknown binary operator table;
a question `C x` asks for the value of x.

Rendered example (nchars=8, length=1, so 2 values; size 6;
`amplification tasks show assignments --nchars 8 --length 1 --size 6 --seed 1`):

    facts:     c v1 | e v0                      leaves c := v1, e := v0
               h e c | f h e | g e h | a e f    h := e (+) c, ...
               v0 v1 v0 | v0 v0 v1              the table: v0 (+) v1 = v0, v0 (+) v0 = v1
    question:  C g                              the value of g (depth 2)
    H asks:    A g     -> e    (primitive)      first operand
               C e     -> v0                    its value (the model)
               B g     -> h    (primitive)      second operand
               C h     -> v0                    its value (the model)
               v0 v0   -> v1   (primitive)      the table look-up
    answer:    v1

a := e (+) f needs the pair (v0, v1) again, so it adds no table fact: 8 facts, not 9.

Facts, one record of 3*length tokens each, in shuffled order (the model sees a set):
    x v 0 ...   leaf x := v
    x y z       compound x := y (+) z
    a b c 0...  operator table a (+) b = c (a, b, c value tokens)
The table is drawn lazily: a pair (a, b) gets a uniformly random c and one fact the first time a
definition needs it. **Deviation** (spec section 2): a repeated pair adds no fact (the original
added an all-0 padding fact), so the fact count varies between contexts; a batch is padded to its
largest context with all-0 facts and fact_mask False.

Questions: `C x` (value of x, complex), `A x` / `B x` (first / second operand: the operand's name,
or for a leaf its value (v, 0...)) and the table look-up `a b 0...` (any question whose first two
tokens are values). A, B and the look-up are primitive: the oracle answers them.

Classes are bands of the depth of x in the definition graph (0 for a leaf):
depth0, depth1, depth2, depth3-4, depth5+. At paper scale the deepest variable of a context is
about 8 deep on average and deeper than 11 in under 2% of contexts (a chain of 56 is possible but
never happens), so one class per depth would leave classes that no batch ever shows. At full
paper scale (64 variables, 8 leaves) the bands hold about 12%, 12%, 14%, 30% and 32% of the
questions. `classes_at(size)` lists a band only from the size at
which it holds at least ~3% of the questions (measured by simulation of the generator):
depth1 from 2 variables, depth2 from 3, depth3-4 from 5, depth5+ from 12.

H asks at most R = 5 subquestions: a leaf costs 1 (`A x` returns its value), a compound 5
(`A x`, `C y`, `B x`, `C z`, the look-up), of which `C y` and `C z` go to the model. At paper scale
the mean is 1/8 * 1 + 7/8 * 5 = 4.5 subquestions per top-level question, as in the spec.
"""
from __future__ import annotations

import math

import numpy as np

from .base import HumanGen, Task, TaskError, check_int

# depth bands (lowest depth of each band) and the smallest instance size at which the band holds
# >= ~3% of the questions; see the module docstring
_BAND_LOW = (0, 1, 2, 3, 5)
_BAND_NAMES = ["depth0", "depth1", "depth2", "depth3-4", "depth5+"]
_BAND_MIN_SIZE = (1, 2, 3, 5, 12)
MAX_NAMES = 4096  # db arrays and the operator table grow with the name space


class SequentialAssignments(Task):
    name = "assignments"
    title = "Sequential assignments"
    question_forms = [
        "C NAME: the value of variable NAME",
        "A NAME / B NAME: its first / second operand (a leaf's value) (primitive)",
        "VALUE VALUE: the operator table entry (primitive)",
    ]

    def __init__(self, nchars: int = 8, length: int = 2, num_values: int | None = None):
        super().__init__(nchars, length)
        if self.n_names > MAX_NAMES:
            raise TaskError(f"nchars**length must be <= {MAX_NAMES} for assignments, got {self.n_names}")
        if num_values is None:  # the original: floor(sqrt(64)) = 8 values
            num_values = max(1, math.isqrt(self.n_names))
        self.num_values = check_int("num_values", num_values, 1, 64)
        self.tok_a = self.vocab.add("A", "B", "C")
        self.tok_b, self.tok_c = self.tok_a + 1, self.tok_a + 2
        self._add_chars()
        self.val0 = self.vocab.add(*[f"v{i}" for i in range(self.num_values)])
        self.rounds = 5
        self.fact_length = 3 * self.length
        self.question_length = 1 + self.length
        self.answer_length = self.length
        self.class_names = list(_BAND_NAMES)

    @property
    def params(self) -> dict:
        return {**super().params, "num_values": self.num_values}

    def classes_at(self, size: int) -> list[str]:
        return [n for n, lo in zip(_BAND_NAMES, _BAND_MIN_SIZE) if size >= lo]

    def depth_class(self, depth: np.ndarray) -> np.ndarray:
        """Depths [...] -> band indices [...]."""
        return np.searchsorted(np.array(_BAND_LOW), np.asarray(depth), side="right") - 1

    def is_value(self, t) -> np.ndarray:
        t = np.asarray(t)
        return (t >= self.val0) & (t < self.val0 + self.num_values)

    # ---- generation -------------------------------------------------------------------------
    def _contexts(self, n, size, rng):
        M, K, N = self.n_names, self.num_values, size
        L = math.isqrt(N)  # leaves: the first floor(sqrt(N)) variables defined
        bi = np.arange(n)
        order = np.argsort(rng.random((n, M)), axis=1)[:, :N]  # names in definition order
        # operands of the i-th definition: uniform, with replacement, over positions 0..i-1
        i_pos = np.arange(L, N)
        ops = self._draw_operands(rng, n, i_pos)
        table = self._draw_table(rng, n)
        val = np.zeros((n, N), dtype=np.int64)
        val[:, :L] = rng.integers(0, K, (n, L))
        depth = np.zeros((n, N), dtype=np.int64)
        used = np.zeros((n, K, K), dtype=bool)
        for j, i in enumerate(i_pos):  # values are sequential; vectorised over the batch
            y, z = ops[:, j, 0], ops[:, j, 1]
            a, b = val[bi, y], val[bi, z]
            val[:, i] = table[bi, a, b]
            used[bi, a, b] = True
            depth[:, i] = 1 + np.maximum(depth[bi, y], depth[bi, z])

        # definition facts, in definition order
        fl, ln = self.fact_length, self.length
        dfacts = np.zeros((n, N, fl), dtype=np.int64)
        dfacts[:, :, :ln] = self.encode_names(order)
        dfacts[:, :L, ln] = self.val0 + val[:, :L]
        op_names = order[bi[:, None, None], ops]  # [n, N-L, 2]
        dfacts[:, L:, ln:] = self.encode_names(op_names).reshape(n, N - L, 2 * ln)
        # table facts: the used pairs first, in a stable order, then padding
        flat_used = used.reshape(n, K * K)
        count = flat_used.sum(1)
        T = int(count.max())
        pairs = np.argsort(~flat_used, axis=1, kind="stable")[:, :T]
        tmask = np.arange(T)[None, :] < count[:, None]
        tfacts = np.zeros((n, T, fl), dtype=np.int64)
        tfacts[:, :, 0] = self.val0 + pairs // K
        tfacts[:, :, 1] = self.val0 + pairs % K
        tfacts[:, :, 2] = self.val0 + np.take_along_axis(table.reshape(n, K * K), pairs, axis=1)
        tfacts[~tmask] = 0
        facts = np.concatenate([dfacts, tfacts], axis=1)
        mask = np.concatenate([np.ones((n, N), dtype=bool), tmask], axis=1)
        # shuffle the real facts of each context; padding keeps the tail
        keys = np.where(mask, rng.random(mask.shape), 2.0)
        perm = np.argsort(keys, axis=1)
        facts = np.take_along_axis(facts, perm[:, :, None], axis=1)
        mask = np.take_along_axis(mask, perm, axis=1)

        # per-name arrays for the oracle (-1: absent / not a compound)
        rows = bi[:, None]
        pos = np.full((n, M), -1, dtype=np.int64)
        pos[rows, order] = np.arange(N)
        value = np.full((n, M), -1, dtype=np.int64)
        value[rows, order] = val
        dep = np.full((n, M), -1, dtype=np.int64)
        dep[rows, order] = depth
        opn = np.full((n, M, 2), -1, dtype=np.int64)
        opn[rows, order[:, L:]] = op_names
        db = {"order": order, "pos": pos, "value": value, "depth": dep, "ops": opn,
              "table": table, "used": used}
        return facts, mask, db

    def _draw_operands(self, rng, n, i_pos):
        """Operand positions [n, len(i_pos), 2] of the compound definitions: uniform, with
        replacement, over the variables defined before (positions 0..i-1 for definition i)."""
        return (rng.random((n, len(i_pos), 2)) * i_pos[None, :, None]).astype(np.int64)

    def _draw_table(self, rng, n):
        """The operator table [n, K, K] of each context. Drawing it whole up front and revealing
        only the pairs used is the same distribution as drawing each entry when a definition first
        needs it. (experiments/supervised_capacity.py overrides both draws for its diagnostics.)"""
        K = self.num_values
        return rng.integers(0, K, (n, K, K))

    def _questions(self, db, nq, rng):
        order = db["order"]
        B, N = order.shape
        x = np.take_along_axis(order, rng.integers(0, N, (B, nq)), axis=1)  # uniform over all
        kind = np.full((B, nq, 1), self.tok_c, dtype=np.int64)
        return np.concatenate([kind, self.encode_names(x)], axis=-1)

    # ---- truth ---------------------------------------------------------------------------------
    def _parse(self, db, ctx, q):
        """-> kind token [N], name index [N], name is a variable of its context [N]."""
        q = np.asarray(q, dtype=np.int64)
        x, xv = self.decode_names(q[:, 1 : 1 + self.length])
        xv &= db["pos"][ctx, x] >= 0
        return q[:, 0], x, xv

    def answer(self, db, ctx, q, rng=None):
        ctx = np.asarray(ctx)
        q = np.asarray(q, dtype=np.int64)
        kind, x, ok = self._parse(db, ctx, q)
        out = np.zeros((len(q), self.answer_length), dtype=np.int64)
        vtok = self.val0 + db["value"][ctx, x]
        is_c = ok & (kind == self.tok_c)
        out[is_c, 0] = vtok[is_c]
        for j, tok in enumerate((self.tok_a, self.tok_b)):
            sel = ok & (kind == tok)
            op = db["ops"][ctx, x, j]
            leaf = sel & (op < 0)
            out[leaf, 0] = vtok[leaf]
            comp = sel & (op >= 0)
            out[comp] = self.encode_names(op[comp])
        # table look-up: a fact look-up, so a pair no definition used is unknown
        look = self.is_value(q[:, 0]) & self.is_value(q[:, 1])
        a = np.where(look, q[:, 0] - self.val0, 0)
        b = np.where(look, q[:, 1] - self.val0, 0)
        look &= db["used"][ctx, a, b]
        out[look, 0] = self.val0 + db["table"][ctx, a, b][look]
        return out

    def is_primitive(self, q):
        q = np.asarray(q)
        operand = (q[:, 0] == self.tok_a) | (q[:, 0] == self.tok_b)
        return operand | (self.is_value(q[:, 0]) & self.is_value(q[:, 1]))

    def classify(self, db, ctx, q):
        kind, x, ok = self._parse(db, np.asarray(ctx), q)
        ok &= kind == self.tok_c
        return np.where(ok, self.depth_class(db["depth"][np.asarray(ctx), x]), -1)

    # ---- the scripted human -----------------------------------------------------------------------
    def human(self, q) -> HumanGen:
        q = np.asarray(q, dtype=np.int64)
        x = q[1 : 1 + self.length]
        if q[0] != self.tok_c or self.name_of(x) is None:
            return self.unknown()
        r = yield self.question(self.tok_a, x)
        if self.name_of(r) is None:  # a leaf: its value (or a malformed answer)
            return self._value_answer(r)
        vy = yield self.question(self.tok_c, r[: self.length])
        if not self.is_value(vy[0]):
            return self.unknown()
        r2 = yield self.question(self.tok_b, x)
        if self.name_of(r2) is None:  # x has a first operand, so it must have a second
            return self.unknown()
        vz = yield self.question(self.tok_c, r2[: self.length])
        if not self.is_value(vz[0]):
            return self.unknown()
        c = yield self.question(vy[0], vz[0])  # the table look-up (primitive)
        return self._value_answer(c)

    def _value_answer(self, a) -> np.ndarray:
        a = np.asarray(a)
        return self.answer_record(a[0]) if self.is_value(a[0]) else self.unknown()
