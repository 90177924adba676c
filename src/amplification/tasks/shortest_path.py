"""Shortest path: facts are the directed edges of a random graph; questions ask for the distance
between two vertices, or the first step of a shortest path.

Rendered example (`amplification tasks show shortest_path --nchars 4 --length 1 --size 4
--seed 32`; max_dist = 4):

    facts:     c c | c d | b d | d b | d c | d b | c d | c c     (edges a -> b; a has none)
    question:  S c b                    first step from c towards b
    H asks:    E c b  -> ?   (primitive)    no edge c -> b
               S c b  -> d                  the model's guess ...
               E c d  -> 1   (primitive)    ... is a real edge: candidate d
               S c b  -> d
               E c d  -> 1   (primitive)    candidate d again
               N c    -> c   (primitive)    a random true neighbour (self-loop): candidate c
               D d b  -> 1
               D d b  -> 1
               D c b  -> 2
    answer:    d                        the candidate nearest to b

Token layout. Control tokens D (distance), S (step), N (some neighbour), E (edge?), then the
distance tokens 0..max_dist and `inf`, then the characters. A question is `kind a b`
(1 + 2*length tokens; `N a` pads b with 0). An answer is a vertex name or `(distance, 0...)`.
The edge check answers "yes" with the distance-1 token (an edge is a path of length 1) and
"no" with unknown (0), as in the original.

Distances are BFS hop counts, capped: a true distance above max_dist reads `inf`.
**Deviation** (spec): d(a, a) = 0, not the shortest cycle through a. Consequences:
- `distance a a` is 0 and `step a a` is defined as a itself. H answers both from the question
  alone, before asking anything: its edge check would otherwise answer 1 (self-loop) or go on
  to ask `step a a`, which has no shortest-path meaning.
- `step a b` (a != b) is the lowest-named out-neighbour v with d(v, b) = d(a, b) - 1 (for an
  out-neighbour, d(v, b) < d(a, b) means exactly that). If b is adjacent, v = b, since only b is
  at distance 0 from b. The answer is `inf` when b is unreachable or when d(a, b) - 1 > max_dist
  (no v has a finite capped distance). When d(a, b) = max_dist + 1 the distance reads `inf` but
  the step is a vertex, and H gets both right.

H (R = 9), as the spec: `distance a b`: edge? -> 1; else c = `step a b`, c not a name -> inf,
else 1 + `distance c b` (capped; an answer that is no distance token -> unknown). With
`check_step=True` (a deviation, off by default) H first asks `edge a c` and answers unknown when
X's step is no out-neighbour of a: the spec's H uses the step unchecked, so X naming b itself
for an unreachable b gives 1 + d(b, b) = 1, the first value of a count to infinity (README).
With `step_fallback=True` as well, it asks `some neighbour of a` instead and answers 1 +
`distance n b` for that neighbour n (an upper bound when X's distance is right; inf when a has
no out-edge), so the question still gets a target. With `reject_impossible=True` (a deviation,
off by default) H answers unknown, at no extra subquestion, when X names a or b as the step
after `edge a b` said no, or answers 0 for `distance c b` with c != b; in `step a b` such a
candidate is dropped. `step a b`:
edge? -> b; else up to three candidates (twice the model's own `step a b` if the edge check
confirms it, and `some neighbour of a` from the oracle), each asked `distance c b`; the nearest
finite one wins (first wins ties), else inf. So sub-answers of the wrong kind lead to inf, not
unknown, wherever the spec says "not a vertex -> infinite". With oracle answers H asks 4.75
subquestions on average at paper scale (2.04 of them primitive); the original measured 4.70.
About 38 % of the top-level questions at paper scale have b unreachable or farther than max_dist
(classes Dinf/Sinf; the original measured 42 %).

A name that is not a vertex of the context gets unknown, as in permutation powering. (A vertex
without edges appears in no fact; it is a vertex all the same: d(x, x) = 0, everything else inf.)

Class: kind x band of the capped distance of the pair: 0, 1, 2, 3-4, 5-8, 9+ (up to max_dist),
inf. `classes_at(size)` lists the bands that can occur at that size and max_dist.
"""
from __future__ import annotations

import numpy as np

from .base import HumanGen, Task, TaskError, check_bool, check_int

# distance bands of the classes: (label, lowest distance, highest distance)
BANDS = [("0", 0, 0), ("1", 1, 1), ("2", 2, 2), ("3-4", 3, 4), ("5-8", 5, 8), ("9+", 9, None)]


class ShortestPath(Task):
    name = "shortest_path"
    title = "Shortest path"
    question_forms = [
        "D A B: distance from vertex A to vertex B (0..max_dist or inf)",
        "S A B: first vertex on a shortest path from A to B (lowest name wins), or inf",
    ]

    def __init__(self, nchars: int = 8, length: int = 2, max_dist: int | None = None, check_step: bool = False,
                 step_fallback: bool = False, reject_impossible: bool = False):
        super().__init__(nchars, length)
        check_step, step_fallback = check_bool("check_step", check_step), check_bool("step_fallback", step_fallback)
        reject_impossible = check_bool("reject_impossible", reject_impossible)
        if step_fallback and not check_step:
            raise TaskError("step_fallback needs check_step: true")
        # deviations, off by default: H's `distance a b` checks X's step with `edge a c` and, with
        # step_fallback, goes on from a random out-neighbour instead of answering unknown (README)
        self.check_step, self.step_fallback = check_step, step_fallback
        # a deviation, off by default: H drops sub-answers that contradict what it already knows,
        # at no extra subquestion: X's step a or b after `edge a b` said no, and a distance of 0
        # between two different vertices (the two seeds of the count to infinity, README)
        self.reject_impossible = reject_impossible
        if max_dist is None:
            # 2 * ceil(log2(names)) as in the original (12 at paper scale); exact integer log
            max_dist = max(1, 2 * (self.n_names - 1).bit_length())
        self.max_dist = check_int("max_dist", max_dist, 1, 256)
        self.kD = self.vocab.add("D", "S", "N", "E")  # distance, step, some neighbour, edge?
        self.kS, self.kN, self.kE = self.kD + 1, self.kD + 2, self.kD + 3
        self.dist0 = self.vocab.add_numbers(range(self.max_dist + 1), "inf")
        self.inf = self.dist0 + self.max_dist + 1
        self.yes = self.dist0 + 1  # edge a b exists: a path of length 1
        self._add_chars()
        self.rounds = 9
        self.fact_length = 2 * self.length
        self.question_length = 1 + 2 * self.length
        self.answer_length = self.length
        self.class_names = [f"{k}{b[0]}" for k in "DS" for b in BANDS + [("inf",)]]

    @property
    def params(self) -> dict:
        # the deviations only when on: records and checkpoints written without them stay comparable
        on = {k: True for k in ("check_step", "step_fallback", "reject_impossible") if getattr(self, k)}
        return {**super().params, "max_dist": self.max_dist, **on}

    def classes_at(self, size: int) -> list[str]:
        size = self.check_size(size)
        top = min(size - 1, self.max_dist)  # the longest finite capped distance possible
        bands = [b[0] for b in BANDS if b[1] <= top] + (["inf"] if size >= 2 else [])
        return [f"{k}{b}" for k in "DS" for b in bands]

    # ---- generation -------------------------------------------------------------------------
    def _contexts(self, n, size, rng):
        M, V = self.n_names, size
        # V distinct names, sorted: vertex position order is name order, so "lowest name" is
        # "lowest position" everywhere below
        elems = np.sort(np.argsort(rng.random((n, M)), axis=1)[:, :V], axis=1)
        src = rng.integers(0, V, (n, 2 * V))
        dst = rng.integers(0, V, (n, 2 * V))
        adj = np.zeros((n, V, V), dtype=bool)
        adj[np.arange(n)[:, None], src, dst] = True
        facts = np.concatenate([self.encode_names(np.take_along_axis(elems, src, 1)),
                                self.encode_names(np.take_along_axis(elems, dst, 1))], axis=-1)
        pos = np.full((n, M), -1, dtype=np.int64)
        np.put_along_axis(pos, elems, np.broadcast_to(np.arange(V), (n, V)), axis=1)
        db = {"elems": elems, "pos": pos, "adj": adj, "dist": self._distances(adj)}
        return facts, np.ones((n, 2 * V), dtype=bool), db

    def _distances(self, adj: np.ndarray) -> np.ndarray:
        """All-pairs hop counts [B, V, V] by BFS layers as boolean matrix products, exact up to
        max_dist + 1 (the step rule needs that one more); longer or unreachable: max_dist + 2."""
        B, V, _ = adj.shape
        K = self.max_dist + 1
        # d = sum over k = 0..K of [b not reached from a within k steps]: d itself when d <= K,
        # else K + 1 = max_dist + 2
        reach = np.broadcast_to(np.eye(V, dtype=bool), (B, V, V))  # deviation: d(a, a) = 0
        dist = (~reach).astype(np.int16)  # <= max_dist + 2 <= 258; the oracle keeps [B, V, V]
        a = adj.astype(np.float32)
        for k in range(1, K + 1):
            new = reach | (np.matmul(reach.astype(np.float32), a) > 0)
            if np.array_equal(new, reach):  # nothing new: the rest repeats
                dist += (K + 1 - k) * (~reach).astype(np.int16)
                break
            reach = new
            dist += ~reach
        return dist

    def _questions(self, db, nq, rng):
        elems = db["elems"]
        B, V = elems.shape
        kind = np.where(rng.integers(0, 2, (B, nq)) == 0, self.kD, self.kS)
        a = np.take_along_axis(elems, rng.integers(0, V, (B, nq)), axis=1)
        b = np.take_along_axis(elems, rng.integers(0, V, (B, nq)), axis=1)
        return np.concatenate([kind[..., None], self.encode_names(a), self.encode_names(b)], axis=-1)

    # ---- truth ---------------------------------------------------------------------------------
    def _parse(self, db, ctx, q):
        """-> kind [N], positions of a and b in the context's vertices (-1 if not a vertex)."""
        q = np.asarray(q, dtype=np.int64)
        L = self.length
        a, av = self.decode_names(q[:, 1 : 1 + L])
        b, bv = self.decode_names(q[:, 1 + L : 1 + 2 * L])
        pa = np.where(av, db["pos"][ctx, a], -1)
        pb = np.where(bv, db["pos"][ctx, b], -1)
        return q[:, 0], pa, pb

    def _dist_answer(self, d: np.ndarray) -> np.ndarray:
        """Capped distances [N] -> answers [N, al]."""
        out = np.zeros((len(d), self.answer_length), dtype=np.int64)
        out[:, 0] = np.where(d <= self.max_dist, self.dist0 + np.minimum(d, self.max_dist), self.inf)
        return out

    def answer(self, db, ctx, q, rng=None):
        ctx = np.asarray(ctx)
        q = np.asarray(q, dtype=np.int64)
        N, L = len(q), self.length
        kind, pa, pb = self._parse(db, ctx, q)
        out = np.zeros((N, self.answer_length), dtype=np.int64)
        both = (pa >= 0) & (pb >= 0)
        elems, adj, dist = db["elems"], db["adj"], db["dist"]
        ia, ib = np.maximum(pa, 0), np.maximum(pb, 0)
        d = dist[ctx, ia, ib]

        m = (kind == self.kD) & both
        out[m] = self._dist_answer(d[m])

        m = (kind == self.kE) & both & adj[ctx, ia, ib]
        out[m, 0] = self.yes

        m = (kind == self.kS) & both
        if m.any():
            c, a_, b_, dd = ctx[m], ia[m], ib[m], d[m]
            # out-neighbours one step closer to b; sorted vertices: argmax finds the lowest name
            closer = adj[c, a_, :] & (dist[c, :, b_] == (dd - 1)[:, None])
            v = np.argmax(closer, axis=1)
            ok = closer.any(1) & (dd - 1 <= self.max_dist)
            ans = np.where(ok[:, None], self.encode_names(elems[c, v]), 0)
            ans[~ok, 0] = self.inf
            ans[dd == 0] = self.encode_names(elems[c, a_][dd == 0])  # step a a = a
            out[m] = ans

        # N a: a with zero padding; a random out-neighbour drawn with the caller's rng
        m = (kind == self.kN) & (pa >= 0) & (q[:, 1 + L :] == 0).all(1)
        if m.any():
            rng = rng if rng is not None else np.random.default_rng(0)
            nb = adj[ctx[m], ia[m], :]
            v = np.argmax(np.where(nb, rng.random(nb.shape), -1.0), axis=1)
            out[m] = np.where(nb.any(1)[:, None], self.encode_names(elems[ctx[m], v]), 0)
        return out

    def is_primitive(self, q):
        kind = np.asarray(q)[:, 0]
        return (kind == self.kN) | (kind == self.kE)

    def classify(self, db, ctx, q):
        ctx = np.asarray(ctx)
        kind, pa, pb = self._parse(db, ctx, q)
        d = db["dist"][ctx, np.maximum(pa, 0), np.maximum(pb, 0)]
        band = np.full(len(d), len(BANDS), dtype=np.int64)  # inf
        for i, (_, lo, _) in enumerate(BANDS):
            band[(d >= lo) & (d <= self.max_dist)] = i
        per_kind = len(BANDS) + 1
        cls = np.where(kind == self.kD, band, band + per_kind)
        return np.where(((kind == self.kD) | (kind == self.kS)) & (pa >= 0) & (pb >= 0), cls, -1)

    # ---- the scripted human -----------------------------------------------------------------------
    def human(self, q) -> HumanGen:
        q = np.asarray(q, dtype=np.int64)
        L = self.length
        kind, a, b = int(q[0]), q[1 : 1 + L], q[1 + L : 1 + 2 * L]
        if kind not in (self.kD, self.kS) or self.name_of(a) is None or self.name_of(b) is None:
            return self.unknown()
        if np.array_equal(a, b):  # deviation d(a, a) = 0: no subquestion needed
            return self.answer_record(self.dist0) if kind == self.kD else self.answer_record(a)
        e = yield self.question(self.kE, a, b)
        if e[0] == self.yes:
            return self.answer_record(self.dist0 + 1) if kind == self.kD else self.answer_record(b)
        if kind == self.kD:
            c = yield self.question(self.kS, a, b)
            if self.name_of(c) is None:
                return self.answer_record(self.inf)
            if self.reject_impossible and (np.array_equal(c[:L], a) or np.array_equal(c[:L], b)):
                return self.unknown()  # no edge a b, so b is no step; a is never its own step
            if self.check_step:  # a step that is no edge of a gives no distance: unknown ...
                e = yield self.question(self.kE, a, c[:L])
                if e[0] != self.yes:
                    if not self.step_fallback:
                        return self.unknown()
                    c = yield self.question(self.kN, a)  # ... or go on from a random out-neighbour
                    if self.name_of(c) is None:  # a has no out-edges
                        return self.answer_record(self.inf)
            t = yield self.question(self.kD, c[:L], b)
            if self.reject_impossible and int(t[0]) == self.dist0 and not np.array_equal(c[:L], b):
                return self.unknown()
            return self._plus_one(t)
        cands = []
        for _ in range(2):  # the model's own current guess, checked against the facts
            c = yield self.question(self.kS, a, b)
            if self.name_of(c) is not None:
                e = yield self.question(self.kE, a, c[:L])
                if e[0] == self.yes:
                    cands.append(c[:L].copy())
        c = yield self.question(self.kN, a)  # a random true neighbour, from the oracle
        if self.name_of(c) is not None:
            cands.append(c[:L].copy())
        best, best_d = None, None
        for c in cands:
            t = yield self.question(self.kD, c, b)
            d = int(t[0]) - self.dist0
            if self.reject_impossible and d == 0 and not np.array_equal(c, b):
                continue  # only b is at distance 0 from b
            if 0 <= d <= self.max_dist and (best_d is None or d < best_d):  # first wins ties
                best, best_d = c, d
        return self.answer_record(best) if best is not None else self.answer_record(self.inf)

    def _plus_one(self, t) -> np.ndarray:
        """1 + a distance answer, capped; inf stays inf; anything else is unknown."""
        d = int(np.asarray(t)[0]) - self.dist0
        if d == self.max_dist + 1:
            return self.answer_record(self.inf)
        if not 0 <= d <= self.max_dist:
            return self.unknown()
        return self.answer_record(self.dist0 + d + 1)  # d + 1 = max_dist + 1 is the inf token
