"""The stages of one amplification iteration, as importable functions over files.

Iteration i of (task, method, seed), method in {amplification, supervised}:

1. sample      contexts and questions at the curriculum size of iteration i
2. decompose   (amplification) H on a budget of questions, X_{i-1}'s teacher answering
3. train_hprime (amplification) H'_i = H'_{i-1} trained on all transcripts so far
4. amplify     targets = Amplify^{H'_i}(X_{i-1}) (or the ground truth, supervised); the agreement
               of X_{i-1} with the targets drives the curriculum (no ground truth involved)
5. distill     X_i = X_{i-1} trained on the targets of the latest `replay_iters` iterations
6. evaluate    X_i on the fixed full-size test set; metrics.json (the source of truth) + MLflow

Each `run_<stage>(cfg, task_name, method, seed, i)` reads its inputs and writes its outputs at the
paths of amplification.paths, atomically. Randomness is derived from (seed, iteration, stage), so
rerunning any stage reproduces it exactly on CPU.
"""
from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager

import numpy as np

from . import hparams, paths
from .human import Transcripts

STAGE_IDS = {"sample": 1, "decompose": 2, "train_hprime": 3, "amplify": 4, "distill": 5, "evaluate": 6, "testset": 7}


# ---- small helpers -------------------------------------------------------------------------------
def stage_rng(seed: int, i: int, stage: str) -> np.random.Generator:
    return np.random.default_rng([seed, i, STAGE_IDS[stage]])


def write_json(path: str, obj: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def read_json(path: str) -> dict:
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"missing input {path} (run the earlier stage first)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"corrupt JSON in {path}: {e}") from None


def save_npz(path: str, **arrays) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def load_npz(path: str) -> dict:
    if not os.path.exists(path):
        raise FileNotFoundError(f"missing input {path} (run the earlier stage first)")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:
        raise ValueError(f"corrupt data file {path}: {type(e).__name__}: {e}") from None


def batch_to_arrays(batch) -> dict:
    out = {k: getattr(batch, k) for k in ("facts", "fact_mask", "questions", "answers", "classes")}
    out.update({f"db_{k}": v for k, v in batch.db.items()})
    out["size"] = np.array(batch.size)
    return out


def arrays_to_batch(a: dict):
    from .tasks.base import Batch

    db = {k[3:]: v for k, v in a.items() if k.startswith("db_")}
    return Batch(a["facts"], a["fact_mask"], a["questions"], a["answers"], a["classes"], db, int(a["size"]))


def transcripts_to_arrays(tr: Transcripts) -> dict:
    return {f: getattr(tr, f) for f in Transcripts.__dataclass_fields__}


def arrays_to_transcripts(a: dict) -> Transcripts:
    return Transcripts(*[a[f] for f in Transcripts.__dataclass_fields__])


def progress(total: int, desc: str):
    """tqdm into the job's log (stderr), a line every ~10% rather than a live bar."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, mininterval=5.0, miniters=max(1, total // 10),
                ascii=True, dynamic_ncols=False)


@contextmanager
def timed(record: dict):
    t0 = time.time()
    yield
    record["seconds"] = round(time.time() - t0, 3)


class Ctx:
    """Everything a stage needs to know about its (task, method, seed, iteration)."""

    def __init__(self, cfg: dict, task_name: str, method: str, seed: int, i: int):
        from .tasks import make_task

        if method not in paths.METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(paths.METHODS)}")
        self.cfg, self.task_name, self.method, self.seed, self.i = cfg, task_name, method, int(seed), int(i)
        self.ts = hparams.task_settings(cfg, task_name)
        self.task = make_task(task_name, **self.ts.get("params", {}))
        self.sec = {k: hparams.build(k, self.ts.get(k)) for k in hparams.SECTIONS}
        self.results = cfg.get("results_dir", "results")
        self.data_dir = cfg.get("data_dir", "data")

    @property
    def device(self) -> str:
        """Torch device, resolved (and torch imported, threads set) only by stages that train or
        run a model: sampling and test sets need no torch."""
        if not hasattr(self, "_device"):
            from .train import setup_torch

            self._device = setup_torch(self.cfg.get("threads", 1), self.cfg.get("device", "auto"))
        return self._device

    def inp(self, stage: str) -> dict:
        return paths.stage_inputs(stage, self.results, self.task_name, self.method, self.seed, self.i,
                                  self.sec["distill"].replay_iters, self.data_dir, self.cfg.get("human", "scripted"),
                                  self.cfg.get("demonstrations_dir"))

    def out(self, stage: str) -> dict:
        return paths.stage_outputs(stage, self.results, self.task_name, self.method, self.seed, self.i)

    @property
    def max_size(self) -> int:
        cur = self.sec["curriculum"]
        return self.task.check_size(cur.max or self.task.max_size)

    @property
    def start_size(self) -> int:
        cur = self.sec["curriculum"]
        return min(self.task.check_size(cur.start or self.task.start_size), self.max_size)

    def initial_x(self):
        """X_{-1}: the freshly initialised model (the same weights distill starts from)."""
        return self.new_distiller().teacher.model

    def new_distiller(self):
        from .train import Distiller

        return Distiller(self.task, self.sec["x"], self.sec["distill"], self.seed, self.device)

    def previous_x(self, ins: dict):
        from .checkpoint import load_x

        return load_x(ins["model"], self.device) if "model" in ins else self.initial_x()


# ---- curriculum and budget ---------------------------------------------------------------------
def next_size(size: int, agreement: float, cur: hparams.CurriculumConfig, max_size: int) -> int:
    """Grow the instance size by `step` once X agrees with its targets above the threshold."""
    return min(max_size, size + cur.step) if agreement > cur.threshold else size


def h_rate(loss: float | None, b: hparams.BudgetConfig) -> float:
    """H transcripts per X step, from H' loss on fresh transcripts (None: not measured yet)."""
    if loss is None or not np.isfinite(loss):
        return b.rates[0]
    for rate, edge in zip(b.rates, b.thresholds):
        if loss >= edge:
            return rate
    return b.rates[-1]


# ---- stages --------------------------------------------------------------------------------------
def run_testset(cfg: dict, task_name: str) -> str:
    """The fixed held-out test set at the largest size, generated deterministically."""
    c = Ctx(cfg, task_name, "supervised", 0, 0)
    t = cfg.get("test_set", {})
    batch = c.task.generate(int(t.get("contexts", 64)), c.max_size, [int(t.get("seed", 1000003)), STAGE_IDS["testset"]],
                            n_questions=int(t.get("questions_per_context", 16)))
    out = paths.testset_path(c.data_dir, task_name)
    save_npz(out, **batch_to_arrays(batch))
    return out


def run_sample(cfg, task_name, method, seed, i) -> dict:
    c = Ctx(cfg, task_name, method, seed, i)
    ins = c.inp("sample")
    size = int(read_json(ins["previous"])["next_size"]) if "previous" in ins else c.start_size
    batch = c.task.generate(c.sec["sample"].contexts, size, stage_rng(c.seed, c.i, "sample"))
    save_npz(c.out("sample")["sample"], **batch_to_arrays(batch))
    return {"size": size}


def run_decompose(cfg, task_name, method, seed, i) -> dict:
    """Collect this iteration's H transcripts (the H calls) with X_{i-1} answering."""
    from .amplify import amplify_h_with_x

    c = Ctx(cfg, task_name, method, seed, i)
    ins, out = c.inp("decompose"), c.out("decompose")
    rec: dict = {"iteration": c.i}
    review = None  # budget.review: the H calls of this iteration the amplify stage spends
    with timed(rec):
        size = int(load_npz(ins["sample"])["size"])
        prev = read_json(ins["previous"]) if "previous" in ins else {}
        prev_cum = int(prev.get("h_calls_cumulative", 0))
        if c.cfg.get("human", "scripted") == "recorded":
            from .demonstrations import load_demonstrations

            # recorded demonstrations are a fixed, costly set: all of them enter at iteration 0
            tr = load_demonstrations(c.task, ins["demonstrations"]) if c.i == 0 else _empty_transcripts(c.task)
            rate = None
        else:
            rate = c.sec["budget"].initial if c.i == 0 else h_rate(prev.get("hprime_fresh_loss"), c.sec["budget"])
            n = int(rate) if c.i == 0 else max(int(round(rate * c.sec["distill"].steps)), c.sec["budget"].min_calls)
            tr = _empty_transcripts(c.task)
            if n > 0:
                rng = stage_rng(c.seed, c.i, "decompose")
                x = c.previous_x(ins)
                amp, bud = c.sec["amplify"], c.sec["budget"]
                n_focus = min(int(round(bud.focus * n)), n - 1) if "hprime" in ins else 0
                if n_focus and bud.review:  # the amplify stage spends these on its own targets
                    review, n, n_focus = n_focus, n - n_focus, 0
                if n_focus:  # screen a pool; H gets the disagreements first, then random questions
                    batch = c.task.generate(n * bud.focus_pool, size, rng, n_questions=1)
                    picked, n_focus = _focus_questions(c, x, ins["hprime"], batch, rng, n, n_focus)
                else:
                    batch = c.task.generate(n, size, rng, n_questions=1)  # one question per context
                    picked = np.arange(n)
                deep, deep_ctx = None, None
                n_deep = int(round(amp.deep_transcripts * n)) if amp.levels > 1 and "hprime" in ins else 0
                if n_deep:  # the first n_deep questions (the contexts are drawn independently)
                    from .amplify import hprime_answerer
                    from .checkpoint import load_hprime

                    deep = hprime_answerer(c.task, load_hprime(ins["hprime"], c.device), x, batch.facts,
                                           batch.fact_mask, batch.db, rng, c.device, levels=amp.levels - 1)
                    deep_ctx = np.zeros(len(batch.facts), dtype=bool)
                    deep_ctx[picked[:n_deep]] = True
                tr = amplify_h_with_x(c.task, x, batch.facts, batch.fact_mask, picked,
                                      batch.questions[picked, 0], batch.db, rng, c.device,
                                      repeats=amp.repeats, deep=deep, deep_ctx=deep_ctx)
                rec.update(deep_transcripts=n_deep, focused_transcripts=n_focus)
        fresh, whole = None, None
        if "hprime" in ins and len(tr):
            from .checkpoint import load_hprime
            from .train import evaluate_hprime

            # on the random questions only: the focused ones are chosen where H' is likely wrong
            k = rec.get("focused_transcripts", 0)
            ev = evaluate_hprime(load_hprime(ins["hprime"], c.device), tr.tokens()[k:], c.device)
            fresh, whole = ev["loss"], ev["transcript_accuracy"]
        calls = len(tr) + (review or 0)  # budget.review: H calls the amplify stage spends (review_calls)
        rec.update(hprime_fresh_transcript_accuracy=whole, h_calls=calls, h_calls_cumulative=prev_cum + calls,
                   review_calls=review or 0, rate=rate, size=size,
                   subquestions=int(tr.asked.sum()), primitive_subquestions=int(tr.primitive.sum()),
                   hprime_fresh_loss=fresh if fresh is not None else prev.get("hprime_fresh_loss"))
    save_npz(out["transcripts"], **transcripts_to_arrays(tr))
    write_json(out["decompose"], rec)
    return rec


def _x_greedy(x, batch, device):
    """X's greedy answers [B, Q, al] to a batch's questions (one fact encoding per context)."""
    import torch

    from .xmodel import to_tensor

    with torch.no_grad():
        ft, fm = to_tensor(batch.facts, device).long(), to_tensor(batch.fact_mask, device).bool()
        return x.generate(x.encode(ft, fm), ft, fm, to_tensor(batch.questions, device).long()).cpu().numpy()


def _focus_questions(c, x, hprime_path, batch, rng, n, n_focus):
    """Of a pool of one-question contexts, n in all: up to n_focus where X's greedy answer and
    Amplify^{H'}(X)'s differ (`focus_by: uncertain`: the n_focus where H' gave its answer the
    lowest probability), then the pool's first n - n_focus (a random sample), then random others
    if too few differed. Returns (indices, focused count)."""
    from .amplify import amplify_hprime
    from .checkpoint import load_hprime

    amp, scores = c.sec["amplify"], {}
    tr = amplify_hprime(c.task, load_hprime(hprime_path, c.device), x, batch.facts, batch.fact_mask,
                        batch.questions, batch.db, rng, c.device, repeats=amp.repeats, levels=amp.levels,
                        scores=scores)
    n_rand = n - n_focus  # the pool's first questions stay a random sample (H' fresh loss reads them)
    if c.sec["budget"].focus_by == "uncertain":  # the n_focus least confident, most uncertain first
        order = np.argsort(scores["answer_logp"][n_rand:], kind="stable")[:n_focus]
        return np.concatenate([n_rand + order, np.arange(n_rand)]), len(order)
    differ = (_x_greedy(x, batch, c.device)[:, 0] != tr.answers).any(-1)
    focus = n_rand + np.flatnonzero(differ[n_rand:])[:n_focus]
    more = np.setdiff1d(np.arange(n_rand, len(differ)), focus)[: n_focus - len(focus)]  # too few: random ones
    return np.concatenate([focus, np.arange(n_rand), more]), len(focus)


def _empty_transcripts(task) -> Transcripts:
    R, ql, al = task.rounds, task.question_length, task.answer_length
    z = lambda *s: np.zeros(s, dtype=np.int64)  # noqa: E731
    return Transcripts(z(0, ql), z(0, R, ql), z(0, R, al), z(0, al), z(0), z(0))


def run_train_hprime(cfg, task_name, method, seed, i) -> dict:
    """H'_i = H'_{i-1} trained on every transcript collected so far."""
    from .train import HPrimeTrainer, load_checkpoint, save_checkpoint

    c = Ctx(cfg, task_name, method, seed, i)
    ins, out = c.inp("train_hprime"), c.out("train_hprime")
    rec: dict = {"iteration": c.i}
    with timed(rec):
        parts = [arrays_to_transcripts(load_npz(p)) for p in ins["transcripts"]]
        reviews = [_review_part(load_npz(p)) for p in ins.get("reviews", [])] if c.sec["budget"].review else []
        tr = Transcripts.concat([r for r in reviews if r is not None] + parts)
        trainer = HPrimeTrainer(c.task, c.sec["hprime"], c.sec["hprime_train"], c.seed, c.device)
        if "hprime" in ins:
            trainer.load_state_dict(load_checkpoint(ins["hprime"], c.device))
        if len(tr) == 0:
            raise ValueError(f"{task_name}: no H transcripts to train H' on (budget 0 and no demonstrations)")
        # once H' imitates H on transcripts it has not seen, training it at full speed is waste
        fresh = read_json(ins["decompose"]).get("hprime_fresh_loss")
        converged = fresh is not None and fresh < c.sec["budget"].thresholds[-1]
        steps = trainer.cfg.converged_steps if converged else trainer.cfg.steps
        if c.i == 0 and trainer.cfg.first_steps is not None:
            steps = trainer.cfg.first_steps
        with progress(max(steps, 1), f"train H' {task_name} iter{c.i}") as bar:
            m = trainer.train(tr.tokens(), steps, bar, recent_from=len(tr) - len(parts[-1]))
        rec.update(loss=m["loss"], token_accuracy=m["token_accuracy"], steps=m["steps"], transcripts=len(tr),
                   converged=converged)
    save_checkpoint(trainer.state_dict(), out["hprime"])
    write_json(out["hprime_json"], rec)
    return rec


def accuracy_by_class(task, pred, truth, classes) -> dict:
    """Overall and per-class exact-match accuracy of pred [N, al] against truth [N, al]."""
    ok = (pred == truth).all(-1)
    out = {"all": float(ok.mean()) if len(ok) else float("nan")}
    for k, name in enumerate(task.class_names):
        m = classes == k
        if m.any():
            out[name] = float(ok[m].mean())
    return out


def run_amplify(cfg, task_name, method, seed, i) -> dict:
    """Targets for this iteration's questions; the agreement of X_{i-1} with them."""
    from .amplify import amplify_hprime

    c = Ctx(cfg, task_name, method, seed, i)
    ins, out = c.inp("amplify"), c.out("amplify")
    rec: dict = {"iteration": c.i}
    review_arrays: dict = {}
    with timed(rec):
        batch = arrays_to_batch(load_npz(ins["sample"]))
        B, Q = batch.questions.shape[:2]
        x = c.previous_x(ins)
        mine = _x_greedy(x, batch, c.device).reshape(B * Q, -1)  # X_{i-1}'s own answers (draws no rng)
        rng = stage_rng(c.seed, c.i, "amplify")
        if method == "amplification":
            from .checkpoint import load_hprime

            hp, scores = load_hprime(ins["hprime"], c.device), {}
            tr = amplify_hprime(c.task, hp, x, batch.facts, batch.fact_mask, batch.questions, batch.db, rng, c.device,
                                repeats=c.sec["amplify"].repeats, levels=c.sec["amplify"].levels, scores=scores)
            targets = tr.answers.reshape(B, Q, -1)
            # H''s probability of the final answer it decoded, or of its least sure step in the tree
            conf = np.exp(scores["answer_logp" if c.sec["amplify"].confidence_of == "answer" else "min_logp"])
            drop = conf < c.sec["amplify"].min_confidence
            rec.update(subquestions=float(tr.asked.mean()), primitive=float(tr.primitive.mean()),
                       dropped=float(drop.mean()), **_confidence_log(tr.answers, batch.answers.reshape(B * Q, -1), conf, drop, bands=False),
                       **_confidence_log(tr.answers, batch.answers.reshape(B * Q, -1), np.exp(scores["answer_logp"]), None, "answer_"),
                       **_confidence_log(tr.answers, batch.answers.reshape(B * Q, -1), np.exp(scores["min_logp"]), None, "tree_"))
            n_review = int(read_json(ins["decompose"]).get("review_calls", 0))
            if n_review:  # budget.review: H decomposes the n_review targets H' is least sure of
                differ = (mine != tr.answers).any(-1)
                idx, rtr = _review(c, hp, x, batch, differ, scores, rng, n_review)
                rec.update(_apply_review(idx, rtr.answers, targets, drop, batch.answers.reshape(B * Q, -1)))
                review_arrays = {"review_index": idx, **{f"review_{k}": v for k, v in transcripts_to_arrays(rtr).items()}}
        else:
            targets, drop = batch.answers, np.zeros(B * Q, dtype=bool)
        flat = lambda a: a.reshape(B * Q, -1)  # noqa: E731
        agree = (mine == flat(targets)).all(-1) & flat(targets).any(-1)  # "unknown" never agrees
        rec["agreement"] = float(agree[~drop].mean()) if (~drop).any() else 0.0  # on the targets given
        rec["size"] = int(batch.size)
        rec["next_size"] = next_size(batch.size, rec["agreement"], c.sec["curriculum"], c.max_size)
        # logging only: how good are the targets? (never used for training decisions)
        acc = accuracy_by_class(c.task, flat(targets), flat(batch.answers), batch.classes.reshape(-1))
        rec["targets_accuracy"] = acc.pop("all")
        rec["targets_accuracy_by_class"] = acc
        if drop.any():  # X is not trained on these ("unknown"); the accuracy above is Amplify(X)'s, before
            targets = targets.copy()
            targets.reshape(B * Q, -1)[drop] = 0
    save_npz(out["targets"], targets=targets, **review_arrays)
    write_json(out["amplify"], rec)
    return rec


def _review(c, hp, x, batch, differ, scores, rng, n):
    """`budget.review`: of this iteration's questions, the n whose target H' gave the lowest
    probability (`focus_by: uncertain`), or where X_{i-1}'s answer differs from it (`disagree`:
    `differ` [B*Q], in random order), decomposed by H at the top of the amplify tree: its complex
    subquestions answered by Amplify^{H'_i}(X_{i-1}) one level down when amplify.levels > 1,
    else by X. Returns (flat indices into the B*Q questions, H's transcripts in that order)."""
    from .amplify import amplify_h_with_x, hprime_answerer

    amp = c.sec["amplify"]
    B, Q, ql = batch.questions.shape
    if c.sec["budget"].focus_by == "uncertain":  # the least confident, most uncertain first
        idx = np.argsort(scores["answer_logp"], kind="stable")[:n]
    else:
        idx = rng.permutation(np.flatnonzero(differ))[:n]
    deep, deep_ctx = None, None
    if amp.levels > 1:
        deep = hprime_answerer(c.task, hp, x, batch.facts, batch.fact_mask, batch.db, rng, c.device,
                               levels=amp.levels - 1)
        deep_ctx = np.ones(B, dtype=bool)
    idx = np.asarray(idx, dtype=np.int64)
    return idx, amplify_h_with_x(c.task, x, batch.facts, batch.fact_mask, idx // Q,
                                 batch.questions.reshape(B * Q, ql)[idx], batch.db, rng, c.device,
                                 repeats=amp.repeats, deep=deep, deep_ctx=deep_ctx)


def _review_part(a: dict):
    """The H transcripts `budget.review` left in an amplify stage's targets.npz (None if none)."""
    if "review_index" not in a:
        return None
    return Transcripts(*[a[f"review_{f}"] for f in Transcripts.__dataclass_fields__])


def _apply_review(idx, h, targets, drop, truth) -> dict:
    """`budget.review`: H's answers h [n, al] replace the targets [B, Q, al] (in place) on the
    questions idx (flat), which are never dropped. Returns the log (truth for logging only)."""
    if not len(idx):
        return {"reviewed": 0}
    flat = targets.reshape(-1, targets.shape[-1])
    before = flat[idx].copy()
    flat[idx] = h
    drop[idx] = False
    return {"reviewed": int(len(idx)), "reviewed_changed": float((before != h).any(-1).mean()),
            "reviewed_accuracy_before": float((before == truth[idx]).all(-1).mean()),
            "reviewed_accuracy_after": float((h == truth[idx]).all(-1).mean())}


def _confidence_log(answers, truth, conf, drop, prefix="", bands=True) -> dict:
    """Logging only (ground truth; never used to choose): how often H' is unsure, and how right
    its targets are when sure and when not, for calibrating `amplify.min_confidence`."""
    ok, out = (answers == truth).all(-1), {}
    if drop is not None:
        out = {"kept_targets_accuracy": float(ok[~drop].mean()) if (~drop).any() else None,
               "dropped_targets_accuracy": float(ok[drop].mean()) if drop.any() else None}
    for p in (0.5, 0.9, 0.99) if bands else ():
        low = conf < p
        out[f"{prefix}confidence_below_{p}"] = float(low.mean())
        out[f"{prefix}accuracy_below_{p}"] = float(ok[low].mean()) if low.any() else None
    return out


def run_distill(cfg, task_name, method, seed, i) -> dict:
    """X_i = X_{i-1} trained on the replay window of targets."""
    from .train import ContextData, load_checkpoint, save_checkpoint

    c = Ctx(cfg, task_name, method, seed, i)
    ins, out = c.inp("distill"), c.out("distill")
    rec: dict = {"iteration": c.i}
    with timed(rec):
        parts = []
        for sp, tp in zip(ins["samples"], ins["targets"]):
            s, t = load_npz(sp), load_npz(tp)
            q, tg = s["questions"], t["targets"]
            # an "unknown" target (all 0) says only that Amplify(X) could not answer: training X on
            # it teaches X to say "unknown", which makes the next targets unknown too (a fixed point
            # that held union find at 22%). No true answer is unknown, so supervised loses nothing.
            parts.append(ContextData(s["facts"], s["fact_mask"], q, tg, tg.any(-1)))
        data = ContextData.concat(parts)
        d = c.new_distiller()
        prev = {}
        if "model" in ins:
            d.load_state_dict(load_checkpoint(ins["model"], c.device))
            prev = read_json(paths.stage_output(c.results, task_name, method, c.seed, c.i - 1, "distill", "distill.json"))
        # a fresh, per-iteration sampling stream: the same whatever happened before a restart
        d.rng = stage_rng(c.seed, c.i, "distill")
        with progress(d.cfg.steps, f"distill {task_name} {method} iter{c.i}") as bar:
            m = d.train(data, d.cfg.steps, bar)
        n_q = int(round(parts[-1].qmask.sum(1).mean()))
        rec.update(loss=m["loss"], steps=d.step,
                   examples=int(prev.get("examples", 0)) + d.cfg.steps * d.cfg.batch_contexts * n_q)
    save_checkpoint(d.state_dict(), out["model"])
    write_json(out["distill"], rec)
    return rec


def evaluate_model(task, x, testset, device, rng=None, sampled: bool = True) -> dict:
    """Greedy (and sampled) accuracy of X on a test Batch, overall and by class."""
    import torch

    from .xmodel import to_tensor

    with torch.no_grad():
        ft, fm = to_tensor(testset.facts, device).long(), to_tensor(testset.fact_mask, device).bool()
        q = to_tensor(testset.questions, device).long()
        mem = x.encode(ft, fm)
        res = {"greedy": x.generate(mem, ft, fm, q).cpu().numpy()}
        if sampled:
            gen = torch.Generator(device=device).manual_seed(int(rng.integers(2**31)) if rng is not None else 0)
            res["sampled"] = x.generate(mem, ft, fm, q, greedy=False, generator=gen).cpu().numpy()
    B, Q = testset.questions.shape[:2]
    truth, cls = testset.answers.reshape(B * Q, -1), testset.classes.reshape(-1)
    return {k: accuracy_by_class(task, v.reshape(B * Q, -1), truth, cls) for k, v in res.items()}


def machine_info() -> dict:
    """What decides the arithmetic besides config and seed: the same command gives the same
    numbers bit for bit only with the same torch, numpy, thread count and kind of CPU (torch
    picks its vector kernels by the CPU: README, "Running the pipeline")."""
    import platform

    import torch

    return {"torch": torch.__version__, "numpy": np.__version__, "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "machine": platform.machine()}


def run_evaluate(cfg, task_name, method, seed, i) -> dict:
    from .checkpoint import load_x

    c = Ctx(cfg, task_name, method, seed, i)
    ins, out = c.inp("evaluate"), c.out("evaluate")
    t0 = time.time()
    test = arrays_to_batch(load_npz(ins["testset"]))
    rng = stage_rng(c.seed, c.i, "evaluate")
    teacher = evaluate_model(c.task, load_x(ins["model"], c.device, teacher=True), test, c.device, rng)
    student = evaluate_model(c.task, load_x(ins["model"], c.device, teacher=False), test, c.device, sampled=False)
    dist, amp = read_json(ins["distill"]), read_json(ins["amplify"])
    dec = read_json(ins["decompose"]) if "decompose" in ins else {}
    hpj = read_json(ins["hprime"]) if "hprime" in ins else {}
    prev = read_json(ins["previous"]) if "previous" in ins else {"metrics": {}}
    seconds = sum(float(r.get("seconds", 0)) for r in (dist, amp, dec, hpj)) + (time.time() - t0)
    h_calls = int(dec.get("h_calls_cumulative", 0))
    m = {
        "accuracy/teacher/greedy": teacher["greedy"]["all"],
        "accuracy/teacher/sampled": teacher["sampled"]["all"],
        "accuracy/student/greedy": student["greedy"]["all"],
        "accuracy/targets": amp["targets_accuracy"],
        "agreement": amp["agreement"],
        "loss/x": dist["loss"],
        "h_calls/cumulative": h_calls,
        "steps/cumulative": dist["steps"],
        "examples/cumulative": dist["examples"],
        "wall_time/cumulative": round(float(prev["metrics"].get("wall_time/cumulative", 0.0)) + seconds, 3),
    }
    if hpj:
        m["loss/hprime"] = hpj["loss"]
        m["accuracy/hprime/token"] = hpj["token_accuracy"]
    if dec.get("hprime_fresh_transcript_accuracy") is not None:  # H' on this iteration's new H transcripts
        m["accuracy/hprime/fresh_transcripts"] = dec["hprime_fresh_transcript_accuracy"]
    if amp.get("dropped"):  # amplify.min_confidence: the share of targets not given, and how right they were
        m["targets/dropped"] = amp["dropped"]
        m["accuracy/targets/kept"] = amp["kept_targets_accuracy"]
        m["accuracy/targets/dropped"] = amp["dropped_targets_accuracy"]
    if amp.get("reviewed"):  # budget.review: targets H decomposed, how many it changed, how right before and after
        m["targets/reviewed"] = amp["reviewed"]
        m["targets/reviewed_changed"] = amp["reviewed_changed"]
        m["accuracy/targets/reviewed_before"] = amp["reviewed_accuracy_before"]
        m["accuracy/targets/reviewed_after"] = amp["reviewed_accuracy_after"]
    for k, v in teacher["greedy"].items():
        if k != "all":
            m[f"accuracy/teacher/greedy/class/{k}"] = v
    for k, v in amp["targets_accuracy_by_class"].items():
        m[f"accuracy/targets/class/{k}"] = v
    rec = {"task": task_name, "method": method, "seed": c.seed, "iteration": c.i, "config": cfg.get("name", "default"),
           "params": {"size": amp["size"], "steps": dist["steps"], "examples": dist["examples"], "h_calls": h_calls},
           "metrics": m, "machine": machine_info()}
    write_json(out["metrics"], rec)
    try:
        from .tracking import log_iteration

        log_iteration(cfg, rec)
    except ImportError:
        pass
    return rec


STAGES = {
    "sample": run_sample,
    "decompose": run_decompose,
    "train_hprime": run_train_hprime,
    "amplify": run_amplify,
    "distill": run_distill,
    "evaluate": run_evaluate,
}


def run_iteration(cfg, task_name, method, seed, i) -> dict:
    """All stages of one iteration in order (what Snakemake does, without Snakemake)."""
    for name, fn in STAGES.items():
        if method == "supervised" and name in ("decompose", "train_hprime"):
            continue
        rec = fn(cfg, task_name, method, seed, i)
    return rec
