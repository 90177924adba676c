"""Amplify^{H'}(X) and Amplify^H(X), batched over every question of every context.

Amplify^{H'}(X): all B x Q questions advance together. Per round, H' decodes a subquestion token
by token (key/value cache); blank subquestions (all 0: "nothing more to ask") get a blank answer;
primitive ones go to the look-up oracle; the rest are answered by X's teacher on the fact
encoding computed once at the start. Finally H' decodes the answer, which is the target.

X answers greedily. With `repeats="sample"` a subquestion that the same transcript already asked
gets a fresh sample instead: shortest path and union find check X's guess of `step` / `parent`
twice, and two greedy answers are one guess. `repeats="second"` answers the repeat with X's
runner-up guess (its second most likely first token, greedy after it): deterministic, and never the
first guess again. `repeats="all"` samples every answer of X, as the original did.

`levels` > 1 (a deviation) makes Amplify a tree: a complex subquestion is answered by Amplify one
level down, X only at the leaves (`_amplify_rows` is one level of H'; `_x_rows` the leaves).
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from .human import Transcripts, amplify_h, repeated
from .hprime import HPrime
from .tasks.base import Task
from .xmodel import XAnswerer, XModel, to_tensor


def _pick(logp: torch.Tensor, greedy: bool, gen) -> torch.Tensor:
    if greedy:
        return logp.argmax(-1)
    return torch.multinomial(logp.exp(), 1, generator=gen)[:, 0]


@torch.no_grad()
def seeded_generator(rng: np.random.Generator, device="cpu") -> torch.Generator:
    """A torch generator seeded from the stage's numpy generator (so sampling is reproducible)."""
    g = torch.Generator(device=device)
    g.manual_seed(int(rng.integers(2**62)))
    return g


def _x_decoding(repeats: str, again: bool) -> dict:
    """How X decodes a subquestion (`again`: the transcript asked it before), per `repeats`:
    greedy, a sample ("sample" on a repeat, "all" always) or X's runner-up ("second" on a repeat)."""
    return {"greedy": repeats != "all" and not (again and repeats == "sample"),
            "rank": int(again and repeats == "second")}


@torch.no_grad()  # inference only: without it every H' step kept its autograd graph (20 GB at 16k questions)
def amplify_hprime(task: Task, hp: HPrime, x: XModel, facts, fact_mask, questions, db, rng,
                   device="cpu", greedy: bool = True, generator=None, repeats: str = "greedy",
                   levels: int = 1, scores: dict | None = None) -> Transcripts:
    """Targets = Amplify^{H'}(X) for questions [B, Q, ql] of contexts facts [B, F, fl].

    Returns the transcripts (their `answers` [B*Q, al] are the targets). `rng` (numpy) drives the
    oracle's random primitives; `generator` (torch) the sampling when greedy is False, and X's
    answers to repeated subquestions when `repeats="sample"`.

    `levels` L > 1 (a deviation; the paper's Amplify is L = 1): the complex subquestions are
    answered by Amplify^{H'} one level down instead of by X, a tree of depth L with X only at its
    leaves. A repeated subquestion then gets a new tree, with new draws of the oracle's random
    primitives (union find's `some neighbour of x`), so H's second ask is no longer a no-op.

    `scores`, when given, receives "answer_logp" [B*Q]: H''s log-probability of the final answer
    it gave (its confidence in the target; `budget.focus_by: uncertain`), and "min_logp" [B*Q]:
    the lowest log-probability of any token H' chose in the row's whole tree."""
    if levels < 1:
        raise ValueError(f"amplify levels must be at least 1, got {levels}")
    hp.eval(), x.eval()
    if generator is None and repeats in ("sample", "all"):  # (only then: the greedy default draws nothing)
        generator = seeded_generator(rng, device)
    B, Q, ql = questions.shape
    al, N = task.answer_length, B * Q
    ft, fm = to_tensor(facts, device).long(), to_tensor(fact_mask, device).bool()
    mem = x.encode(ft, fm)  # once per context, for all rounds

    def x_all(ctx, sq, rest, again):
        """X on every row at once, in the contexts' [B, Q] layout (one pass over each fact encoding)."""
        qs = to_tensor(sq, device).long().view(B, Q, ql)
        first, repeat = _x_decoding(repeats, False), _x_decoding(repeats, True)
        ans = x.generate(mem, ft, fm, qs, generator=generator, **first).view(N, al).cpu().numpy()
        again = rest & again if repeat != first else np.zeros(N, dtype=bool)
        if again.any():  # a fresh sample, or X's runner-up guess
            xs = x.generate(mem, ft, fm, qs, generator=generator, **repeat).view(N, al).cpu().numpy()
            ans[again] = xs[again]
        return ans, np.zeros(N, dtype=np.float32)  # (X's answers are not H''s choices: log 1)

    answer = x_all
    if levels > 1:  # X at the leaves answers only the rows that reach it, each on its context's encoding
        answer = functools.partial(_x_rows, x, mem, ft, fm, al, repeats, generator, device)
        for _ in range(levels - 1):  # each level of H' below the top one (the call below, on every row)
            answer = functools.partial(_amplified_rows, task, hp, answer, db, rng, device, greedy, generator)
    return _amplify_rows(task, hp, answer, db, rng, device, greedy, generator,
                         np.repeat(np.arange(B), Q), np.asarray(questions).reshape(N, ql), scores)


def _amplify_rows(task: Task, hp: HPrime, answer, db, rng, device, greedy, generator, ctx, flat_q,
                  scores: dict | None = None) -> Transcripts:
    """H' runs the transcripts of questions flat_q [N, ql] (of contexts ctx [N]) in lock-step
    rounds; `answer(ctx, subquestions, rest, again)` gives the rows `rest` (complex, not blank)
    their answers [N, al] (`again`: the transcript asked that subquestion before) and the lowest
    log-probability [N] of a token H' chose in the trees below that gave them (0 for X's).

    `scores` receives "answer_logp" [N] (of the final answer) and "min_logp" [N]: the lowest
    log-probability of any token H' chose, here or in the trees below (its least sure step)."""
    al, R, N, ql = task.answer_length, task.rounds, len(flat_q), task.question_length
    subq = np.zeros((N, R, ql), dtype=np.int64)
    suba = np.zeros((N, R, al), dtype=np.int64)
    asked = np.zeros(N, dtype=np.int64)
    prim_n = np.zeros(N, dtype=np.int64)

    cache = hp.start(N, device)
    start = torch.zeros(N, 1, dtype=torch.long, device=device)
    logp = hp.step(cache, torch.cat([start, to_tensor(flat_q, device).long()], 1))
    least = torch.zeros(N, device=device)
    for r in range(R):
        toks = []
        for _ in range(ql):
            tok = _pick(logp, greedy, generator)
            toks.append(tok)
            least = torch.minimum(least, logp.gather(1, tok[:, None])[:, 0])
            logp = hp.step(cache, tok[:, None])
        sq = torch.stack(toks, 1).cpu().numpy()
        blank = ~sq.any(-1)
        prim = task.is_primitive(sq) & ~blank
        ans = np.zeros((N, al), dtype=np.int64)
        below = np.zeros(N, dtype=np.float32)
        if prim.any():
            ans[prim] = task.answer(db, ctx[prim], sq[prim], rng)
        rest = ~blank & ~prim
        if rest.any():
            got, lp = answer(ctx, sq, rest, repeated(subq, r, sq))
            ans[rest], below[rest] = got[rest], lp[rest]
        least = torch.minimum(least, to_tensor(below, device).float())
        subq[:, r], suba[:, r] = sq, ans
        asked += ~blank
        prim_n += prim
        at = to_tensor(ans, device).long()
        for j in range(al):
            logp = hp.step(cache, at[:, j:j + 1])
    final, answer_logp = [], 0.0
    for j in range(al):
        tok = _pick(logp, greedy, generator)
        final.append(tok)
        answer_logp = answer_logp + logp.gather(1, tok[:, None])[:, 0]
        least = torch.minimum(least, logp.gather(1, tok[:, None])[:, 0])
        if j + 1 < al:
            logp = hp.step(cache, tok[:, None])
    answers = torch.stack(final, 1).cpu().numpy()
    if scores is not None:
        scores["answer_logp"] = answer_logp.float().cpu().numpy()
        scores["min_logp"] = least.float().cpu().numpy()
    return Transcripts(flat_q, subq, suba, answers, asked, prim_n)


def _amplified_rows(task, hp, answer, db, rng, device, greedy, generator, ctx, sq, rest, again):
    """One level down: Amplify^{H'} answers the rows `rest` (a repeat gets a new tree anyway)."""
    out, least, scores = np.zeros((len(sq), task.answer_length), dtype=np.int64), np.zeros(len(sq), dtype=np.float32), {}
    out[rest] = _amplify_rows(task, hp, answer, db, rng, device, greedy, generator, ctx[rest], sq[rest], scores).answers
    least[rest] = scores["min_logp"]
    return out, least


def _x_rows(x, mem, ft, fm, al, repeats, generator, device, ctx, sq, rest, again):
    """X answers the rows `rest` of any contexts: each context's rows are laid out in its own row
    of a [B, Q', ql] batch (Q' the most rows of one context), so the fact encodings are read in
    place, as at the top level, instead of copied once per row."""
    out = np.zeros((len(sq), al), dtype=np.int64)
    idx = np.flatnonzero(rest)
    for again_pass in (False, True):  # first every row, then the repeats again: sampled, or X's runner-up
        if again_pass and _x_decoding(repeats, True) == _x_decoding(repeats, False):
            break
        rows = idx[again[idx]] if again_pass else idx
        if not len(rows):
            continue
        rows = rows[np.argsort(ctx[rows], kind="stable")]
        c = ctx[rows]
        slot = np.arange(len(c)) - np.searchsorted(c, c, side="left")  # rank of the row in its context
        q = np.zeros((mem.shape[0], int(slot.max()) + 1, sq.shape[1]), dtype=np.int64)
        q[c, slot] = sq[rows]
        ans = x.generate(mem, ft, fm, to_tensor(q, device).long(), generator=generator,
                         **_x_decoding(repeats, again_pass)).cpu().numpy()
        out[rows] = ans[c, slot]
    return out, np.zeros(len(sq), dtype=np.float32)


@torch.no_grad()
def hprime_answerer(task: Task, hp: HPrime, x: XModel, facts, fact_mask, db, rng, device="cpu",
                    levels: int = 1):
    """Amplify^{H'}(X) of depth `levels` (X greedy at the leaves) as an answerer
    (ctx [N], questions [N, ql]) -> answers [N, al] for any questions of these contexts: what
    answers H's complex subquestions at the top of the amplify stage's tree of depth levels + 1."""
    hp.eval(), x.eval()
    ft, fm = to_tensor(facts, device).long(), to_tensor(fact_mask, device).bool()
    mem = x.encode(ft, fm)
    answer = functools.partial(_x_rows, x, mem, ft, fm, task.answer_length, "greedy", None, device)
    for _ in range(levels - 1):
        answer = functools.partial(_amplified_rows, task, hp, answer, db, rng, device, True, None)

    @torch.no_grad()
    def ask(ctx, questions):
        return _amplify_rows(task, hp, answer, db, rng, device, True, None, np.asarray(ctx),
                             np.asarray(questions, dtype=np.int64)).answers
    return ask


def amplify_h_with_x(task: Task, x: XModel, facts, fact_mask, ctx, questions, db, rng,
                     device="cpu", human=None, repeats: str = "greedy", levels: int = 1,
                     deep=None, deep_ctx=None) -> Transcripts:
    """Amplify^H(X): the (scripted or recorded) human asks, X's teacher answers complex
    subquestions (a repeated one with a fresh sample, as in `amplify_hprime`), the oracle
    answers primitive ones.

    `levels` > 1 answers the complex subquestions with Amplify^H one level down, as
    `amplify_hprime` does; for diagnostics (H in H' place): every transcript below the top would
    be an H call too. `deep` (an answerer, e.g. `hprime_answerer`) answers instead of X the complex
    subquestions of the contexts where `deep_ctx` [contexts] is True, each ask anew (the decompose
    stage's `amplify.deep_transcripts`: H transcripts with the sub-answers H' gets at the top of
    the amplify stage's tree)."""
    if levels < 1:
        raise ValueError(f"amplify levels must be at least 1, got {levels}")
    answerer = XAnswerer(x, facts, fact_mask, device)
    if repeats == "all":  # every answer of X sampled, as in the original
        answerer = functools.partial(answerer, greedy=False, generator=seeded_generator(rng, device))
    oracle = lambda c, q: task.answer(db, np.asarray(c), np.asarray(q), rng)  # noqa: E731
    resample = None
    if repeats == "sample":
        gen = seeded_generator(rng, device)
        resample = lambda c, q: answerer(c, q, greedy=False, generator=gen)  # noqa: E731
    elif repeats == "second":
        resample = functools.partial(answerer, rank=1)
    top = answerer
    for k in range(levels - 1):  # X's repeats at the leaves as in `amplify_hprime`'s `_x_rows`
        top = functools.partial(_amplified_h, task, top, oracle, human, resample if k == 0 else None)
    if levels > 1:  # (above the leaves a repeat gets a new tree, with new oracle draws)
        resample = None
    if deep is not None:  # (a repeat there gets a new tree anyway, with new oracle draws)
        mask = np.asarray(deep_ctx, dtype=bool)
        top = _split(mask, deep, top)
        resample = None if resample is None else _split(mask, deep, resample)
    return amplify_h(task, ctx, questions, top, oracle, human, resample=resample)


def _split(mask, deep, shallow):
    """An answerer that sends the rows of the contexts in `mask` to `deep`, the rest to `shallow`."""
    def ask(c, q):
        c, q = np.asarray(c), np.asarray(q)
        d = mask[c]
        if d.all() or not d.any():
            return (deep if d.all() else shallow)(c, q)
        a, b = deep(c[d], q[d]), shallow(c[~d], q[~d])
        out = np.zeros((len(q), a.shape[1]), dtype=a.dtype)
        out[d], out[~d] = a, b
        return out
    return ask


def _amplified_h(task, answerer, oracle, human, resample, ctx, questions) -> np.ndarray:
    return amplify_h(task, ctx, questions, answerer, oracle, human, resample=resample).answers
