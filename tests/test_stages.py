"""The iteration stages as functions over files: both methods, determinism, recorded humans."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

from amplification import paths, stages
from amplification.config import load_config

HERE = os.path.dirname(__file__)
DEMOS = os.path.join(HERE, "..", "data", "demonstrations", "permutation.jsonl")


def tiny_config(tmp_path, **over):
    cfg = load_config(os.path.join(HERE, "..", "config", "smoke.yaml"), overrides={
        "results_dir": str(tmp_path / "results"), "data_dir": str(tmp_path / "data"), "mlflow": {"enabled": False},
        "iterations": 2, **over})
    return cfg


def run_all(cfg, task="permutation", seeds=(0,)):
    stages.run_testset(cfg, task)
    recs = {}
    for method in cfg["methods"]:
        for seed in seeds:
            for i in range(cfg["iterations"]):
                recs[(method, seed, i)] = stages.run_iteration(cfg, task, method, seed, i)
    return recs


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One tiny study (both methods, 2 iterations), shared by the tests that only read it."""
    cfg = tiny_config(tmp_path_factory.mktemp("study"))
    return cfg, run_all(cfg)


def test_both_methods_write_every_stage_output(study):
    cfg, recs = study
    for method in ("amplification", "supervised"):
        for stage in paths.OUTPUTS:
            if method == "supervised" and stage in ("decompose", "train_hprime"):
                continue
            for f in paths.stage_outputs(stage, cfg["results_dir"], "permutation", method, 0, 1).values():
                assert os.path.exists(f), f
    amp, sup = recs[("amplification", 0, 1)], recs[("supervised", 0, 1)]
    assert amp["params"]["h_calls"] > 0 and sup["params"]["h_calls"] == 0
    assert 0.0 <= amp["metrics"]["accuracy/teacher/greedy"] <= 1.0
    assert sup["metrics"]["accuracy/targets"] == 1.0  # supervised targets are the ground truth
    assert amp["params"]["steps"] == 2 * cfg["defaults"]["distill"]["steps"]


def test_a_rerun_stage_reproduces_its_outputs_exactly(study):
    cfg, _ = study
    rd = paths.iter_dir(cfg["results_dir"], "permutation", "amplification", 0, 1)
    before = {f: open(os.path.join(rd, f), "rb").read() for f in ("targets.npz", "metrics.json")}
    model_before = torch.load(os.path.join(rd, "model.pt"), weights_only=False)["model"]
    for stage in ("amplify", "distill", "evaluate"):
        stages.STAGES[stage](cfg, "permutation", "amplification", 0, 1)
    assert np.array_equal(np.load(os.path.join(rd, "targets.npz"))["targets"],
                          np.load(__import__("io").BytesIO(before["targets.npz"]))["targets"])
    after = torch.load(os.path.join(rd, "model.pt"), weights_only=False)["model"]
    assert all(torch.equal(a, b) for a, b in zip(model_before.values(), after.values()))
    m0 = json.loads(before["metrics.json"])["metrics"]
    m1 = json.load(open(os.path.join(rd, "metrics.json")))["metrics"]
    m0.pop("wall_time/cumulative"), m1.pop("wall_time/cumulative")
    assert m0 == m1


def test_recorded_demonstrations_train_hprime(tmp_path):
    cfg = tiny_config(tmp_path, human="recorded", methods=["amplification"])
    cfg["per_task"]["permutation"]["params"] = {"nchars": 8, "length": 1, "log_iters": 4}
    os.makedirs(tmp_path / "data" / "demonstrations")
    shutil.copy(DEMOS, tmp_path / "data" / "demonstrations" / "permutation.jsonl")
    recs = run_all(cfg)
    n = sum(1 for _ in open(DEMOS))
    d0 = json.load(open(paths.stage_output(cfg["results_dir"], "permutation", "amplification", 0, 0, "decompose", "decompose.json")))
    assert d0["h_calls"] == n  # every recorded demonstration is an H call at iteration 0
    assert recs[("amplification", 0, 1)]["params"]["h_calls"] == n  # and none is invented later


def test_budget_follows_hprime_loss():
    from amplification.hparams import BudgetConfig

    b = BudgetConfig()
    assert stages.h_rate(None, b) == 1.0 and stages.h_rate(0.5, b) == 1.0
    assert stages.h_rate(0.05, b) == 0.1 and stages.h_rate(0.001, b) == 0.01


def test_min_calls_is_a_floor_under_the_gate(tmp_path):
    # the smoke config's H' is far from converged only at first; the floor holds at every later
    # iteration whatever the gate's rate, and iteration 0 still takes budget.initial
    cfg = tiny_config(tmp_path, methods=["amplification"], iterations=3)
    cfg["defaults"]["budget"].update(initial=7, rates=[0.0, 0.0, 0.0], min_calls=5)
    run_all(cfg)
    calls = [json.load(open(paths.stage_output(cfg["results_dir"], "permutation", "amplification", 0, i,
                                               "decompose", "decompose.json")))["h_calls"] for i in range(3)]
    assert calls == [7, 5, 5]
    d = json.load(open(paths.stage_output(cfg["results_dir"], "permutation", "amplification", 0, 2, "decompose", "decompose.json")))
    assert 0.0 <= d["hprime_fresh_transcript_accuracy"] <= 1.0
    m = json.load(open(paths.stage_output(cfg["results_dir"], "permutation", "amplification", 0, 2, "evaluate", "metrics.json")))
    assert m["metrics"]["accuracy/hprime/fresh_transcripts"] == d["hprime_fresh_transcript_accuracy"]


def test_deep_transcripts_count_in_the_decompose_record(tmp_path):
    """`amplify.deep_transcripts` with a tree of depth 2: from iteration 1 (when there is an H')
    that share of the H transcripts has deep sub-answers; the H calls are counted as before."""
    cfg = tiny_config(tmp_path, methods=["amplification"], iterations=2)
    cfg["defaults"]["budget"].update(initial=8, min_calls=6)
    cfg["defaults"]["amplify"].update(levels=2, deep_transcripts=0.5)
    run_all(cfg)
    recs = [json.load(open(paths.stage_output(cfg["results_dir"], "permutation", "amplification", 0, i,
                                              "decompose", "decompose.json"))) for i in range(2)]
    assert [(r["h_calls"], r["deep_transcripts"]) for r in recs] == [(8, 0), (6, 3)]


@pytest.mark.parametrize("every", [3, 40])
def test_focus_picks_where_x_and_amplify_differ_and_keeps_a_random_share(monkeypatch, every):
    """`budget.focus`: a fake Amplify(X) that differs from an oracle X on every `every`-th context
    of the pool; H gets those first (never from the random share), then the pool's first
    n - n_focus questions; too few differences are made up with other random questions."""
    import types

    import amplification.amplify as amp
    import amplification.checkpoint as ckpt
    from amplification.hparams import AmplifyConfig, BudgetConfig
    from amplification.human import Transcripts
    from amplification.tasks import make_task

    task = make_task("permutation", nchars=8, length=1, log_iters=3)
    pool = task.generate(80, task.max_size, 2, n_questions=1)
    truth = pool.answers[:, 0]
    differs = np.arange(80) % every == 0

    def fake_amplify(task_, hp, x, facts, mask, questions, db, rng, device, **kw):
        ans = truth.copy()
        ans[differs, 0] += 1  # the wrong name
        z = np.zeros(len(ans), dtype=np.int64)
        return Transcripts(questions[:, 0], None, None, ans, z, z)

    class OracleX:
        def encode(self, f, m):
            return None

        def generate(self, mem, f, m, q):
            return torch.as_tensor(truth[:, None])

    monkeypatch.setattr(amp, "amplify_hprime", fake_amplify)
    monkeypatch.setattr(ckpt, "load_hprime", lambda path, device: None)
    c = types.SimpleNamespace(task=task, device="cpu", sec={"amplify": AmplifyConfig(), "budget": BudgetConfig()})
    picked, k = stages._focus_questions(c, OracleX(), "h.pt", pool, None, n=10, n_focus=5)
    assert len(picked) == 10 and len(set(picked.tolist())) == 10
    want = np.flatnonzero(differs[5:])[:5] + 5  # not from the random share, the pool's first 5
    assert k == len(want) and np.array_equal(picked[:k], want)
    assert np.array_equal(picked[k:k + 5], np.arange(5))
    fillers = picked[k + 5:]  # only when too few differed: the next random ones of the pool
    assert np.array_equal(fillers, [] if every == 3 else [5, 6, 7, 8])


def test_focus_by_uncertainty_picks_the_answers_hprime_is_least_sure_of(monkeypatch):
    """`budget.focus_by: uncertain`: the n_focus questions of the screened part of the pool with
    the lowest H' log-probability of its final answer, least sure first, then the random share."""
    import types

    import amplification.amplify as amp
    import amplification.checkpoint as ckpt
    from amplification.hparams import AmplifyConfig, BudgetConfig
    from amplification.human import Transcripts
    from amplification.tasks import make_task

    task = make_task("permutation", nchars=8, length=1, log_iters=3)
    pool = task.generate(40, task.max_size, 2, n_questions=1)
    logp = -np.random.default_rng(0).random(40)

    def fake_amplify(task_, hp, x, facts, mask, questions, db, rng, device, scores=None, **kw):
        scores["answer_logp"] = logp
        z = np.zeros(len(questions), dtype=np.int64)
        return Transcripts(questions[:, 0], None, None, pool.answers[:, 0], z, z)

    monkeypatch.setattr(amp, "amplify_hprime", fake_amplify)
    monkeypatch.setattr(ckpt, "load_hprime", lambda path, device: None)
    c = types.SimpleNamespace(task=task, device="cpu",
                              sec={"amplify": AmplifyConfig(), "budget": BudgetConfig(focus_by="uncertain")})
    picked, k = stages._focus_questions(c, None, "h.pt", pool, None, n=10, n_focus=4)
    assert k == 4 and np.array_equal(picked[4:], np.arange(6))
    assert np.array_equal(picked[:4], 6 + np.argsort(logp[6:])[:4])
    assert logp[picked[0]] == logp[6:].min()


def test_focus_runs_in_the_pipeline_with_the_same_h_calls(tmp_path):
    cfg = tiny_config(tmp_path, methods=["amplification"], iterations=2)
    cfg["defaults"]["budget"].update(initial=8, min_calls=6, focus=0.5, focus_pool=4)
    run_all(cfg)
    recs = [json.load(open(paths.stage_output(cfg["results_dir"], "permutation", "amplification", 0, i,
                                              "decompose", "decompose.json"))) for i in range(2)]
    assert [r["h_calls"] for r in recs] == [8, 6]
    assert recs[0]["focused_transcripts"] == 0 and 0 <= recs[1]["focused_transcripts"] <= 3


@pytest.mark.parametrize("task,levels,focus_by", [("permutation", 1, "uncertain"), ("union_find", 2, "uncertain"),
                                                  ("union_find", 2, "disagree")])
def test_review_replaces_the_targets_of_the_questions_h_decomposed(tmp_path, task, levels, focus_by):
    """`budget.review`: the focus share of the H calls goes to the amplify stage, where H
    decomposes that many of the iteration's own questions (the review transcripts' questions are
    the sample's at `review_index`); their answers become the targets there, the rest of the
    targets stay Amplify^{H'}(X)'s, the H calls are the same, and H' trains on the reviews."""
    cfg = tiny_config(tmp_path, methods=["amplification"], iterations=3, tasks=[task])
    cfg["per_task"]["union_find"] = {"params": {"nchars": 4, "length": 1}, "amplify": {"levels": levels}}
    cfg["defaults"]["budget"].update(initial=8, min_calls=6, focus=0.5, focus_by=focus_by, review=True)
    run_all(cfg, task=task)
    out = lambda i, st, name=None: paths.stage_output(cfg["results_dir"], task, "amplification", 0, i, st, name)  # noqa: E731
    recs = [json.load(open(out(i, "decompose", "decompose.json"))) for i in range(3)]
    assert [(r["h_calls"], r["review_calls"]) for r in recs] == [(8, 0), (6, 3), (6, 3)]
    assert [r["h_calls_cumulative"] for r in recs] == [8, 14, 20]
    assert [len(np.load(out(i, "decompose"))["answers"]) for i in range(3)] == [8, 3, 3]
    assert "review_index" not in np.load(out(0, "amplify")).files  # iteration 0 has no H' to be unsure
    z = np.load(out(1, "amplify"))
    idx = z["review_index"]
    assert len(idx) == 3 and len(set(idx.tolist())) == 3
    sample = stages.arrays_to_batch(stages.load_npz(out(1, "sample")))
    B, Q, ql = sample.questions.shape
    assert np.array_equal(z["review_questions"], sample.questions.reshape(B * Q, ql)[idx])
    assert np.array_equal(z["targets"].reshape(B * Q, -1)[idx], z["review_answers"])
    amp = json.load(open(out(1, "amplify", "amplify.json")))
    assert amp["reviewed"] == 3 and 0.0 <= amp["reviewed_accuracy_after"] <= 1.0
    m = json.load(open(out(1, "evaluate")))["metrics"]
    assert m["targets/reviewed"] == 3 and m["accuracy/targets/reviewed_after"] == amp["reviewed_accuracy_after"]
    hp = [json.load(open(out(i, "train_hprime", "hprime.json")))["transcripts"] for i in range(3)]
    assert hp == [8, 11, 17]  # iteration 2's H' also reads iteration 1's three reviews


def test_review_picks_the_targets_hprime_is_least_sure_of(monkeypatch):
    """`_review` with `focus_by: uncertain`: H gets the n questions with the lowest H'
    probability of the target, least sure first, each with its own context."""
    import types

    import amplification.amplify as amplify
    from amplification.hparams import AmplifyConfig, BudgetConfig
    from amplification.human import Transcripts
    from amplification.tasks import make_task

    def fake_h(task_, x, facts, mask, ctx, questions, db, rng, device, **kw):
        z = np.zeros(len(questions), dtype=np.int64)
        return Transcripts(questions, ctx, None, None, z, z)  # (ctx where H' would keep subquestions)

    monkeypatch.setattr(amplify, "amplify_h_with_x", fake_h)

    task = make_task("permutation", nchars=4, length=1, log_iters=3)
    batch = task.generate(5, task.max_size, 3, n_questions=4)
    logp = -np.random.default_rng(1).random(20)
    c = types.SimpleNamespace(task=task, device="cpu",
                              sec={"amplify": AmplifyConfig(), "budget": BudgetConfig(focus=0.5, focus_by="uncertain", review=True)})

    idx, tr = stages._review(c, None, None, batch, None, {"answer_logp": logp}, np.random.default_rng(0), 4)
    assert np.array_equal(idx, np.argsort(logp)[:4])
    assert np.array_equal(tr.questions, batch.questions.reshape(20, -1)[idx])
    assert np.array_equal(tr.subquestions, idx // 4)


def test_review_mends_a_wrong_hprime_with_h_and_never_drops_the_reviewed():
    """`_apply_review` against an oracle: where a fake H' answered wrongly and H reviewed, the
    target becomes H's (right) answer and is kept even if min_confidence had dropped it."""
    rng = np.random.default_rng(0)
    truth = rng.integers(1, 9, size=(12, 2))
    targets = truth.copy().reshape(3, 4, 2)
    targets.reshape(12, 2)[[1, 5, 7], 0] += 1  # a fake H' that answers these wrongly
    drop = np.zeros(12, dtype=bool)
    drop[[5, 9]] = True
    idx = np.array([5, 7, 2])
    log = stages._apply_review(idx, truth[idx], targets, drop, truth)
    flat = targets.reshape(12, 2)
    assert np.array_equal(flat[idx], truth[idx]) and not np.array_equal(flat[1], truth[1])
    assert drop.tolist() == [i == 9 for i in range(12)]
    assert log == {"reviewed": 3, "reviewed_changed": 2 / 3, "reviewed_accuracy_before": 1 / 3,
                   "reviewed_accuracy_after": 1.0}
    assert stages._apply_review(idx[:0], truth[:0], targets, drop, truth) == {"reviewed": 0}


def test_an_hprime_ensemble_runs_through_the_stages(tmp_path):
    """`hprime.members: 2`: train_hprime saves both members, decompose measures the mixture's
    fresh loss, amplify decodes from it, and the run ends with X evaluated as usual."""
    from amplification.checkpoint import load_hprime
    from amplification.hprime import Ensemble

    cfg = tiny_config(tmp_path, methods=["amplification"], iterations=2)
    cfg["defaults"]["hprime"]["members"] = 2
    recs = run_all(cfg)
    hp = load_hprime(paths.stage_output(cfg["results_dir"], "permutation", "amplification", 0, 1, "train_hprime", "hprime.pt"))
    assert isinstance(hp, Ensemble) and len(hp.members) == 2
    d = json.load(open(paths.stage_output(cfg["results_dir"], "permutation", "amplification", 0, 1, "decompose", "decompose.json")))
    assert np.isfinite(d["hprime_fresh_loss"])
    a = json.load(open(paths.stage_output(cfg["results_dir"], "permutation", "amplification", 0, 1, "amplify", "amplify.json")))
    assert 0.0 <= a["targets_accuracy"] <= 1.0  # the mixture's probabilities are probabilities:
    assert 0.0 <= a["answer_confidence_below_0.5"] <= a["answer_confidence_below_0.9"] <= a["answer_confidence_below_0.99"] <= 1.0
    assert recs[("amplification", 0, 1)]["metrics"]["accuracy/teacher/greedy"] >= 0.0
    # each record says what it was computed on: the same numbers need the same kind of CPU too
    mach = recs[("amplification", 0, 1)]["machine"]
    assert mach["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and mach["torch"] == torch.__version__


@pytest.mark.parametrize("wrong_is_unsure", [True, False])
def test_min_confidence_withholds_the_targets_hprime_is_unsure_of(tmp_path, monkeypatch, wrong_is_unsure):
    """`amplify.min_confidence`: a fake Amplify(X) wrong on every other question. When it is unsure
    exactly where it is wrong, those targets become "unknown" (distillation skips them) and every
    target given is right; a fake sure where it is wrong and unsure where right loses its right
    targets instead (the lever cannot tell: the record shows it)."""
    import amplification.amplify as amp
    from amplification.human import Transcripts

    cfg = tiny_config(tmp_path, methods=["amplification"], iterations=1)
    cfg["defaults"]["amplify"]["min_confidence"] = 0.5
    stages.run_testset(cfg, "permutation")
    stages.run_sample(cfg, "permutation", "amplification", 0, 0)
    stages.run_decompose(cfg, "permutation", "amplification", 0, 0)
    stages.run_train_hprime(cfg, "permutation", "amplification", 0, 0)
    truth = np.load(paths.stage_output(cfg["results_dir"], "permutation", "amplification", 0, 0, "sample", "sample.npz"))["answers"]
    B, Q, al = truth.shape
    wrong = np.arange(B * Q) % 2 == 1

    def fake_amplify(task, hp, x, facts, mask, questions, db, rng, device, scores=None, **kw):
        ans = truth.reshape(B * Q, al).copy()
        names = np.unique(ans[:, 0])  # another name of the vocabulary: a wrong answer
        ans[wrong, 0] = names[(np.searchsorted(names, ans[wrong, 0]) + 1) % len(names)]
        scores["answer_logp"] = np.log(np.where(wrong == wrong_is_unsure, 0.3, 0.95))
        scores["min_logp"] = scores["answer_logp"] - 1.0
        z = np.zeros(B * Q, dtype=np.int64)
        return Transcripts(questions.reshape(B * Q, -1), None, None, ans, z, z)

    monkeypatch.setattr(amp, "amplify_hprime", fake_amplify)
    rec = stages.run_amplify(cfg, "permutation", "amplification", 0, 0)
    targets = np.load(paths.stage_output(cfg["results_dir"], "permutation", "amplification", 0, 0,
                                         "amplify", "targets.npz"))["targets"].reshape(B * Q, al)
    assert rec["targets_accuracy"] == 0.5  # Amplify(X)'s own, before withholding
    if wrong_is_unsure:
        assert rec["dropped"] == 0.5 and rec["dropped_targets_accuracy"] == 0.0 and rec["kept_targets_accuracy"] == 1.0
        assert not targets[wrong].any() and np.array_equal(targets[~wrong], truth.reshape(B * Q, al)[~wrong])
    else:
        assert rec["dropped"] == 0.5 and rec["dropped_targets_accuracy"] == 1.0 and rec["kept_targets_accuracy"] == 0.0
        assert not targets[~wrong].any() and targets[wrong].all(-1).all()
    assert rec["answer_confidence_below_0.5"] == 0.5 and rec["answer_accuracy_below_0.5"] == rec["dropped_targets_accuracy"]
    assert rec["tree_confidence_below_0.5"] == 1.0  # (the fake's least sure token: below its answer)
    stages.run_distill(cfg, "permutation", "amplification", 0, 0)
    m = stages.run_evaluate(cfg, "permutation", "amplification", 0, 0)["metrics"]
    assert (m["targets/dropped"], m["accuracy/targets/kept"]) == (0.5, 1.0 if wrong_is_unsure else 0.0)


def test_min_confidence_of_the_tree_reads_the_least_sure_step(tmp_path, monkeypatch):
    """`amplify.confidence_of: tree`: a fake sure of every final answer but unsure of a step on
    half the questions has those targets withheld; reading the answer it would keep them all."""
    import amplification.amplify as amp
    from amplification.human import Transcripts

    got = {}
    for of in ("answer", "tree"):
        cfg = tiny_config(tmp_path / of, methods=["amplification"], iterations=1)
        cfg["defaults"]["amplify"].update(min_confidence=0.5, confidence_of=of)
        stages.run_testset(cfg, "permutation")
        for stage in (stages.run_sample, stages.run_decompose, stages.run_train_hprime):
            stage(cfg, "permutation", "amplification", 0, 0)

        def fake_amplify(task, hp, x, facts, mask, questions, db, rng, device, scores=None, **kw):
            n = questions.shape[0] * questions.shape[1]
            scores["answer_logp"] = np.full(n, np.log(0.99))
            scores["min_logp"] = np.log(np.where(np.arange(n) % 2 == 1, 0.2, 0.99))
            z = np.zeros(n, dtype=np.int64)
            return Transcripts(questions.reshape(n, -1), None, None, np.ones((n, task.answer_length), dtype=np.int64), z, z)

        monkeypatch.setattr(amp, "amplify_hprime", fake_amplify)
        got[of] = stages.run_amplify(cfg, "permutation", "amplification", 0, 0)["dropped"]
    assert got == {"answer": 0.0, "tree": 0.5}


def test_curriculum_grows_only_above_threshold():
    from amplification.hparams import CurriculumConfig

    c = CurriculumConfig(step=2, threshold=0.85)
    assert stages.next_size(4, 0.9, c, 8) == 6
    assert stages.next_size(4, 0.85, c, 8) == 4
    assert stages.next_size(7, 0.99, c, 8) == 8


def test_missing_input_is_a_clear_error(tmp_path):
    cfg = tiny_config(tmp_path)
    with pytest.raises(FileNotFoundError, match="sample.npz"):
        stages.run_amplify(cfg, "permutation", "supervised", 0, 0)
    rd = paths.iter_dir(cfg["results_dir"], "permutation", "supervised", 0, 0)
    os.makedirs(rd)
    open(os.path.join(rd, "sample.npz"), "w").write("garbage")
    with pytest.raises(ValueError, match="corrupt data file"):
        stages.run_amplify(cfg, "permutation", "supervised", 0, 0)
