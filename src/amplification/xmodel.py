"""X, the answerer: a fact-set encoder, a question decoder and a pointer/vocabulary output.

- A record (fact, question, answer prefix) is embedded by concatenating its token embeddings and
  projecting to the model width (no positions inside the set of facts: the facts are a set).
- The encoder is post-norm self-attention over the facts with padding masked, so padding facts
  change nothing (a deviation from the original, which had no masks).
- The decoder: each (question, answer position) is one query that cross-attends to the encoded
  facts only; questions never attend to each other. The fact encoding is computed once per
  context and reused by every question and every amplification round (`encode` then `decode`).
- The output at each answer position mixes a vocabulary softmax with one pointer per fact slot
  (copy the token in slot j of the attended fact), with learned mixture weights, so X can copy
  names it has never learned to produce.
- Answers (1-2 tokens) are decoded one token at a time, greedy or sampled.
- `share_layers` (off by default) ties the weights of the encoder's layers to one layer applied
  `enc_layers` times, and likewise in the decoder (a universal transformer, as the later fork's
  `universal_transformer` option): the same compute, fewer parameters, and one learned hop reused
  at every depth.
- `token_encoder` (off by default): the encoder's self-attention runs over the facts' tokens, each
  embedded with a learned slot embedding, instead of over whole facts; each fact's token states
  are then concatenated and projected to one memory slot, so the decoder and the pointer are
  unchanged. A name in any slot can then find the same name in another fact's slot with one
  attention hop (equal embeddings), where a whole-fact query has to pick one slot's name out of a
  projection of all of them.
- Deviation: no batch norm in the MLP (layer norm only); at small batch sizes on CPU batch norm's
  statistics would also make outputs depend on padding. Stated in the README.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .hparams import XConfig


class RecordEmbed(nn.Module):
    """Concatenated token embeddings of a fixed-length record, projected to the width."""

    def __init__(self, nvocab: int, length: int, embed: int, width: int):
        super().__init__()
        self.nvocab = nvocab
        self.tok = nn.Embedding(nvocab, embed)
        self.proj = nn.Linear(length * embed, width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        e = self.tok(tokens.clamp(0, self.nvocab - 1))
        return self.proj(e.flatten(-2))


class Block(nn.Module):
    """Post-norm transformer layer: x = LN(x + Attn(x, mem)); x = LN(x + MLP(x))."""

    def __init__(self, cfg: XConfig):
        super().__init__()
        w = cfg.width
        self.attn = nn.MultiheadAttention(w, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.ln1 = nn.LayerNorm(w)
        self.mlp = nn.Sequential(nn.Linear(w, cfg.ffn * w), nn.ReLU(), nn.Linear(cfg.ffn * w, w), nn.Dropout(cfg.dropout))
        self.ln2 = nn.LayerNorm(w)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, mem, mem_pad, bias=None):
        if bias is None:
            a, _ = self.attn(x, mem, mem, key_padding_mask=mem_pad, need_weights=False)
        else:  # bias [B*heads, L, S] already holds -inf at padding keys
            a, _ = self.attn(x, mem, mem, attn_mask=bias, need_weights=False)
        x = self.ln1(x + self.drop(a))
        return self.ln2(x + self.mlp(x))


class MatchBias(nn.Module):
    """Per-head attention bias from token equality between two records (deviation, off by default).

    eq[b, i, j, s, t] = 1 when slot s of record i and slot t of record j hold the same non-0 token;
    bias[b, h, i, j] = sum over (s, t) of eq * w[h, s, t], learned per layer. It offers X the
    name-matching hop (fact `x y z` -> the fact that defines y; question `C x` -> x's facts) as one
    weight per slot pair, where plain dot-product attention has to find it in random embeddings.

    `init` starts the weights of every query slot against the key's first `key_slots` slots (the
    name a fact is about) at that value instead of 0, so attention follows a name to the fact
    about it before anything is learned; every other weight starts at 0. Learned from 0, the hop
    was never found on assignments; started at 3, X learned the task (README notes)."""

    def __init__(self, heads: int, qslots: int, kslots: int, init: float = 0.0, key_slots: int = 1):
        super().__init__()
        self.heads = heads
        w = torch.zeros(heads, qslots, kslots)
        w[:, :, :key_slots] = init
        self.w = nn.Parameter(w.reshape(heads, qslots * kslots))

    @staticmethod
    def equal(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a [B, L, s], b [B, S, t] -> float [B, L, S, s*t]."""
        eq = (a[:, :, None, :, None] == b[:, None, :, None, :]) & (a[:, :, None, :, None] != 0)
        return eq.flatten(-2).float()

    def forward(self, eq: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """eq [B, L, S, s*t], pad [B, S] (True = padding) -> attn_mask [B*heads, L, S]."""
        B, L, S, _ = eq.shape
        bias = torch.einsum("blsk,hk->bhls", eq, self.w)
        bias = bias.masked_fill(pad[:, None, None, :], float("-inf"))
        return bias.reshape(B * self.heads, L, S)


class XModel(nn.Module):
    def __init__(self, nvocab: int, fact_length: int, question_length: int, answer_length: int, cfg: XConfig,
                 name_length: int = 1):
        super().__init__()
        self.cfg = cfg
        self.nvocab, self.fl, self.ql, self.al = nvocab, fact_length, question_length, answer_length
        w = cfg.width
        self.fact_embed = RecordEmbed(nvocab, fact_length, cfg.embed, w)
        self.q_embed = RecordEmbed(nvocab, question_length, cfg.embed, w)
        self.prefix_embed = RecordEmbed(nvocab, answer_length, cfg.embed, w)
        self.pos = nn.Parameter(torch.zeros(answer_length, w))  # which answer token is decoded
        # with shared layers each stack holds one Block (when it has any), applied once per layer
        blocks = (lambda n: min(n, 1)) if cfg.share_layers else (lambda n: n)
        self.encoder = nn.ModuleList(Block(cfg) for _ in range(blocks(cfg.enc_layers)))
        self.decoder = nn.ModuleList(Block(cfg) for _ in range(blocks(cfg.dec_layers)))
        self.vocab_head = nn.Linear(w, nvocab)
        self.ptr_q = nn.Linear(w, w)
        self.ptr_k = nn.Linear(w, w)
        self.mix = nn.Linear(w, 1 + fact_length)  # vocabulary + one pointer per fact slot
        if cfg.token_encoder:
            if cfg.match_bias:
                raise ValueError("x.token_encoder and x.match_bias cannot both be set (the bias is per fact)")
            self.tok_embed = nn.Embedding(nvocab, cfg.embed)
            self.tok_proj = nn.Linear(cfg.embed, w)
            self.slot = nn.Parameter(torch.randn(fact_length, w) * 0.02)  # which slot of its fact a token fills
            self.fold = nn.Linear(fact_length * w, w)  # a fact's token states -> its memory slot
        if cfg.match_bias:
            init = dict(init=cfg.match_bias_init, key_slots=min(name_length, fact_length))
            self.enc_bias = nn.ModuleList(MatchBias(cfg.heads, fact_length, fact_length, **init) for _ in range(cfg.enc_layers))
            # a decoding query's record: its question's tokens, then the answer tokens before it
            self.dec_bias = nn.ModuleList(MatchBias(cfg.heads, question_length + answer_length, fact_length, **init)
                                          for _ in range(cfg.dec_layers))
        # strict lower triangle: answer position t sees the answer tokens before t
        self.register_buffer("prefix_mask", torch.tril(torch.ones(answer_length, answer_length), -1).long(), persistent=False)

    @classmethod
    def for_task(cls, task, cfg: XConfig) -> "XModel":
        return cls(task.nvocab, task.fact_length, task.question_length, task.answer_length, cfg, task.length)

    def _layers(self, stack: nn.ModuleList, n: int) -> list:
        """The n layers a stack applies in order: its one Block n times when layers are shared."""
        return [stack[0]] * n if self.cfg.share_layers else list(stack)

    # ---- the two halves ------------------------------------------------------------------------
    def encode(self, facts: torch.Tensor, fact_mask: torch.Tensor) -> torch.Tensor:
        """facts [B, F, fl], fact_mask [B, F] (True = real) -> memory [B, F, W]. Once per context."""
        pad = ~fact_mask
        if self.cfg.token_encoder:
            return self._encode_tokens(facts, pad)
        x = self.fact_embed(facts)
        eq = MatchBias.equal(facts, facts) if self.cfg.match_bias else None
        for k, layer in enumerate(self._layers(self.encoder, self.cfg.enc_layers)):
            x = layer(x, x, pad, None if eq is None else self.enc_bias[k](eq, pad))
        return x

    def _encode_tokens(self, facts: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """`token_encoder`: self-attention over every token of every fact, then one memory slot
        per fact (its token states folded, plus its whole-fact embedding, which the decoder and
        the pointer read in the other encoder too)."""
        B, F, fl = facts.shape
        x = self.tok_proj(self.tok_embed(facts.clamp(0, self.nvocab - 1))) + self.slot  # [B, F, fl, W]
        x = x.reshape(B, F * fl, -1)
        tpad = pad.repeat_interleave(fl, dim=1)  # a padding fact's tokens are padding
        for layer in self._layers(self.encoder, self.cfg.enc_layers):
            x = layer(x, x, tpad)
        return self.fold(x.reshape(B, F, -1)) + self.fact_embed(facts)

    def decode(self, mem, facts, fact_mask, questions, prefix) -> torch.Tensor:
        """Log-probabilities [B, Q, al, V] of each answer token given the tokens before it.

        mem [B, F, W] from `encode`; questions [B, Q, ql]; prefix [B, Q, al] (teacher forcing:
        the targets; when decoding: the tokens chosen so far, later ones ignored)."""
        B, Q, _ = questions.shape
        al, W = self.al, self.cfg.width
        pre = prefix.unsqueeze(-2) * self.prefix_mask  # [B, Q, al(pos), al(tok)]
        h = self.q_embed(questions).unsqueeze(2) + self.prefix_embed(pre) + self.pos
        h = h.reshape(B, Q * al, W)
        pad = ~fact_mask
        eq = None
        if self.cfg.match_bias:
            rec = torch.cat([questions.unsqueeze(2).expand(B, Q, al, questions.shape[-1]), pre], -1)
            eq = MatchBias.equal(rec.reshape(B, Q * al, -1), facts)
        for k, layer in enumerate(self._layers(self.decoder, self.cfg.dec_layers)):
            h = layer(h, mem, pad, None if eq is None else self.dec_bias[k](eq, pad))
        log_vocab = F.log_softmax(self.vocab_head(h), -1)  # [B, N, V]
        scores = torch.einsum("bnw,bfw->bnf", self.ptr_q(h), self.ptr_k(mem)) / math.sqrt(W)
        attn = F.softmax(scores.masked_fill(pad.unsqueeze(1), float("-inf")), -1)  # [B, N, F]
        onehot = F.one_hot(facts.clamp(0, self.nvocab - 1), self.nvocab).to(attn.dtype)  # [B, F, fl, V]
        ptr = torch.einsum("bnf,bfjv->bnjv", attn, onehot).clamp_min(1e-30).log()  # [B, N, fl, V]
        mix = F.log_softmax(self.mix(h), -1)  # [B, N, 1 + fl]
        comps = torch.cat([log_vocab.unsqueeze(2), ptr], 2) + mix.unsqueeze(-1)
        return torch.logsumexp(comps, 2).reshape(B, Q, al, self.nvocab)

    def forward(self, facts, fact_mask, questions, prefix):
        return self.decode(self.encode(facts, fact_mask), facts, fact_mask, questions, prefix)

    @torch.no_grad()
    def generate(self, mem, facts, fact_mask, questions, greedy: bool = True, generator=None,
                 rank: int = 0) -> torch.Tensor:
        """Answers [B, Q, al], one token at a time, on a cached fact encoding. `rank` r > 0 (greedy
        only): the first token is the model's (r+1)-th most likely one, the rest greedy after it
        (its runner-up guess, for a subquestion asked again: `amplify.repeats: second`)."""
        out = torch.zeros(questions.shape[:2] + (self.al,), dtype=torch.long, device=questions.device)
        for t in range(self.al):
            logp = self.decode(mem, facts, fact_mask, questions, out)[:, :, t]
            if greedy and t == 0 and rank > 0:
                out[:, :, t] = logp.topk(rank + 1, -1).indices[..., rank]
            elif greedy:
                out[:, :, t] = logp.argmax(-1)
            else:
                probs = logp.exp().reshape(-1, self.nvocab)
                out[:, :, t] = torch.multinomial(probs, 1, generator=generator).reshape(logp.shape[:2])
        return out


def nll(logp: torch.Tensor, targets: torch.Tensor, qmask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy summed over answer tokens, averaged over real questions (qmask [B, Q])."""
    tok = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1).sum(-1)  # [B, Q]
    return (tok * qmask).sum() / qmask.sum().clamp_min(1)


class Teacher:
    """Weight average of the student: uniform over the first `horizon` steps, then exponential
    with decay 1 - 1/horizon (the original's Polyak teacher). Buffers are averaged too."""

    def __init__(self, model: nn.Module, horizon: int):
        import copy

        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.horizon = horizon

    @torch.no_grad()
    def update(self, student: nn.Module, step: int) -> None:
        """Call after student step `step` (1-based): avg += (p - avg) / min(step, horizon)."""
        rate = 1.0 / min(max(step, 1), self.horizon)
        for a, p in zip(self.model.state_dict().values(), student.state_dict().values()):
            if a.dtype.is_floating_point:
                a.add_(p.detach() - a, alpha=rate)
            else:
                a.copy_(p)


def to_tensor(a, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), device=device)


class XAnswerer:
    """Answers questions with a model on numpy arrays: encode each context once, then
    `answer(ctx, questions)` for any questions of those contexts (for Amplify^H and the page)."""

    def __init__(self, model: XModel, facts, fact_mask, device="cpu", batch: int = 256):
        self.model, self.device = model.eval(), device
        self.facts = to_tensor(facts, device).long()
        self.mask = to_tensor(fact_mask, device).bool()
        with torch.no_grad():
            self.mem = torch.cat([model.encode(self.facts[i:i + batch], self.mask[i:i + batch])
                                  for i in range(0, len(self.facts), batch)])

    def __call__(self, ctx, questions, greedy: bool = True, generator=None, rank: int = 0) -> np.ndarray:
        ctx = to_tensor(ctx, self.device).long()
        q = to_tensor(questions, self.device).long().unsqueeze(1)
        out = self.model.generate(self.mem[ctx], self.facts[ctx], self.mask[ctx], q, greedy, generator, rank)
        return out[:, 0].cpu().numpy()


def load_checkpoint_answerer(path: str, task=None, device: str = "cpu"):
    """A callable (batch, ctx [N], questions [N, ql]) -> answers [N, al] from an X checkpoint's
    teacher; used by the demonstration page."""
    from .checkpoint import load_x

    model = load_x(path, device=device, teacher=True)
    cache: dict = {}  # the last batch itself (not its id, which Python may reuse) and its encoding

    def answer(batch, ctx, questions):
        if cache.get("batch") is not batch:
            cache.update(batch=batch, answerer=XAnswerer(model, batch.facts, batch.fact_mask, device))
        return cache["answerer"](ctx, questions)

    return answer
