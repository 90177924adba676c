"""Training X (distillation, and the supervised baseline) and H', with exact checkpoints.

The supervised baseline is the same Distiller fed with ground-truth targets. Everything a run
needs to resume bit-identically (weights, teacher, optimiser, RNG states, step) is in
`state_dict()`; `save_checkpoint` writes it atomically.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .hparams import DistillConfig, HPrimeConfig, HPrimeTrainConfig, XConfig
from .hprime import HPrime
from .human import Transcripts, replay
from .xmodel import Teacher, XModel, nll, to_tensor


def setup_torch(threads: int, device: str = "auto") -> str:
    """Pick the device ('auto': CUDA when present) and match torch threads to the job's."""
    torch.set_num_threads(max(1, int(threads)))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return device


def pad_to(a: np.ndarray, shape: tuple) -> np.ndarray:
    out = np.zeros(shape, dtype=a.dtype)
    out[tuple(slice(0, s) for s in a.shape)] = a
    return out


@dataclass
class ContextData:
    """Training contexts: facts [C, F, fl], fact_mask [C, F], questions [C, Q, ql],
    targets [C, Q, al], qmask [C, Q] (which questions the loss counts)."""

    facts: np.ndarray
    fact_mask: np.ndarray
    questions: np.ndarray
    targets: np.ndarray
    qmask: np.ndarray

    def __len__(self):
        return len(self.facts)

    @classmethod
    def concat(cls, parts: list["ContextData"]) -> "ContextData":
        F = max(p.facts.shape[1] for p in parts)
        Q = max(p.questions.shape[1] for p in parts)
        out = []
        for name in ("facts", "fact_mask", "questions", "targets", "qmask"):
            arrs = [getattr(p, name) for p in parts]
            arrs = [pad_to(a, (a.shape[0], F if name.startswith("fact") else Q) + a.shape[2:]) for a in arrs]
            out.append(np.concatenate(arrs))
        return cls(*out)


def _trim(batch: ContextData, idx) -> tuple:
    """A minibatch with the all-padding columns dropped (they change nothing but cost time)."""
    fm, qm = batch.fact_mask[idx], batch.qmask[idx]
    last = lambda m: int(np.flatnonzero(m.any(0)).max()) + 1 if m.any() else 1  # noqa: E731
    F, Q = last(fm), last(qm)  # masked-out questions may sit anywhere; padding only at the end
    return batch.facts[idx, :F], fm[:, :F], batch.questions[idx, :Q], batch.targets[idx, :Q], qm[:, :Q]


def lr_at(cfg: DistillConfig, step: int) -> float:
    """X's learning rate at (0-based) global step `step`: linear warm-up, then cosine decay."""
    lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else cfg.lr
    if cfg.decay_steps:
        t = min(step, cfg.decay_steps) / cfg.decay_steps
        lr *= cfg.lr_min + (1.0 - cfg.lr_min) * 0.5 * (1.0 + math.cos(math.pi * t))
    return lr


class Distiller:
    """X, its teacher and its optimiser."""

    def __init__(self, task, xcfg: XConfig, dcfg: DistillConfig, seed: int, device: str = "cpu"):
        torch.manual_seed(seed)
        self.task, self.xcfg, self.cfg, self.device = task, xcfg, dcfg, device
        self.model = XModel.for_task(task, xcfg).to(device)
        self.teacher = Teacher(self.model, dcfg.ema_horizon)
        opt_cls = torch.optim.AdamW if dcfg.weight_decay else torch.optim.Adam
        kw = {"weight_decay": dcfg.weight_decay} if dcfg.weight_decay else {}
        self.opt = opt_cls(self.model.parameters(), lr=dcfg.lr, betas=(0.9, dcfg.beta2), **kw)
        self.step = 0
        self.rng = np.random.default_rng(seed)

    def train_step(self, facts, fmask, questions, targets, qmask) -> float:
        dev = self.device
        self.model.train()
        tt = to_tensor(targets, dev).long()
        logp = self.model(to_tensor(facts, dev).long(), to_tensor(fmask, dev).bool(), to_tensor(questions, dev).long(), tt)
        loss = nll(logp, tt, to_tensor(qmask, dev).float())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        if self.cfg.warmup or self.cfg.decay_steps:  # by the global step: a resumed run continues the schedule
            for g in self.opt.param_groups:
                g["lr"] = lr_at(self.cfg, self.step)
        self.opt.step()
        self.step += 1
        self.teacher.update(self.model, self.step)
        return loss.item()

    def train(self, data: ContextData, steps: int, progress=None) -> dict:
        """`steps` optimiser steps on minibatches drawn uniformly with replacement from data."""
        losses = []
        t0 = time.time()
        for _ in range(steps):
            idx = self.rng.integers(0, len(data), min(self.cfg.batch_contexts, len(data)))
            losses.append(self.train_step(*_trim(data, idx)))
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
        return {"loss": float(np.mean(losses[-max(1, steps // 10):])) if losses else float("nan"),
                "seconds": time.time() - t0, "steps": self.step}

    def state_dict(self) -> dict:
        return {
            "kind": "x", "task": {"name": self.task.name, "params": self.task.params},
            "xcfg": asdict(self.xcfg), "dcfg": asdict(self.cfg),
            "model": self.model.state_dict(), "teacher": self.teacher.model.state_dict(),
            "opt": self.opt.state_dict(), "step": self.step,
            "np_rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, sd: dict) -> None:
        self.model.load_state_dict(sd["model"])
        self.teacher.model.load_state_dict(sd["teacher"])
        self.opt.load_state_dict(sd["opt"])
        self.step = sd["step"]
        self.rng.bit_generator.state = sd["np_rng"]
        torch.set_rng_state(sd["torch_rng"])


def start_sequences(tokens: np.ndarray, device="cpu") -> torch.Tensor:
    """[N, T-1] transcripts -> [N, T] with the start token in front."""
    return to_tensor(np.concatenate([np.zeros((len(tokens), 1), np.int64), tokens], 1), device).long()


@torch.no_grad()
def evaluate_hprime(model: HPrime, tokens: np.ndarray, device="cpu") -> dict:
    """H' loss, token accuracy and transcript accuracy (every token right; teacher-forced,
    argmax) on transcripts, in eval mode. The mean loss hides a wrong final answer among ~40 easy
    tokens; the transcript accuracy does not."""
    model.eval()
    loss, acc, whole = model.loss(start_sequences(tokens, device), per_transcript=True)
    return {"loss": float(loss), "token_accuracy": float(acc), "transcript_accuracy": float(whole)}


class HPrimeTrainer:
    """H' and its optimiser, trained on flat transcripts (human.Transcripts.tokens())."""

    def __init__(self, task, hcfg: HPrimeConfig, tcfg: HPrimeTrainConfig, seed: int, device: str = "cpu"):
        torch.manual_seed(seed + 1)
        self.task, self.hcfg, self.cfg, self.device = task, hcfg, tcfg, device
        if tcfg.rename and not task.renamable:
            raise ValueError(f"hprime_train.rename: task {task.name}'s H is not checked to ignore which name is "
                             "which (only union find's is); turn it off for this task")
        if tcfg.counterfactual and not task.counterfactual:
            raise ValueError(f"hprime_train.counterfactual: task {task.name} gives no counterfactual sub-answers "
                             "(only union find does); set it to 0 for this task")
        self.model = HPrime.for_task(task, hcfg).to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=tcfg.lr, betas=(0.9, 0.98))
        self.step = 0
        self.rng = np.random.default_rng(seed + 1)

    def renamed(self, seqs: torch.Tensor) -> torch.Tensor:
        """Each row with its name characters mapped by its own random permutation (the other tokens
        kept): a name of several characters maps to another name, different names stay different."""
        base, n = self.task._char_base, self.task.nchars
        table = torch.arange(self.model.nvocab).repeat(len(seqs), 1)
        perm = np.argsort(self.rng.random((len(seqs), n)), axis=1)
        table[:, base:base + n] = torch.as_tensor(perm + base)
        return table.to(seqs.device).gather(1, seqs.clamp(0, self.model.nvocab - 1))

    def counterfactuals(self, tokens: np.ndarray) -> np.ndarray:
        """Transcripts [N, T-1] -> the ones H writes for the task's counterfactual sub-answers."""
        tr = Transcripts.from_tokens(self.task, tokens)
        other = self.task.counterfactual_answers(tr.subquestions, tr.subanswers, self.rng)
        return replay(self.task, tr, other).tokens()

    def sequences(self, tokens: np.ndarray) -> torch.Tensor:
        return start_sequences(tokens, self.device)

    @torch.no_grad()
    def all_right(self, seqs: torch.Tensor, chunk: int = 1024) -> np.ndarray:
        """[N] bool: H' gives every subquestion and answer token of transcript n (greedy, teacher-forced)."""
        self.model.eval()
        m = self.model.target_pos[:-1]
        out = []
        for s in seqs.split(chunk):
            out.append((self.model(s)[:, :-1][:, m].argmax(-1) == s[:, 1:][:, m]).all(-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=bool)

    def evaluate(self, tokens: np.ndarray) -> dict:
        return evaluate_hprime(self.model, tokens, self.device)

    def train(self, tokens: np.ndarray, steps: int, progress=None, recent_from: int | None = None) -> dict:
        """`steps` Adam steps on batches of `tokens` (transcripts); `recent_from`: where the newest
        iteration's transcripts start, which cfg.recent_fraction of each batch is drawn from."""
        if steps == 0:  # nothing to train: report where H' stands on these transcripts
            return {**self.evaluate(tokens), "steps": self.step}
        seqs = self.sequences(tokens)
        losses, accs = [], []
        batch = min(self.cfg.batch, len(seqs))
        hard = np.zeros(0, dtype=np.int64)
        for k in range(steps):
            if self.cfg.hard_fraction > 0 and k % self.cfg.hard_every == 0:
                hard = np.flatnonzero(~self.all_right(seqs))
            self.model.train()
            n_hard = round(batch * self.cfg.hard_fraction) if len(hard) else 0
            n_recent = round(batch * self.cfg.recent_fraction) if recent_from is not None and recent_from < len(seqs) else 0
            idx = self.rng.integers(0, len(seqs), batch - n_hard - n_recent)
            if n_hard:  # the rest from the transcripts H' got wrong at the last search
                idx = np.concatenate([idx, hard[self.rng.integers(0, len(hard), n_hard)]])
            if n_recent:
                idx = np.concatenate([idx, self.rng.integers(recent_from, len(seqs), n_recent)])
            batch_seqs = seqs[torch.as_tensor(idx)]
            if self.cfg.counterfactual > 0:  # swap a share of the batch for counterfactual copies
                swap = np.flatnonzero(self.rng.random(len(idx)) < self.cfg.counterfactual)
                if len(swap):
                    batch_seqs[torch.as_tensor(swap)] = self.sequences(self.counterfactuals(tokens[idx[swap]]))
            loss, acc = self.model.train_loss(self.renamed(batch_seqs) if self.cfg.rename else batch_seqs)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            groups = self.model.clip_groups()  # an ensemble's members one by one, as if each trained alone
            for group in groups:  # (its loss is the members' mean, so each gradient is 1/k of its own)
                torch.nn.utils.clip_grad_norm_(group, self.cfg.grad_clip / len(groups))
            self.opt.step()
            self.step += 1
            losses.append(loss.item())
            accs.append(acc.item())
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
        k = max(1, steps // 10)
        return {"loss": float(np.mean(losses[-k:])) if losses else float("nan"),
                "token_accuracy": float(np.mean(accs[-k:])) if accs else float("nan"), "steps": self.step}

    def state_dict(self) -> dict:
        return {"kind": "hprime", "task": {"name": self.task.name, "params": self.task.params},
                "hcfg": asdict(self.hcfg), "tcfg": asdict(self.cfg),
                "model": self.model.state_dict(), "opt": self.opt.state_dict(), "step": self.step,
                "np_rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, sd: dict) -> None:
        self.model.load_state_dict(sd["model"])
        self.opt.load_state_dict(sd["opt"])
        self.step = sd["step"]
        self.rng.bit_generator.state = sd["np_rng"]
        torch.set_rng_state(sd["torch_rng"])


def save_checkpoint(obj: dict, path: str) -> None:
    """torch.save through a temporary file and a rename: a crash never leaves half a file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str, device="cpu") -> dict:
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from None
