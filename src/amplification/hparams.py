"""Hyperparameters of the learning core, with their defaults in one place.

The pipeline's JSON schema (workflow/schemas/config.schema.yaml) repeats these defaults for its
`defaults:` section; tests/test_config.py checks that the two agree. The defaults are a reduced
CPU scale; config/paper.yaml gives the paper's values (X width 512, 6+3 layers, lr 1e-5, ...).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class XConfig:
    """X, the answerer: fact-set encoder + question decoder + pointer/vocabulary output."""

    width: int = 64  # model width (paper: 512)
    heads: int = 4  # attention heads (paper: 8)
    embed: int = 32  # per-token embedding size before a record is projected (paper: 100)
    enc_layers: int = 2  # fact encoder layers (paper: 6)
    dec_layers: int = 2  # question decoder layers, cross-attention only (paper: 3)
    ffn: int = 4  # MLP hidden size as a multiple of width
    dropout: float = 0.0  # (paper: 0.1); 0 at small scale where data is unlimited
    # deviation: a learned attention bias per head and slot pair where two records share a token
    # (the name-matching hops every task needs); False is the paper's X
    match_bias: bool = False
    # the match bias's starting weight where a query token equals a token of the key fact's first
    # name (the element the fact is about), in every head and layer; 0 learns it from zero. With 3,
    # X follows a name to the fact about it from the first step (assignments: README notes)
    match_bias_init: float = 0.0
    # deviation: one layer's weights for all the encoder's layers and one for the decoder's (a
    # universal transformer); False is the paper's X
    share_layers: bool = False
    # deviation: the encoder attends over the facts' tokens (each embedded with its slot), not over
    # whole facts, then folds each fact's tokens into one memory slot; False is the paper's X
    token_encoder: bool = False


@dataclass
class HPrimeConfig:
    """H', the human predictor: a causal transformer over transcripts with a copy head."""

    width: int = 64  # (paper: 128)
    heads: int = 4  # (paper: 4)
    layers: int = 2  # (paper: 4)
    ffn: int = 4  # MLP hidden size as a multiple of width
    dropout: float = 0.0
    # a deviation: the task's number tokens (union find's depths, shortest path's distances,
    # wildcard's sums) get a shared embedding, a learned vector plus their value times another, and
    # start with no embedding of their own, so that a depth H' has rarely or never seen as a
    # sub-answer is still a number, on the same line as the others. On union find it fixed
    # iteration 1 and then confused close depths (94.4% and 90.7% on two seeds; README notes)
    numbers: bool = False
    # a deviation: H' as the mixture of this many transformers, each from its own random start,
    # trained side by side on the same batches; decoding averages their next-token probabilities.
    # 1 is the paper's single H'. Costs `members` times H''s training and decoding time
    members: int = 1

    def __post_init__(self):
        if isinstance(self.members, bool) or not isinstance(self.members, int) or self.members < 1:
            raise ValueError(f"hprime.members must be an integer >= 1, got {self.members!r}")


@dataclass
class DistillConfig:
    """Training X on targets (amplified, or the ground truth for the supervised baseline)."""

    steps: int = 300  # X optimiser steps per iteration
    batch_contexts: int = 32  # contexts per step, all their questions (paper: 50)
    lr: float = 1e-3  # Adam learning rate (paper: 1e-5; far higher is needed at small scale)
    beta2: float = 0.98  # Adam beta2, as the paper
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # global gradient-norm clip, as the paper
    replay_iters: int = 2  # targets of this many latest iterations form the replay window
    ema_horizon: int = 100  # teacher: uniform average for this many steps, then EMA (paper: 1000)
    warmup: int = 0  # steps of linear learning-rate warm-up at the start of the run (post-norm layers)
    # cosine decay of the learning rate to lr_min x lr over this many steps of the run (counted from
    # its first step, warm-up included; the same for both methods); 0: constant after warm-up
    decay_steps: int = 0
    lr_min: float = 0.1  # the floor of that decay, as a share of lr


@dataclass
class HPrimeTrainConfig:
    steps: int = 200  # H' optimiser steps per iteration
    batch: int = 64  # transcripts per step (paper: 50)
    lr: float = 1e-3  # Adam learning rate (paper: 1e-5)
    grad_clip: float = 1.0
    converged_steps: int = 20  # steps per iteration once H' loss on fresh transcripts < the last threshold
    # H' steps at iteration 0 (None: `steps`). A deviation, meant for union find's iteration 1, where
    # H' gave 77-86% right targets and H 97%; 1,000 made it worse (67.5% against 81.0%): H' learned
    # the untrained X's transcripts, where H answers unknown, by heart (README notes)
    first_steps: int | None = None
    # share of each batch drawn from the transcripts H' gets wrong (any target token), found anew
    # every `hard_every` steps (a deviation; 0: uniform batches, as the original). Meant for H's
    # rare branches (union find's later candidate winning: under 1% of H' transcripts, followed on
    # 60-90% of such cases); on union find 0.5 did worse (81.0% against 90.8%; README notes)
    hard_fraction: float = 0.0
    hard_every: int = 25  # steps between two searches for the transcripts H' gets wrong
    # share of each batch drawn from the newest iteration's transcripts (a deviation; 0: uniform
    # over all of them, as the original). Early on, X changes fast: at union find's iteration 1,
    # H' trained on 2,000 transcripts of an untrained X (whose depths are junk, so H answers
    # unknown) answered unknown where X's depths now decided H's answer. With 300 H' steps, 0.5
    # passed on 3 of 8 seeds against 4 (README notes)
    recent_fraction: float = 0.0
    # rename the names of each transcript in an H' batch by a fresh random permutation of the
    # name characters (a deviation; tasks whose H never looks at which name is which: union find).
    # H' saw a few dozen contested transcripts early on and learned some by heart (README notes);
    # a renamed copy is still a transcript H would write, so this adds no H calls. On union find:
    # 4 of 8 seeds passed (as without), the mean at 2,100 X steps 92.0% against 93.7%
    rename: bool = False
    # share (0-1) of each H' batch's transcripts swapped for a counterfactual copy: H rerun on the
    # transcript with other sub-answers X might have given (Task.counterfactual_answers; union find:
    # X's depths shifted), so H' sees the rare depths 4-7 before a later X gives them. A deviation
    # that adds no H call: the copy is the transcript H writes for those answers
    counterfactual: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.hard_fraction <= 1.0:
            raise ValueError(f"hprime_train.hard_fraction must be in [0, 1], got {self.hard_fraction!r}")
        if not 0.0 <= self.recent_fraction <= 1.0 or self.hard_fraction + self.recent_fraction > 1.0:
            raise ValueError(f"hprime_train.recent_fraction must be in [0, 1 - hard_fraction], got {self.recent_fraction!r}")
        if not isinstance(self.rename, bool):
            raise ValueError(f"hprime_train.rename must be true or false, got {self.rename!r}")
        if isinstance(self.counterfactual, bool) or not 0.0 <= self.counterfactual <= 1.0:
            raise ValueError(f"hprime_train.counterfactual must be in [0, 1], got {self.counterfactual!r}")
        if self.hard_every < 1:
            raise ValueError(f"hprime_train.hard_every must be >= 1, got {self.hard_every!r}")
        if self.first_steps is not None and (isinstance(self.first_steps, bool) or not isinstance(self.first_steps, int)
                                             or self.first_steps < 1):
            raise ValueError(f"hprime_train.first_steps must be a positive integer or null, got {self.first_steps!r}")


@dataclass
class BudgetConfig:
    """How many H transcripts (H calls) each iteration may collect, as the original's gate."""

    initial: int = 200  # transcripts collected at iteration 0 (paper: 500)
    rates: list = field(default_factory=lambda: [1.0, 0.1, 0.01])  # per X step, by H' loss band
    thresholds: list = field(default_factory=lambda: [0.1, 0.01])  # H' loss band edges (nats/token)
    # transcripts every iteration >= 1 collects at least (0: the original's gate alone). The gate
    # reads the mean token loss, which a wrong final answer on a hard question barely moves: with
    # 0, H' answered 11% of shortest path's distance-2 step questions unlike H (README)
    min_calls: int = 0
    # share (0-0.9) of each later iteration's H calls spent on questions where X_{i-1}'s answer and
    # Amplify^{H'_{i-1}}(X_{i-1})'s differ, screened from focus_pool x as many fresh questions (a
    # deviation; the original asked H about random questions): H demonstrates where H' is about to
    # change X, which is where a wrong H' does harm. No ground truth is used to choose
    focus: float = 0.0
    focus_pool: int = 8  # questions screened per H call when focus > 0
    # which questions focus picks: "disagree" (X's answer and Amplify^{H'}(X)'s differ) or
    # "uncertain" (the lowest probability H' gives the final answer it decoded: H' unsure of the
    # rule there, including where it follows X's guess and H would not)
    focus_by: str = "disagree"
    # the focused H calls review this iteration's own targets (a deviation; needs focus > 0): the
    # amplify stage spends them, H decomposing the questions focus_by picks among its targets at the
    # top of the tree (Amplify^{H'_i}(X_{i-1}) one level down when amplify.levels > 1); H's answers
    # replace those targets, and H' trains on the transcripts from the next iteration on. The H
    # calls are the same. With H'_{i-1} one level down (in the decompose stage) H's answers were
    # often worse than the targets they replaced (README, "H reviews the targets")
    review: bool = False

    def __post_init__(self):
        if isinstance(self.focus, bool) or not isinstance(self.focus, (int, float)) or not 0.0 <= self.focus <= 0.9:
            raise ValueError(f"budget.focus must be a number from 0 to 0.9, got {self.focus!r}")
        if isinstance(self.focus_pool, bool) or not isinstance(self.focus_pool, int) or self.focus_pool < 1:
            raise ValueError(f"budget.focus_pool must be a positive integer, got {self.focus_pool!r}")
        if self.focus_by not in ("disagree", "uncertain"):
            raise ValueError(f"budget.focus_by must be 'disagree' or 'uncertain', got {self.focus_by!r}")
        if not isinstance(self.review, bool):
            raise ValueError(f"budget.review must be true or false, got {self.review!r}")
        if self.review and not self.focus:
            raise ValueError("budget.review needs budget.focus > 0 (the share of H calls that review targets)")


@dataclass
class CurriculumConfig:
    """Instance size grows by `step` when agreement with the targets exceeds `threshold`."""

    start: int | None = None  # first size; None: the task's start (8; 10 for union find)
    max: int | None = None  # largest size; None: the whole name space
    step: int = 1  # elements added per promotion
    threshold: float = 0.85  # agreement of X with its targets that promotes (paper: 0.85)


@dataclass
class ScheduleConfig:
    # iterations of this task's runs; None: the study's top-level `iterations`. Lets one task run
    # longer without every other task paying for it (union find's 2x line is at 2,400 X steps)
    iterations: int | None = None

    def __post_init__(self):
        if self.iterations is not None and (isinstance(self.iterations, bool) or not isinstance(self.iterations, int)
                                            or self.iterations < 1):
            raise ValueError(f"schedule.iterations must be a positive integer or null, got {self.iterations!r}")


@dataclass
class SampleConfig:
    contexts: int = 256  # contexts sampled per iteration; questions per context = facts


@dataclass
class AmplifyConfig:
    """How X answers the subquestions of Amplify(X)."""

    # a subquestion asked again within one transcript (shortest path's `step a b`, union find's
    # `parent x`: the decomposition checks the model's guess twice): "greedy" gives the same
    # answer again (the second ask is then a no-op); "sample" answers the repeat with a fresh
    # sample at temperature 1; "second" with X's runner-up guess (deterministic, never the first
    # guess again); "all" samples every answer of X, as the original did. Measured:
    # "sample": shortest path 46% instead of 74% after 1,650 steps; union find (lr 1e-3) 82.7%
    # and "all" 90.0%, against 90.8% greedy, at 2,400 steps (README notes)
    repeats: str = "greedy"
    # depth of the amplification tree (a deviation; the paper's is 1): at 2, H' asks, and each
    # complex subquestion is answered by Amplify^{H'}(X) in turn, X only at the leaves. Each
    # extra level adds amplify-stage time (H' runs every lower transcript); no extra H calls
    levels: int = 1
    # share (0-1) of the decompose stage's H transcripts in which Amplify^{H'_{i-1}}(X_{i-1}), a
    # tree of depth levels - 1, answers H's complex subquestions instead of X (only with levels > 1,
    # from iteration 1): the top of the amplify stage's tree feeds H' those sub-answers, and H'
    # trained on X's alone never saw, e.g., union find's two `parent x` answers differ
    deep_transcripts: float = 0.0
    # a target whose final answer H' decoded with probability below this (0-1) becomes "unknown",
    # which distillation skips (a deviation; 0: every target is kept, as the original). H' errs
    # where it is unsure of the rule, and X trained on a systematic error learns it: a target not
    # given costs X less than a wrong one. No ground truth is used to choose
    min_confidence: float = 0.0
    # what min_confidence reads: "answer" (the probability of the final answer H' decoded) or
    # "tree" (of the least sure token H' chose anywhere in the target's tree: its subquestions
    # and, with levels > 1, the transcripts below, whose sub-answers it used)
    confidence_of: str = "answer"

    def __post_init__(self):
        if self.confidence_of not in ("answer", "tree"):
            raise ValueError(f"amplify.confidence_of must be 'answer' or 'tree', got {self.confidence_of!r}")
        if isinstance(self.min_confidence, bool) or not isinstance(self.min_confidence, (int, float)) \
                or not 0.0 <= self.min_confidence < 1.0:
            raise ValueError(f"amplify.min_confidence must be a number from 0 to below 1, got {self.min_confidence!r}")
        if isinstance(self.deep_transcripts, bool) or not isinstance(self.deep_transcripts, (int, float)) \
                or not 0.0 <= self.deep_transcripts <= 1.0:
            raise ValueError(f"amplify.deep_transcripts must be a number from 0 to 1, got {self.deep_transcripts!r}")
        if self.repeats not in ("sample", "greedy", "second", "all"):
            raise ValueError(f"amplify.repeats must be 'sample', 'greedy', 'second' or 'all', got {self.repeats!r}")
        if not isinstance(self.levels, int) or isinstance(self.levels, bool) or not 1 <= self.levels <= 4:
            raise ValueError(f"amplify.levels must be an integer from 1 to 4, got {self.levels!r}")


SECTIONS = {
    "x": XConfig,
    "hprime": HPrimeConfig,
    "distill": DistillConfig,
    "hprime_train": HPrimeTrainConfig,
    "budget": BudgetConfig,
    "curriculum": CurriculumConfig,
    "sample": SampleConfig,
    "amplify": AmplifyConfig,
    "schedule": ScheduleConfig,
}


def defaults() -> dict:
    """The per-task defaults as a plain dict (the schema's `defaults:` section mirrors this)."""
    return {"params": {}, **{k: asdict(cls()) for k, cls in SECTIONS.items()}}


def build(section: str, values: dict | None):
    """A section's dataclass from a (possibly partial) dict; unknown keys raise ValueError."""
    cls = SECTIONS[section]
    values = dict(values or {})
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown key {section}.{sorted(unknown)[0]}; known: {', '.join(sorted(known))}")
    return cls(**values)


def deep_merge(base: dict, over: dict | None) -> dict:
    """A copy of base with over's keys replacing base's, recursively for dicts."""
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def task_settings(cfg: dict, task: str) -> dict:
    """The settings of one task: hparams defaults < cfg['defaults'] < cfg['per_task'][task]."""
    merged = deep_merge(defaults(), cfg.get("defaults"))
    return deep_merge(merged, (cfg.get("per_task") or {}).get(task))


def iterations(cfg: dict, task: str) -> int:
    """How many iterations the task's runs have: its `schedule.iterations`, else the study's."""
    own = task_settings(cfg, task)["schedule"]["iterations"]
    return int(own if own is not None else cfg["iterations"])
