"""H', the human predictor: a causal transformer over transcripts with a copy head.

A transcript is `question | R x (subquestion, sub-answer) | answer` (human.Transcripts.tokens),
preceded by a start token. Each position gets token, token-kind and position embeddings (with
`numbers`, the task's number tokens also a shared one: a vector plus their value times another). H' is
trained with cross-entropy on subquestion and final-answer tokens only: the question and the
sub-answers are conditioning. The copy head points at any earlier transcript token, so H' can
reuse a name it has seen without knowing what it means. It never sees the facts.

Decoding is incremental with a key/value cache: one new token per call, O(t) work per token.
With `members` > 1 (a deviation), H' is an `Ensemble`: several such transformers whose
next-token probabilities are averaged, with the same interface.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .hparams import HPrimeConfig

MAIN_Q, SUB_Q, SUB_A, MAIN_A = 0, 1, 2, 3  # token kinds


def layout(ql: int, al: int, R: int) -> np.ndarray:
    """Kinds of the positions of [start] + transcript."""
    kinds = [MAIN_Q] * (1 + ql)
    for _ in range(R):
        kinds += [SUB_Q] * ql + [SUB_A] * al
    kinds += [MAIN_A] * al
    return np.array(kinds)


# How a decoding step's one new token attends to the key/value cache: "matmul" (two batched
# matmuls), "sdpa" (torch's scaled_dot_product_attention) or "auto": matmuls on CPU, SDPA elsewhere,
# where its fused kernels are the fast path. On CPU the matmuls give the targets of the einsums the
# committed studies ran bit for bit (SDPA rounds differently); python bench/bench_learning.py, part
# 4, times the two
ONE_QUERY_ATTENTION = "auto"


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: HPrimeConfig):
        super().__init__()
        self.h, self.w = cfg.heads, cfg.width
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.out = nn.Linear(cfg.width, cfg.width)
        self.drop = cfg.dropout

    def forward(self, x, cache: dict | None = None):
        B, T, W = x.shape
        q, k, v = self.qkv(x).split(W, -1)
        q, k, v = (t.view(B, T, self.h, W // self.h).transpose(1, 2) for t in (q, k, v))
        if cache is not None:  # incremental: write this step's keys/values into the cache
            t = cache["t"]
            cache["k"][:, :, t:t + T], cache["v"][:, :, t:t + T] = k, v
            k, v = cache["k"][:, :, :t + T], cache["v"][:, :, :t + T]
            if ONE_QUERY_ATTENTION == "sdpa" or (ONE_QUERY_ATTENTION == "auto" and q.device.type != "cpu"):
                y = F.scaled_dot_product_attention(q, k, v)  # the new token sees everything so far
            else:  # two batched matmuls, on the cache's strided view (no copy)
                w = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * (W // self.h) ** -0.5, -1)
                y = torch.matmul(w, v)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.drop if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(B, T, W))


class Layer(nn.Module):
    """Pre-norm causal transformer layer."""

    def __init__(self, cfg: HPrimeConfig):
        super().__init__()
        w = cfg.width
        self.ln1, self.ln2 = nn.LayerNorm(w), nn.LayerNorm(w)
        self.attn = CausalSelfAttention(cfg)
        self.mlp = nn.Sequential(nn.Linear(w, cfg.ffn * w), nn.GELU(), nn.Linear(cfg.ffn * w, w), nn.Dropout(cfg.dropout))

    def forward(self, x, cache=None):
        x = x + self.attn(self.ln1(x), cache)
        return x + self.mlp(self.ln2(x))


def transcript_loss(logp: torch.Tensor, seq: torch.Tensor, target_pos: torch.Tensor, per_transcript: bool = False):
    """Mean cross-entropy over subquestion and final-answer tokens, from the log-probs [B, T, V]
    of each next token; also token accuracy, and with per_transcript the fraction of transcripts
    with every such token right (argmax)."""
    logp, tgt, m = logp[:, :-1], seq[:, 1:], target_pos[:-1]
    lp = logp[:, m].gather(-1, tgt[:, m].unsqueeze(-1)).squeeze(-1)
    hits = logp[:, m].argmax(-1) == tgt[:, m]
    if per_transcript:
        return -lp.mean(), hits.float().mean(), hits.all(-1).float().mean()
    return -lp.mean(), hits.float().mean()


class _Scorer(nn.Module):
    """What HPrime and Ensemble share: a forward giving each next token's log-probs [B, T, V], and
    `target_pos`, from which the transcript loss and the slow reference prediction follow."""

    def loss(self, seq: torch.Tensor, per_transcript: bool = False):
        return transcript_loss(self(seq), seq, self.target_pos, per_transcript)

    @torch.no_grad()
    def predict_nocache(self, prefix: torch.Tensor) -> torch.Tensor:
        """Log-probs of the token after `prefix` [B, t] by a full forward (the slow reference)."""
        return self(prefix)[:, -1]


class HPrime(_Scorer):
    def __init__(self, nvocab: int, question_length: int, answer_length: int, rounds: int, cfg: HPrimeConfig,
                 numbers: dict[int, float] | None = None):
        super().__init__()
        self.cfg, self.nvocab = cfg, nvocab
        self.ql, self.al, self.R = question_length, answer_length, rounds
        kinds = layout(question_length, answer_length, rounds)
        self.T = len(kinds)  # start token + transcript
        self.register_buffer("kinds", torch.as_tensor(kinds), persistent=False)
        w = cfg.width
        self.tok = nn.Embedding(nvocab, w)
        if cfg.numbers and numbers:  # number tokens: on a shared line, value scaled to at most 1
            ids = torch.as_tensor(sorted(numbers))
            scale = max(abs(v) for v in numbers.values()) or 1.0
            value, is_num = torch.zeros(nvocab), torch.zeros(nvocab)
            value[ids] = torch.as_tensor([numbers[int(t)] / scale for t in ids], dtype=torch.float32)
            is_num[ids] = 1.0
            self.register_buffer("num_value", value, persistent=False)
            self.register_buffer("is_num", is_num, persistent=False)
            self.num_base = nn.Parameter(torch.randn(w))  # nn.Embedding's scale
            self.num_dir = nn.Parameter(torch.randn(w))
            with torch.no_grad():  # their own rows start at 0: a number never seen is base + value * dir
                self.tok.weight[ids] = 0.0
        else:
            self.num_value = None
        self.kind = nn.Embedding(4, w)
        self.pos = nn.Embedding(self.T, w)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.layers))
        self.ln = nn.LayerNorm(w)
        self.head = nn.Linear(w, nvocab)
        self.copy_q = nn.Linear(w, w)
        self.copy_k = nn.Linear(w, w)
        self.gate = nn.Linear(w, 1)
        # the loss covers the positions whose NEXT token is a subquestion or final-answer token
        nxt = np.r_[kinds[1:], -1]
        self.register_buffer("target_pos", torch.as_tensor((nxt == SUB_Q) | (nxt == MAIN_A)), persistent=False)

    @classmethod
    def for_task(cls, task, cfg: HPrimeConfig) -> "HPrime | Ensemble":
        """H' for a task: one transformer, or an Ensemble of cfg.members of them."""
        make = lambda: cls(task.nvocab, task.question_length, task.answer_length, task.rounds, cfg,  # noqa: E731
                           task.vocab.numbers)
        return make() if cfg.members == 1 else Ensemble([make() for _ in range(cfg.members)])

    def _embed(self, tokens, start: int):
        T = tokens.shape[1]
        pos = torch.arange(start, start + T, device=tokens.device)
        tokens = tokens.clamp(0, self.nvocab - 1)
        e = self.tok(tokens) + self.kind(self.kinds[pos]) + self.pos(pos)
        if self.num_value is not None:
            e = e + self.is_num[tokens].unsqueeze(-1) * self.num_base + self.num_value[tokens].unsqueeze(-1) * self.num_dir
        return e

    def _output(self, h, keys, tokens):
        """Mix the vocabulary softmax with the copy distribution over earlier tokens.
        h [B, t, W] queries; keys [B, s, W] and tokens [B, s] of the positions they may copy."""
        h = self.ln(h)
        log_vocab = F.log_softmax(self.head(h), -1)
        scores = torch.einsum("btw,bsw->bts", self.copy_q(h), keys) / self.cfg.width ** 0.5
        t, s = h.shape[1], keys.shape[1]
        if t > 1:  # training: position i copies from positions <= i
            causal = torch.ones(t, s, dtype=torch.bool, device=h.device).tril(s - t)
            scores = scores.masked_fill(~causal, float("-inf"))
        attn = F.softmax(scores, -1)
        copy = torch.zeros(h.shape[0], t, self.nvocab, device=h.device, dtype=attn.dtype)
        copy.scatter_add_(2, tokens.clamp(0, self.nvocab - 1).unsqueeze(1).expand(-1, t, -1), attn)
        g = torch.sigmoid(self.gate(h))
        return torch.logaddexp(log_vocab + torch.log(1 - g + 1e-9), torch.log(copy * g + 1e-30))

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """seq [B, T] (start + transcript) -> log-probs [B, T, V] of each NEXT token."""
        x = self._embed(seq, 0)
        for layer in self.layers:
            x = layer(x)
        return self._output(x, self.copy_k(self.ln(x)), seq)

    def train_loss(self, seq: torch.Tensor):
        """The training objective (its loss and token accuracy): the transcript loss."""
        return self.loss(seq)

    def clip_groups(self) -> list[list[nn.Parameter]]:
        """The parameter groups whose gradient norm is clipped one by one: all of them, here."""
        return [list(self.parameters())]

    # ---- incremental decoding ------------------------------------------------------------------
    def start(self, n: int, device="cpu") -> dict:
        """A key/value cache for n transcripts. Its buffers are allocated once, at the full length,
        by the first step (in the dtype of its activations, which autocast may lower): growing
        them by concatenation copied all of them at every token."""
        return {"t": 0, "layers": [{} for _ in self.layers], "keys": None, "tokens": None}

    def _buffer(self, like: torch.Tensor, *shape) -> torch.Tensor:
        return torch.empty(like.shape[0], *shape, dtype=like.dtype, device=like.device)

    def step(self, cache: dict, tokens: torch.Tensor) -> torch.Tensor:
        """Feed tokens [B, k] at the next k positions; return log-probs [B, V] of the token after."""
        t, k = cache["t"], tokens.shape[1]
        assert k == 1 or not t, "several tokens only at the first step (the cached attention has no causal mask)"
        x = self._embed(tokens, t)
        for layer, lc in zip(self.layers, cache["layers"]):
            lc["t"] = t
            x = layer(x, lc) if t else self._prefill(layer, x, lc)
        keys = self.copy_k(self.ln(x))
        if not t:
            cache["keys"] = self._buffer(keys, self.T, keys.shape[-1])
            cache["tokens"] = self._buffer(tokens, self.T)
        cache["keys"][:, t:t + k] = keys
        cache["tokens"][:, t:t + k] = tokens
        cache["t"] = t + k
        return self._output(x[:, -1:], cache["keys"][:, :t + k], cache["tokens"][:, :t + k])[:, 0]

    def _prefill(self, layer: Layer, x, lc):
        """The first tokens (the question, several at once): causal attention within them; the
        cache's key/value buffers are allocated here and take their keys and values."""
        a = layer.attn
        B, T, W = x.shape
        h = layer.ln1(x)
        q, k, v = a.qkv(h).split(W, -1)
        q, k, v = (t.view(B, T, a.h, W // a.h).transpose(1, 2) for t in (q, k, v))
        lc["k"], lc["v"] = (self._buffer(k, a.h, self.T, W // a.h) for _ in range(2))
        lc["k"][:, :, :T], lc["v"][:, :, :T] = k, v
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + a.out(y.transpose(1, 2).reshape(B, T, W))
        return x + layer.mlp(layer.ln2(x))


class Ensemble(_Scorer):
    """H' as several HPrime members, each from its own random start: the next-token distribution is
    the mean of theirs (a mixture), so a token one member is sure of and another doubts gets a lower
    probability than either alone would give it. Each member is trained on its own loss, as if
    alone (train_loss, clip_groups); evaluation and decoding see the mixture."""

    def __init__(self, members: list[HPrime]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.nvocab = members[0].nvocab  # what the trainer reads (renaming)
        self.register_buffer("target_pos", members[0].target_pos.clone(), persistent=False)
        self._log_k = float(np.log(len(members)))

    def _mix(self, logps: list[torch.Tensor]) -> torch.Tensor:
        return torch.logsumexp(torch.stack(logps), 0) - self._log_k

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return self._mix([m(seq) for m in self.members])

    def train_loss(self, seq: torch.Tensor):
        """The mean of the members' own losses and token accuracies: each member's gradient is its
        own loss's, divided by the number of members (Adam does not mind the scale)."""
        out = [m.loss(seq) for m in self.members]
        return torch.stack([o[0] for o in out]).mean(), torch.stack([o[1] for o in out]).mean()

    def clip_groups(self) -> list[list[nn.Parameter]]:
        return [list(m.parameters()) for m in self.members]

    def start(self, n: int, device="cpu") -> dict:
        return {"members": [m.start(n, device) for m in self.members]}

    def step(self, cache: dict, tokens: torch.Tensor) -> torch.Tensor:
        return self._mix([m.step(c, tokens) for m, c in zip(self.members, cache["members"])])
