"""Study tables and figures from a metrics.json tree (a fake one: the real stages are tested elsewhere)."""
import json
import math
import os

import pandas as pd
import pytest

from amplification import paths
from amplification.cli import main as cli
from amplification.commands.study import run_summary, metrics_frame, write_figures, write_summary
from amplification.config import load_config, save_resolved
from fake_stage import write_fake_tree


@pytest.fixture
def study(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config([], {"tasks": ["permutation", "wildcard"], "seeds": [0, 1], "iterations": 4,
                           "mlflow": {"enabled": False}})
    write_fake_tree(cfg)
    return cfg


def record(task, method, seed, i, acc, steps, h, **extra):
    m = {"accuracy/teacher/greedy": acc, "steps/cumulative": steps, "examples/cumulative": steps * 10,
         "h_calls/cumulative": h, "wall_time/cumulative": 2.0 * (i + 1), **extra}
    return {"task": task, "method": method, "seed": seed, "iteration": i, "config": "t",
            "params": {"size": 8, "steps": steps, "examples": steps * 10, "h_calls": h}, "metrics": m}


def test_run_summary_thresholds():
    recs = [record("permutation", "amplification", 0, i, a, 100 * (i + 1), 50 * (i + 1))
            for i, a in enumerate([0.2, 0.94, 0.95, 0.99])]
    recs += [record("permutation", "supervised", 0, i, a, 100 * (i + 1), 0) for i, a in enumerate([0.5, 0.6])]
    s = run_summary(metrics_frame(recs)).set_index("method")
    amp, sup = s.loc["amplification"], s.loc["supervised"]
    assert amp.final_accuracy == 0.99 and amp.final_iteration == 3 and amp.iterations == 4
    assert (amp.steps_to_95, amp.examples_to_95, amp.h_calls_to_95) == (300, 3000, 150)
    assert amp.wall_time == 8.0 and amp.h_calls == 200
    assert math.isnan(sup.steps_to_95) and sup.final_accuracy == 0.6
    assert math.isnan(sup.final_accuracy_sampled)  # a missing metric is tolerated
    assert math.isnan(amp.final_accuracy_ci_low)  # no test-set size given: no interval


def test_final_accuracy_interval():
    recs = [record("wildcard", "amplification", 0, 0, 0.5, 100, 10), record("wildcard", "supervised", 0, 0, 0.95, 100, 0)]
    s = run_summary(metrics_frame(recs), test_questions=100).set_index("method")
    # the Wilson score interval of 50 of 100: 40.4% to 59.6% (the textbook value)
    amp = s.loc["amplification"]
    assert (round(amp.final_accuracy_ci_low, 4), round(amp.final_accuracy_ci_high, 4)) == (0.4038, 0.5962)
    sup = s.loc["supervised"]  # asymmetric near 1, and inside [0, 1]
    assert sup.final_accuracy_ci_low < 0.95 < sup.final_accuracy_ci_high < 1.0
    assert 0.95 - sup.final_accuracy_ci_low > sup.final_accuracy_ci_high - 0.95


def test_write_summary_files(study):
    out = write_summary(study)
    assert out["records"] == 2 * 2 * 2 * 4 and out["runs"] == 8
    summary = pd.read_csv("results/summary.csv")
    assert len(summary) == 8
    assert {"final_accuracy", "steps_to_95", "examples_to_95", "h_calls_to_95", "wall_time"} <= set(summary.columns)
    # the interval comes from the config's test-set size (64 x 16 = 1,024 questions by default)
    assert (summary.final_accuracy_ci_low < summary.final_accuracy).all()
    assert (summary.final_accuracy <= summary.final_accuracy_ci_high).all()
    metrics = pd.read_csv("results/metrics.csv")
    assert len(metrics) == 32
    assert {"task", "method", "seed", "iteration", "size", "steps", "h_calls", "accuracy/teacher/greedy",
            "accuracy/teacher/greedy/class/easy", "loss/hprime"} <= set(metrics.columns)
    assert metrics[metrics.method == "supervised"]["loss/hprime"].isna().all()
    js = json.load(open("results/summary.json"))
    assert set(js) == {"permutation", "wildcard"} and set(js["wildcard"]) == {"amplification", "supervised"}
    assert js["wildcard"]["supervised"]["seeds"] == 2
    assert not any(k.startswith("final_accuracy_ci") for k in js["wildcard"]["supervised"])  # no mean of intervals
    curves = pd.read_csv("results/curves/permutation.csv")
    assert list(curves.columns) == ["iteration", "amplification", "amplification_steps", "supervised",
                                    "supervised_steps"]
    assert len(curves) == 4
    assert not [f for f in os.listdir("results") if ".tmp" in f]


def test_summary_skips_unconfigured_and_missing(study):
    os.remove(paths.stage_outputs("evaluate", "results", "wildcard", "supervised", 1, 3)["metrics"])
    out = write_summary({**study, "tasks": ["wildcard"]})
    assert out["records"] == 2 * 2 * 4 - 1


def test_figures(study, tmp_path):
    written = write_figures(study, str(tmp_path / "figs"))
    names = sorted(os.path.basename(p) for p in written)
    assert names == ["accuracy_by_class.png", "accuracy_vs_steps.png", "hcalls_vs_accuracy.png",
                     "teacher_vs_targets.png"]
    for p in written:
        with open(p, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.getsize(p) > 10_000


def test_cli_commands(study, tmp_path, capsys):
    cfg_path = str(tmp_path / "resolved.yaml")
    save_resolved(study, cfg_path)
    assert cli(["study", "summary", "--config", cfg_path]) == 0
    assert os.path.exists("results/summary.csv")
    assert cli(["study", "figures", "--config", cfg_path, "--out", "figs"]) == 0
    assert len(os.listdir("figs")) == 4
    empty = load_config([], {"results_dir": "nothing-here", "mlflow": {"enabled": False}})
    save_resolved(empty, "empty.yaml")
    assert cli(["study", "summary", "--config", "empty.yaml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("amplification: error: no metrics.json under nothing-here/")
    assert cli(["study", "summary", "--config", "missing.yaml"]) == 2
    assert "config: no such file missing.yaml" in capsys.readouterr().err
