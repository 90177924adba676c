"""The experiment scripts run end to end at a tiny scale (they are how the README's learning
numbers were measured, so they must not rot)."""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(script, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", script), *args], capture_output=True,
                         text=True, timeout=240, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def experiment(name):
    """An experiment script imported as a module (experiments/ is no package)."""
    import importlib

    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def smoke_study(tmp_path, task="permutation", params=None):
    """The smoke config's two amplification iterations of one task, seed 0; -> the config."""
    from amplification import stages
    from amplification.config import load_config

    over = {"results_dir": str(tmp_path / "r"), "data_dir": str(tmp_path / "d"), "mlflow": {"enabled": False}}
    if task != "permutation":
        over.update(tasks=[task], per_task={task: {"params": params}})
    cfg = load_config(os.path.join(ROOT, "config", "smoke.yaml"), overrides=over)
    stages.run_testset(cfg, task)
    for i in range(2):
        stages.run_iteration(cfg, task, "amplification", 0, i)
    return cfg


def test_supervised_capacity_prints_curves_by_class():
    out = run("supervised_capacity.py", "--task", "permutation", "--params", '{"nchars": 4, "length": 1, "log_iters": 3}',
              "--steps", "4", "--every", "2", "--batch", "4", "--x", '{"width": 16, "heads": 2, "embed": 8, "enc_layers": 1, "dec_layers": 1}')
    lines = [ln for ln in out.splitlines() if ln.startswith("step")]
    assert len(lines) == 2
    assert re.search(r"all=\d\.\d\d bits2=\d\.\d\d bits3=\d\.\d\d", lines[-1])


def test_supervised_capacity_pool_mode():
    out = run("supervised_capacity.py", "--task", "wildcard", "--params", '{"nchars": 2, "length": 2}', "--pool", "6",
              "--refresh", "2", "--steps", "4", "--every", "4", "--batch", "3",
              "--x", '{"width": 16, "heads": 2, "embed": 8, "enc_layers": 1, "dec_layers": 1}')
    assert "pool 6" in out and out.count("\nstep") == 1


def test_supervised_capacity_parent_noise_for_union_find_only():
    out = run("supervised_capacity.py", "--task", "union_find", "--params", '{"nchars": 4, "length": 1}', "--steps", "2",
              "--every", "2", "--batch", "3", "--parent-noise", "0.5", "--noise-steps", "1",
              "--x", '{"width": 16, "heads": 2, "embed": 8, "enc_layers": 1, "dec_layers": 1}')
    assert "X after 2 steps" in out and "P1 leaf:" in out
    bad = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "supervised_capacity.py"), "--task", "permutation",
                          "--parent-noise", "0.5"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "--parent-noise" in bad.stderr and "union_find only" in bad.stderr
    bad = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "supervised_capacity.py"), "--task", "union_find",
                          "--noise-steps", "5"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "--noise-steps" in bad.stderr and "with --parent-noise" in bad.stderr


def test_reduced_permutation_one_iteration_each_method():
    out = run("reduced_permutation.py", "--threads", "1", "--steps", "2", "--hp-steps", "2", "--contexts", "8",
              "--width", "16", "--enc-layers", "1", "--dec-layers", "1", "--iterations", "1", "--classes",
              "--hprime", '{"width": 16, "layers": 1}',
              "--params", '{"nchars": 4, "length": 1, "log_iters": 3}')
    assert re.search(r"^amplification iter   0 steps      2 .* H calls 200 \| bits2=", out, re.M)
    assert re.search(r"^supervised    iter   0 steps      2 .* H calls 0 \| bits2=", out, re.M)
    assert "method         reached" in out


def test_reduced_permutation_no_stop_runs_past_the_goal():
    """With a goal every run meets, a run stops after iteration 0, and with --no-stop it goes on,
    its table still giving the first crossing."""
    args = ("--threads", "1", "--steps", "2", "--contexts", "8", "--width", "16", "--enc-layers", "1",
            "--dec-layers", "1", "--iterations", "2", "--methods", "supervised", "--goal", "0",
            "--params", '{"nchars": 4, "length": 1, "log_iters": 3}')
    stopped, went_on = run("reduced_permutation.py", *args), run("reduced_permutation.py", *args, "--no-stop")
    assert re.search(r"^supervised +iter +0 ", stopped, re.M) and not re.search(r"^supervised +iter +1 ", stopped, re.M)
    assert re.search(r"^supervised +iter +1 ", went_on, re.M)
    assert re.search(r"^supervised +yes +2 ", stopped, re.M) and re.search(r"^supervised +yes +2 ", went_on, re.M)


def test_h_targets_put_h_in_hprime_place_at_every_level(monkeypatch):
    """`reduced_permutation.py --h-targets` (the upper bound of a perfect H'): the amplify stage's
    Amplify^{H'}(X) becomes Amplify^H(X) of the same depth, H' unused. With an X that knows
    nothing it is right exactly where H's tree of depth L reaches the oracle (bit-lengths <= L + 1)."""
    import numpy as np

    import amplification.amplify as amp
    from amplification.tasks import make_task

    class KnowsNothing:
        def __init__(self, x, facts, mask, device):
            pass

        def __call__(self, ctx, q, greedy=True, generator=None):
            return np.zeros((len(q), task.answer_length), dtype=np.int64)

    monkeypatch.setattr(amp, "amplify_hprime", amp.amplify_hprime)  # (restored after the test)
    monkeypatch.setattr(amp, "XAnswerer", KnowsNothing)
    experiment("reduced_permutation")._targets_from_h()
    task = make_task("permutation", nchars=8, length=1, log_iters=5)
    b = task.generate(16, task.max_size, 3, n_questions=8)
    bits = b.classes.reshape(-1) + 2
    for levels in (1, 2):
        tr = amp.amplify_hprime(task, None, None, b.facts, b.fact_mask, b.questions, b.db,
                                np.random.default_rng(0), levels=levels)
        right = (tr.answers == b.answers.reshape(len(bits), -1)).all(-1)
        assert np.array_equal(right, bits <= levels + 1), levels
    # --h-targets-until 2: H up to iteration 2, then the learned H' again
    calls = []
    monkeypatch.setattr(amp, "amplify_hprime", lambda *a, **k: calls.append(k.get("levels")) or "learned")
    state = experiment("reduced_permutation")._targets_from_h(until=2)
    state["i"] = 2
    assert amp.amplify_hprime(task, None, None, b.facts, b.fact_mask, b.questions, b.db,
                              np.random.default_rng(0), levels=2) != "learned" and calls == []
    state["i"] = 3
    assert amp.amplify_hprime(task, None, None, b.facts, b.fact_mask, b.questions, b.db,
                              np.random.default_rng(0), levels=2) == "learned" and calls == [2]


def test_hprime_vs_h_compares_a_study_iteration(tmp_path):
    import pytest

    compare = experiment("hprime_vs_h").compare
    cfg = smoke_study(tmp_path)
    r = compare(cfg, "permutation", 0, 1, contexts=3)
    n_all = r["rows"]["all"][0]
    assert n_all == 3 * 4  # 3 contexts x one question per fact (4 names)
    assert sum(v[0] for k, v in r["rows"].items() if k != "all") == n_all
    assert all(0.0 <= f <= 1.0 for v in r["rows"].values() for f in v[1:])
    with pytest.raises(ValueError, match="--iter must be >= 1"):
        compare(cfg, "permutation", 0, 0, contexts=3)
    # the same iteration, with H' given fresh transcripts from X_0 and a few more steps
    measure = experiment("hprime_more_data").measure

    base = measure(cfg, "permutation", 0, 1, new=0, steps=0, contexts=3)
    more = measure(cfg, "permutation", 0, 1, new=5, steps=2, contexts=3)
    assert more["transcripts"] == base["transcripts"] + 5
    assert base["same"] == pytest.approx(r["rows"]["all"][3])  # no new data, no steps: the study's H'
    assert 0.0 <= more["same"] <= 1.0 and 0.0 <= more["right"] <= 1.0


def test_fresh_eval_on_the_test_set_itself_gives_the_study_numbers(tmp_path):
    import numpy as np

    from amplification import stages

    fe = experiment("fresh_eval")
    cfg = smoke_study(tmp_path)
    test = stages.arrays_to_batch(stages.load_npz(os.path.join(cfg["data_dir"], "testsets", "permutation.npz")))
    rows = fe.run_curves(cfg, "permutation", "amplification", 0, test)
    assert [r["iteration"] for r in rows] == [0, 1]
    # the same X on the same questions: exactly the evaluate stage's headline number
    assert all(r["fresh"] == r["test"] for r in rows)
    assert [r["steps"] for r in rows] == sorted(r["steps"] for r in rows)
    fresh = fe.fresh_batch(stages.Ctx(cfg, "permutation", "amplification", 0, 0).task, 4, contexts=5, questions=3)
    assert fresh.questions.shape[:2] == (5, 3) and not np.array_equal(fresh.facts[:5], test.facts[:5])
    last = fe.run_curves(cfg, "permutation", "amplification", 0, fresh, iters="last")
    assert len(last) == 1 and last[0]["iteration"] == 1 and 0.0 <= last[0]["fresh"] <= 1.0
    assert fe.first_at([{"steps": 2, "test": 0.9}, {"steps": 4, "test": 0.96}], "test") == 4
    assert fe.first_at([{"steps": 2, "test": 0.9}], "test") is None


def test_errors_by_class_count_what_the_evaluate_stage_measured(tmp_path):
    import json

    from amplification import paths

    ebc = experiment("errors_by_class")
    cfg = smoke_study(tmp_path)
    rows = ebc.errors_by_class(cfg, "permutation", "amplification", 0, 1)
    n, wrong = sum(r["n"] for r in rows), sum(r["wrong"] for r in rows)
    d = paths.iter_dir(cfg["results_dir"], "permutation", "amplification", 0, 1)
    acc = json.load(open(os.path.join(d, "metrics.json")))["metrics"]["accuracy/teacher/greedy"]
    assert n == cfg["test_set"]["contexts"] * cfg["test_set"]["questions_per_context"]
    assert wrong == round((1 - acc) * n)
    for r in rows:  # the wrong answers listed are at most the class's wrong ones
        assert sum(k for _, k in r["said"]) <= r["wrong"] <= r["n"]
    with pytest.raises(FileNotFoundError, match="model.pt is missing"):
        ebc.errors_by_class(cfg, "permutation", "amplification", 0, 7)


def test_union_find_parents_splits_leaves_from_internal_nodes_and_names_the_wrong_answers():
    import numpy as np

    from amplification.tasks import make_task

    parent_table = experiment("union_find_parents").parent_table
    task = make_task("union_find", nchars=8, length=1)
    batch = task.generate(64, 8, 5, n_questions=16)
    right, wrong = parent_table(task, batch, batch.answers)
    assert not wrong and all(r == n for r, n in right.values())
    n_parent = sum(n for _, n in right.values())
    kinds = batch.questions[..., 0] == task.kP
    assert 0 < n_parent < kinds.sum()  # the roots' questions are left out
    assert {k for _, k in right} == {"leaf", "internal"}
    # every non-root answering itself: all wrong, each counted as "x itself", leaves and internal alike
    selfish = batch.answers.copy()
    selfish[kinds, 0] = batch.questions[kinds, 1]
    right2, wrong2 = parent_table(task, batch, selfish)
    assert sum(r for r, _ in right2.values()) == 0
    assert sum(wrong2.values()) == n_parent and {w for *_, w in wrong2} == {"x itself"}
    # no name at all
    blank = batch.answers.copy()
    blank[kinds] = 0
    assert {w for *_, w in parent_table(task, batch, blank)[1]} == {"no name"}
    # depth answers one too deep: every depth question wrong by +1
    depth_errors = experiment("union_find_parents").depth_errors
    assert not depth_errors(task, batch, batch.answers)
    kd = batch.questions[..., 0] == task.kD
    deeper = batch.answers.copy()
    deeper[kd, 0] += 1
    errs = depth_errors(task, batch, deeper)
    assert sum(errs.values()) == kd.sum() and {e for _, e in errs} <= {"+1", "no depth"} and errs[(0, "+1")] > 0
    # supervised_capacity.py's --parent-noise: at 1 every internal variable's parent label is a child
    noisy = experiment("union_find_parents").with_child_parents
    rng = np.random.default_rng(0)
    assert np.array_equal(noisy(task, batch, 0.0, rng), batch.answers)
    right3, wrong3 = parent_table(task, batch, noisy(task, batch, 1.0, rng))
    assert all(r == 0 for (_, k), (r, _) in right3.items() if k == "internal")
    assert all(r == n for (_, k), (r, n) in right3.items() if k == "leaf")
    assert {w for *_, w in wrong3} == {"a child"}
    # confirmation: an X that is always wrong (a child) and targets that copy it / are right
    conf = experiment("union_find_parents").confirmation
    child_x = noisy(task, batch, 1.0, rng)
    c1 = conf(task, batch, child_x, child_x)
    assert set(c1) == {("X wrong", "= X's answer")}
    c2 = conf(task, batch, child_x, batch.answers)
    assert set(c2) == {("X wrong", "right")} and sum(c2.values()) == sum(c1.values()) > 0
    # --depth-noise: at 1 every depth label of a variable at depth >= 2 is 1 or 2 too deep (capped)
    deep = experiment("union_find_parents").with_deep_depths(task, batch, 1.0, rng)
    kd2 = kd & (batch.answers[..., 0] >= task.depth0 + 2)
    assert np.array_equal(deep[~kd2], batch.answers[~kd2])
    delta = deep[kd2, 0] - batch.answers[kd2, 0]
    capped = batch.answers[kd2, 0] == task.depth0 + task.max_depth
    assert set(delta[~capped].tolist()) <= {1, 2} and (delta[capped] == 0).all()


def test_continue_run_adds_iterations_to_a_copy_and_leaves_the_study_alone(tmp_path):
    cont = experiment("continue_run").continue_run
    cfg = smoke_study(tmp_path)
    run = tmp_path / "r" / "permutation" / "amplification" / "seed0"
    before = sorted(p.name for p in run.iterdir())
    got = list(cont(cfg, "permutation", "amplification", 0, 3, str(tmp_path / "s")))
    assert [i for i, _ in got] == [2, 3]
    assert got[-1][1]["steps/cumulative"] > got[0][1]["steps/cumulative"]
    assert sorted(p.name for p in run.iterdir()) == before  # the study's own run is untouched
    assert (tmp_path / "s" / "results" / "permutation" / "amplification" / "seed0" / "iter3" / "model.pt").exists()
    with pytest.raises(ValueError, match="already has iterations 0..1"):
        list(cont(cfg, "permutation", "amplification", 0, 1, str(tmp_path / "s2")))
    with pytest.raises(FileExistsError, match="give another --scratch"):
        list(cont(cfg, "permutation", "amplification", 0, 3, str(tmp_path / "s")))


def test_union_find_parents_rebuilds_a_study_iteration_with_h_prime_and_with_h(tmp_path):
    uf = experiment("union_find_parents")
    cfg = smoke_study(tmp_path, task="union_find", params={"nchars": 5, "length": 1})
    r = uf.rebuilt_confirmation(cfg, 0, 1, 6)
    assert set(r) == {"H'", "H"}
    # the same questions are counted for both; only the targets differ
    assert sum(r["H'"].values()) == sum(r["H"].values())
    assert sum(v for (xk, _), v in r["H"].items() if xk == "X wrong") == sum(
        v for (xk, _), v in r["H'"].items() if xk == "X wrong")


def test_assignments_shortcut_solver_reads_every_answer_from_the_facts():
    measure = experiment("assignments_shortcut").measure
    m = measure(size=5, values=4, contexts=40)
    assert m.pop("solver") == 1.0  # the facts determine every answer
    assert set(m) <= {"depth0", "depth1", "depth2", "depth3-4"} and all(0 <= v <= 1 for v in m.values())
    assert m["depth1"] > 0.3  # the shortcut is far above chance (1/4): why X can sit on it


def test_assignments_variants_change_only_what_they_name():
    import numpy as np

    assignments_variant = experiment("supervised_capacity").assignments_variant
    from amplification.tasks import make_task

    def draw(variant):
        task = make_task("assignments", nchars=8, length=1, num_values=4)
        if variant:
            task = assignments_variant(task, variant)
        _, _, db = task._contexts(50, 6, np.random.default_rng(3))
        return db

    plain, both = draw(""), draw("fixed_table,same_operands")
    compound = both["ops"][..., 0] >= 0
    assert (both["ops"][..., 0] == both["ops"][..., 1])[compound].all()
    k = np.arange(4)
    assert (both["table"] == (k[:, None] + k[None, :]) % 4).all()
    assert not (plain["ops"][..., 0] == plain["ops"][..., 1])[compound].all()
    table_only = draw("fixed_table")  # the operands are drawn as without the variant
    assert (table_only["ops"] == plain["ops"]).all() and (table_only["order"] == plain["order"]).all()
    first, second = draw("first_operand"), draw("second_operand")
    assert (first["table"] == k[:, None]).all() and (second["table"] == k[None, :]).all()
    ops, val = second["ops"], second["value"]  # a compound's value is its second operand's
    rows = np.arange(50)[:, None].repeat(ops.shape[1], 1)
    assert (val[rows, ops[..., 1]] == val)[compound].all()
    for bad in ("fixed", "first_operand,second_operand"):
        with pytest.raises(SystemExit, match="--variant takes"):
            assignments_variant(make_task("assignments", nchars=8, length=1), bad)


def test_union_find_errors_sorts_every_wrong_target(tmp_path):
    breakdown = experiment("union_find_errors").breakdown
    cfg = smoke_study(tmp_path, "union_find", {"nchars": 8, "length": 1})
    r = breakdown(cfg, 0, 1, contexts=8)
    assert set(r["classes"]) == {"P1", "P2", "D1", "D2", "V1", "V2"}
    for v in r["classes"].values():  # every wrong target gets exactly one reason
        if v["n"]:
            assert sum(v["wrong"].values()) == round(v["n"] * (1 - v["right"]))
    for cls in ("P1", "P2"):  # the details split two of the reasons again, each case once
        v = r["classes"][cls]
        for reason, prefix in (("parent not a candidate: X guessed an adjacent child", "adjacent child:"),
                               ("parent a candidate, another chosen", "another chosen:")):
            assert sum(k for d, k in v["detail"].items() if d.startswith(prefix)) == v["wrong"].get(reason, 0)
        # the table by X's guess and x's degree holds each of the class's questions once, and
        # counts as targets of the parent exactly the right ones
        rows = [g for key, g in r["by_guess"].items() if key.startswith(cls + " ")]
        assert sum(g["n"] for g in rows) == v["n"]
        assert sum(g["target the parent"] for g in rows) == round(v["n"] * v["right"])


def test_hprime_rule_counts_contested_parent_transcripts(tmp_path):
    import numpy as np
    import pytest

    hr = experiment("hprime_rule")
    from amplification.human import Transcripts
    from amplification.tasks import make_task

    T = make_task("union_find", nchars=8, length=1)
    names = [T._char_base + k for k in range(3)]  # three names
    R, ql, al = T.rounds, T.question_length, T.answer_length
    sq, sa = np.zeros((1, R, ql), np.int64), np.zeros((1, R, al), np.int64)
    for r, (name, depth) in enumerate([(names[0], 2), (names[0], 2), (names[1], 1)]):  # D x -> depth
        sq[0, r, :2], sa[0, r, 0] = (T.kD, name), T.depth0 + depth
    assert hr.rule_answer(T, sq[0], sa[0]) == (names[1],)  # the shallowest, though asked last
    tie = sa.copy()
    tie[0, 2, 0] = T.depth0 + 2
    assert hr.rule_answer(T, sq[0], tie[0]) == (names[0],)  # ties: the first candidate, as H
    tr = Transcripts(np.array([[T.kP, names[2]]]), sq, sa, np.array([[names[1]]]), np.array([3]), np.array([0]))
    assert hr.later_wins(T, tr).tolist() == [True]
    tr.answers[0, 0] = names[0]
    assert hr.later_wins(T, tr).tolist() == [False]

    cfg = smoke_study(tmp_path, "union_find", {"nchars": 8, "length": 1})
    rows = hr.count(cfg, 0)
    assert [r["iter"] for r in rows] == [0, 1]
    for r in rows:
        assert r["transcripts"] >= r["parent"] >= r["contested"] >= r["later"] >= 0
    assert rows[1]["later_total"] == rows[0]["later"] + rows[1]["later"]
    with pytest.raises(FileNotFoundError, match="seed 3"):
        hr.count(cfg, 3)
    f = hr.follows(cfg, 0, 1, contexts=8)
    assert all(0 <= ok <= n for n, ok in f.values())
    (row,) = hr.learn(cfg, 0, 1, n=20, steps=0)
    assert row["steps"] == 0 and row["train"] > 0 and 0.0 <= row["all"] <= 1.0


def test_count_to_infinity_counts_every_target_once(tmp_path):
    import numpy as np
    import pytest

    cti = experiment("count_to_infinity")
    count_sources, depth_overestimates = cti.count_sources, cti.depth_overestimates
    sort_sources, unreachable_targets = cti.sort_sources, cti.unreachable_targets
    from amplification import stages

    cfg = smoke_study(tmp_path, "shortest_path", {"nchars": 6, "length": 1})
    rows = unreachable_targets(cfg, 0)
    assert [r["iter"] for r in rows] == [0, 1]
    task = stages.Ctx(cfg, "shortest_path", "amplification", 0, 0).task
    for r in rows:
        s = np.load(os.path.join(tmp_path, "r", "shortest_path", "amplification", "seed0", f"iter{r['iter']}", "sample.npz"))
        q, a = s["questions"], s["answers"][..., 0]
        assert r["n"] == int(((q[..., 0] == task.kD) & (a == task.inf)).sum()) > 0
        assert len(r["finite"]) == task.max_dist + 1
        assert round(r["inf"] * r["n"]) + sum(r["finite"]) + r["other"] == r["n"]  # each target counted once
        assert r["x"] is None or 0.0 <= r["x"] <= 1.0
    with pytest.raises(FileNotFoundError, match="seed 5"):
        unreachable_targets(cfg, 5)
    # recomputing iteration 1's targets on all its contexts finds a source for each wrong finite one
    src = count_sources(cfg, 0, 1, contexts=10_000)
    assert {d: sum(v.values()) for d, v in src.items()} == {d: c for d, c in enumerate(rows[1]["finite"]) if c}
    # a fake X that names b itself as every step and answers 0 to every distance: each unreachable
    # pair gets the target 1 + d(b, b) = 1, and each is traced to "b itself"
    from amplification.human import amplify_h
    from amplification.tasks import make_task

    sp = make_task("shortest_path", nchars=8, length=1)
    b = sp.generate(30, 6, np.random.default_rng(4))
    Q = b.questions.shape[1]
    qs = b.questions.reshape(30 * Q, -1)
    oracle_rng = np.random.default_rng(5)

    def fake(ctx, q):
        out = np.zeros((len(q), sp.answer_length), dtype=np.int64)
        step = q[:, 0] == sp.kS
        out[step] = q[step, 2:3]
        out[~step, 0] = sp.dist0
        return out

    tr = amplify_h(sp, np.repeat(np.arange(30), Q), qs, fake, lambda c, q: sp.answer(b.db, c, q, oracle_rng))
    unreachable = ((qs[:, 0] == sp.kD) & (b.answers.reshape(-1, 1)[:, 0] == sp.inf)).sum()
    assert unreachable > 0 and sort_sources(sp, b, tr, 30) == {1: {"b itself": int(unreachable)}}
    # union find: each depth-1 question's target counted once, by how far above the truth
    cfg = smoke_study(tmp_path, "union_find", {"nchars": 8, "length": 1})
    task = stages.Ctx(cfg, "union_find", "amplification", 0, 0).task
    for r in depth_overestimates(cfg, 0, 1):
        s = np.load(os.path.join(tmp_path, "r", "union_find", "amplification", "seed0", f"iter{r['iter']}", "sample.npz"))
        q, a = s["questions"], s["answers"][..., 0]
        assert r["n"] == int(((q[..., 0] == task.kD) & (a == task.depth0 + 1)).sum()) > 0
        assert sum(r["over"]) + r["other"] == r["n"] and len(r["over"]) == task.max_depth


def test_seed_means_reads_the_accuracy_after_an_iteration(tmp_path):
    """A progress bar on the same line (split on carriage returns) and a run that stopped early."""
    sm = experiment("seed_means")
    log = tmp_path / "run.log"
    log.write_text("# cmd\ndistill 10/150\ramplification iter   0 steps    150 wall     12s acc 0.422 (sampled 0.4)\n"
                   "amplification iter   1 steps    300 wall     23s acc 0.562 (sampled 0.5)\n")
    assert (sm.accuracy_at(str(log), 0), sm.accuracy_at(str(log), 1), sm.accuracy_at(str(log), 2)) == (0.422, 0.562, None)


def test_confidence_bands_average_the_wrong_targets_below_0_9_from_an_iteration(tmp_path):
    """Iteration 0 is skipped; an empty band ("-") counts as nothing wrong; a missing tree line as 0."""
    sm = experiment("seed_means")
    log = tmp_path / "run.log"
    log.write_text(
        "amplification iter   0 steps    150 wall     12s acc 0.4 (sampled 0.4) targets 0.500 agree 0.1\n"
        "    confidence: <0.5: 0.000 right - <0.9: 0.500 right 0.000 <0.99: 0.6 right 0.1\n"
        "amplification iter   1 steps    300 wall     23s acc 0.5 (sampled 0.5) targets 0.900 agree 0.6\n"
        "    confidence: <0.5: 0.000 right - <0.9: 0.040 right 0.500 <0.99: 0.1 right 0.2\n"
        "    tree confidence: <0.5: 0.000 right - <0.9: 0.080 right 0.250 <0.99: 0.1 right 0.3\n"
        "amplification iter   2 steps    450 wall     34s acc 0.6 (sampled 0.6) targets 0.800 agree 0.7\n"
        "    confidence: <0.5: 0.000 right - <0.9: 0.000 right - <0.99: 0.0 right -\n")
    b = sm.confidence_bands(str(log), 1)
    assert b == pytest.approx({"wrong": 0.15, "answer_flagged": 0.02, "answer_wrong": 0.01,
                               "tree_flagged": 0.04, "tree_wrong": 0.03,
                               "answer_flagged99": 0.05, "answer_wrong99": 0.04,
                               "tree_flagged99": 0.05, "tree_wrong99": 0.035})
    assert sm.confidence_bands(str(log), 3) is None


def test_seed_means_carries_a_run_that_stopped_at_95_percent(tmp_path):
    """A run that reached 95% and stopped counts with its last accuracy (flagged); one that
    stopped for another reason (a time limit) is left out."""
    sm = experiment("seed_means")
    passed, cut = tmp_path / "passed.log", tmp_path / "cut.log"
    lines = ("amplification iter   0 steps    150 wall     12s acc 0.900 (sampled 0.9)\n"
             "amplification iter   1 steps    300 wall     23s acc 0.955 (sampled 0.9)\n\n"
             "method         reached  steps  wall_s  H_calls  accuracy\n")
    passed.write_text(lines + "amplification  yes      300  23  3000  0.955\n")
    cut.write_text(lines + "amplification  no       -\n")
    assert sm.accuracy_or_last(str(passed), 1) == (0.955, False)
    assert sm.accuracy_or_last(str(passed), 3) == (0.955, True)
    assert sm.accuracy_or_last(str(cut), 3) == (None, False)
    # its --no-stop repeat, where there is one, gives the later iterations themselves
    run = tmp_path / "x_hp1_seed4.log"
    run.write_text(passed.read_text())
    (tmp_path / "x_hp1_nostop_seed4.log").write_text(
        lines + "amplification iter   2 steps    450 wall     35s acc 0.940 (sampled 0.9)\n")
    assert sm.accuracy_or_last(str(run), 2) == (0.94, False)
    assert sm.accuracy_or_last(str(run), 3) == (0.955, True)  # past the repeat too: carried


def test_seed_means_pairs_seeds_and_counts_who_reaches_95_percent(tmp_path):
    """The paired difference is over the seeds both settings have, with the standard error of the
    differences (not of either mean); the first iteration at 95% is read from the --no-stop
    repeat past a stop, and a run that never gets there by the last iteration asked counts as not."""
    sm = experiment("seed_means")
    mean, se = sm.mean_se([0.90, 0.94, 0.98])
    assert mean == pytest.approx(0.94) and se == pytest.approx(0.04 / 3 ** 0.5)
    assert math.isnan(sm.mean_se([0.9])[1])
    # a lever that adds exactly one point on every seed: zero error, however far apart the seeds are
    d, d_se, n = sm.paired([0.91, 0.81, None, 0.96], [0.90, 0.80, 0.70, 0.95])
    assert (d, d_se, n) == (pytest.approx(0.01), pytest.approx(0.0, abs=1e-12), 3)
    assert sm.paired([0.9, None], [0.8, 0.7]) is None
    line = "amplification iter {:3d} steps {:6d} wall     12s acc {:.3f} (sampled 0.9)\n"
    run = tmp_path / "x_seed1.log"
    run.write_text(line.format(0, 150, 0.90) + line.format(1, 300, 0.93))
    assert sm.first_reach(str(run), 5) is None
    (tmp_path / "x_nostop_seed1.log").write_text(run.read_text() + line.format(2, 450, 0.949) + line.format(3, 600, 0.95))
    assert (sm.first_reach(str(run), 5), sm.first_reach(str(run), 2)) == (3, None)


def test_seed_means_reads_the_share_of_right_targets(tmp_path):
    """`targets` reads each iteration's `targets` column, and a --no-stop repeat adds the
    iterations past the stop (the log's own lines win)."""
    sm = experiment("seed_means")
    line = "amplification iter {:3d} steps {:6d} wall     12s acc 0.900 (sampled 0.9) targets {:.3f} agree 0.8 H calls 10\n"
    run = tmp_path / "x_seed2.log"
    run.write_text(line.format(0, 150, 0.464) + line.format(1, 300, 0.813))
    assert sm.targets(str(run)) == {0: 0.464, 1: 0.813}
    (tmp_path / "x_nostop_seed2.log").write_text(line.format(1, 300, 0.5) + line.format(2, 450, 0.902))
    assert sm.with_repeat(str(run), sm.targets) == {0: 0.464, 1: 0.813, 2: 0.902}
