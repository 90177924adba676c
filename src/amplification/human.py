"""Amplify^H(answerer): the batched lock-step runner, and transcripts.

H is pluggable: anything that maps one question to a `HumanGen` generator (yield a subquestion,
receive its answer, return the final answer). The scripted H of each task is one; a recorded or
live person and a fake that misbehaves are others.

All questions of a batch advance together, one round at a time, so every round is ONE call of the
answerer with the whole column of that round's subquestions. Primitive subquestions go to the
look-up oracle (whoever asked them); the others go to the answerer (the oracle, a model, a fake).

Deviation from the original release: a blank round (H has already answered) is not sent to the
answerer; its subquestion and sub-answer stay all-0 in the transcript. The original sent blanks to
X and recorded its arbitrary answers, which H' then had to learn to ignore.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .tasks.base import Task

Answerer = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (ctx [N], questions [N, ql]) -> [N, al]
HumanFactory = Callable[[np.ndarray], "object"]  # question [ql] -> HumanGen


@dataclass
class Transcripts:
    """N transcripts: question | R x (subquestion, sub-answer) | answer, unused rounds all-0."""

    questions: np.ndarray  # [N, ql]
    subquestions: np.ndarray  # [N, R, ql]
    subanswers: np.ndarray  # [N, R, al]
    answers: np.ndarray  # [N, al]
    asked: np.ndarray  # [N] subquestions asked (non-blank rounds)
    primitive: np.ndarray  # [N] of those, answered by the oracle

    def __len__(self) -> int:
        return len(self.questions)

    def tokens(self) -> np.ndarray:
        """Flat transcripts [N, ql + R*(ql+al) + al], the layout H' is trained on."""
        N = len(self)
        rounds = np.concatenate([self.subquestions, self.subanswers], axis=-1).reshape(N, -1) if N else \
            np.zeros((0, self.subquestions.shape[1] * (self.subquestions.shape[2] + self.subanswers.shape[2])), np.int64)
        return np.concatenate([self.questions, rounds, self.answers], axis=-1)

    @classmethod
    def concat(cls, parts: list["Transcripts"]) -> "Transcripts":
        return cls(*[np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__])

    @classmethod
    def from_tokens(cls, task: Task, tokens: np.ndarray) -> "Transcripts":
        """The inverse of `tokens()` (`asked` counts the non-blank rounds, `primitive` by the task's rule)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        N, R, ql, al = len(tokens), task.rounds, task.question_length, task.answer_length
        if tokens.ndim != 2 or tokens.shape[1] != ql + R * (ql + al) + al:
            raise ValueError(f"{task.name}: transcripts of {tokens.shape[-1]} tokens, expected {ql + R * (ql + al) + al}")
        rounds = tokens[:, ql:ql + R * (ql + al)].reshape(N, R, ql + al)
        subq, suba = rounds[..., :ql], rounds[..., ql:]
        used = subq.any(-1)
        prim = (task.is_primitive(subq.reshape(-1, ql)).reshape(N, R) & used) if N else used
        return cls(tokens[:, :ql], subq, suba, tokens[:, -al:], used.sum(1), prim.sum(1))


def replay(task: Task, tr: Transcripts, subanswers: np.ndarray, human: HumanFactory | None = None) -> Transcripts:
    """H rerun on tr's questions, each subquestion answered from `subanswers` [N, R, al] (the same
    round of the same transcript): the transcripts H writes when its answerer (and oracle) give
    those answers. A counterfactual X (hprime_train.counterfactual) is one use. H must ask the
    recorded subquestions; where it asks another, there is no answer to give: HumanProtocolError."""
    subanswers = np.asarray(subanswers, dtype=np.int64)
    if subanswers.shape != tr.subanswers.shape:
        raise ValueError(f"replay: sub-answers of shape {subanswers.shape}, expected {tr.subanswers.shape}")
    at = np.zeros(len(tr), dtype=np.int64)  # each row's next round: every row is asked once per round

    def lookup(rows: np.ndarray, col: np.ndarray) -> np.ndarray:
        r = at[rows]
        same = (tr.subquestions[rows, r] == col).all(-1)
        if not same.all():
            bad = int(rows[~same][0])
            raise HumanProtocolError(f"{task.name}: on replay, H asked transcript {bad} a subquestion it had not "
                                     f"asked in round {int(at[bad])}")
        at[rows] += 1
        return subanswers[rows, r]

    return amplify_h(task, np.arange(len(tr)), tr.questions, lookup, lookup, human)


def repeated(subq: np.ndarray, r: int, sq: np.ndarray) -> np.ndarray:
    """Rows whose round-r subquestion sq [N, ql] equals one they asked in rounds < r -> bool [N]."""
    if r == 0:
        return np.zeros(len(sq), dtype=bool)
    return (subq[:, :r] == sq[:, None]).all(-1).any(-1) & sq.any(-1)


class HumanProtocolError(RuntimeError):
    """A human asked more than R subquestions or returned a malformed record."""


def amplify_h(
    task: Task,
    ctx: np.ndarray,
    questions: np.ndarray,
    answerer: Answerer,
    oracle: Answerer | None = None,
    human: HumanFactory | None = None,
    resample: Answerer | None = None,
) -> Transcripts:
    """Run Amplify^H(answerer) on questions [N, ql] from contexts ctx [N].

    `oracle` answers primitive subquestions (pass the task's oracle); with None, the answerer
    answers everything (as when the answerer *is* the oracle). `resample`, when given, answers
    the non-primitive subquestions that the same transcript already asked (a model's fresh sample
    instead of its first answer again).
    """
    human = human or task.human
    questions = np.asarray(questions, dtype=np.int64)
    ctx = np.asarray(ctx)
    N, R, ql, al = len(questions), task.rounds, task.question_length, task.answer_length
    subq = np.zeros((N, R, ql), dtype=np.int64)
    suba = np.zeros((N, R, al), dtype=np.int64)
    final = np.zeros((N, al), dtype=np.int64)
    asked = np.zeros(N, dtype=np.int64)
    prim = np.zeros(N, dtype=np.int64)
    gens = [human(q) for q in questions]
    pending: list = [None] * N
    done = np.zeros(N, dtype=bool)

    def advance(i: int, value) -> None:
        try:
            pending[i] = next(gens[i]) if value is None else gens[i].send(value)
        except StopIteration as stop:
            final[i] = _record(stop.value, al, "answer")
            done[i] = True

    for i in range(N):
        advance(i, None)
    for r in range(R):
        idx = np.flatnonzero(~done)
        if len(idx) == 0:
            break
        col = np.stack([_record(pending[i], ql, "subquestion") for i in idx])
        subq[idx, r] = col
        answers = np.zeros((len(idx), al), dtype=np.int64)
        is_prim = task.is_primitive(col) if oracle is not None else np.zeros(len(idx), bool)
        if is_prim.any():
            answers[is_prim] = oracle(ctx[idx[is_prim]], col[is_prim])
        again = ~is_prim & repeated(subq[idx], r, col) if resample is not None else np.zeros(len(idx), bool)
        first = ~is_prim & ~again
        if first.any():
            answers[first] = answerer(ctx[idx[first]], col[first])
        if again.any():
            answers[again] = resample(ctx[idx[again]], col[again])
        suba[idx, r] = answers
        asked[idx] += 1
        prim[idx] += is_prim
        for j, i in enumerate(idx):
            advance(i, answers[j].copy())
    if not done.all():
        raise HumanProtocolError(f"{task.name}: the human asked more than R={R} subquestions")
    return Transcripts(questions, subq, suba, final, asked, prim)


def _record(value, length: int, what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.int64).reshape(-1)
    if arr.shape[0] != length:
        raise HumanProtocolError(f"the human returned a {what} of {arr.shape[0]} tokens, expected {length}")
    return arr


def amplify_h_batch(task: Task, batch, answerer: Answerer | None = None, human=None, rng=None) -> Transcripts:
    """Amplify^H over every top-level question of a Batch; the oracle answers primitives and,
    when no answerer is given, everything else too (then the answers equal the ground truth)."""
    oracle = task.oracle(batch, rng)
    B, Q = batch.questions.shape[:2]
    ctx = np.repeat(np.arange(B), Q)
    return amplify_h(task, ctx, batch.questions.reshape(B * Q, -1), answerer or oracle, oracle, human)
