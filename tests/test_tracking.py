"""MLflow tracking: parent and nested runs found again by tags, idempotent re-sync, a server that is
down never raising, and the lean `mlflow ui` server of the README queried through its REST API."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from amplification import tracking
from amplification.config import load_config
from fake_stage import write_fake_tree

pytest.importorskip("mlflow")


@pytest.fixture
def study(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = load_config([], {"name": "fake", "tasks": ["permutation", "wildcard"], "iterations": 3,
                           "mlflow": {"experiment": "test-study", "tracking_uri": f"sqlite:///{tmp_path}/m.db"}})
    write_fake_tree(cfg)
    return cfg


def runs(cfg, filter_string=""):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=tracking.tracking_uri(cfg))
    exp = c.get_experiment_by_name(cfg["mlflow"]["experiment"])
    return c, c.search_runs([exp.experiment_id], filter_string=filter_string, max_results=1000)


def test_uri_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "Snakefile").write_text("")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    cfg = {"mlflow": {"tracking_uri": None}}
    assert tracking.tracking_uri(cfg) == f"sqlite:///{tmp_path}/mlflow.db"  # the root, not the cwd
    assert tracking.tracking_uri({"mlflow": {"tracking_uri": "http://x:1"}}) == "http://x:1"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:2")
    assert tracking.tracking_uri({"mlflow": {"tracking_uri": "http://x:1"}}) == "http://env:2"


def test_disabled_is_noop(study):
    cfg = {**study, "mlflow": {**study["mlflow"], "enabled": False}}
    rec = next(tracking.iter_records(cfg))[1]
    assert tracking.log_iteration(cfg, rec) is False
    assert not os.path.exists(study["mlflow"]["tracking_uri"][len("sqlite:///"):])


def test_sync_parent_and_nested_runs_idempotent(study):
    assert tracking.sync(study) == (2 * 2 * 3, 0)
    c, all_runs = runs(study)
    parents = [r for r in all_runs if r.data.tags.get("level") == "parent"]
    assert len(parents) == 4 and len(all_runs) == 4 + 12
    p = next(r for r in parents if r.data.tags["run_key"] == "fake/permutation/amplification/seed0")
    assert p.info.run_name == "permutation/amplification/seed0"
    assert p.data.tags["config"] == "fake" and p.data.tags["git_commit"]
    kids = [r for r in all_runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id]
    assert sorted(int(r.data.params["iteration"]) for r in kids) == [0, 1, 2]
    k2 = next(r for r in kids if r.data.params["iteration"] == "2")
    assert set(k2.data.params) == {"iteration", "size", "steps", "examples", "h_calls"}
    rec = json.load(open(tracking.metrics_path(study, "permutation", "amplification", 0, 2)))
    assert k2.data.metrics["accuracy/teacher/greedy"] == pytest.approx(rec["metrics"]["accuracy/teacher/greedy"])
    assert "loss/hprime" in k2.data.metrics and "accuracy/teacher/greedy/class/easy" in k2.data.metrics
    hist = c.get_metric_history(p.info.run_id, "accuracy/teacher/greedy")
    assert sorted(m.step for m in hist) == [0, 1, 2]

    # again: the same runs and no duplicated points
    assert tracking.sync(study) == (12, 0)
    _, again = runs(study)
    assert sorted(r.info.run_id for r in again) == sorted(r.info.run_id for r in all_runs)
    assert len(c.get_metric_history(p.info.run_id, "accuracy/teacher/greedy")) == 3

    # a changed iteration (new params) replaces its nested run, still one per iteration
    path = tracking.metrics_path(study, "permutation", "amplification", 0, 2)
    rec["params"]["size"] = 99
    rec["metrics"]["accuracy/teacher/greedy"] = 0.5
    rec["machine"] = {"cpu_capability": "AVX2", "threads": 1}  # as run_evaluate records it
    with open(path, "w") as fh:
        json.dump(rec, fh)
    assert tracking.log_iteration(study, rec) is True
    _, after = runs(study, "tags.run_key = 'fake/permutation/amplification/seed0' and tags.iteration = '2'")
    assert len(after) == 1 and after[0].data.params["size"] == "99"
    assert after[0].data.metrics["accuracy/teacher/greedy"] == 0.5
    assert after[0].data.tags["machine.cpu_capability"] == "AVX2" and after[0].data.tags["machine.threads"] == "1"


def test_server_down_warns_and_never_raises(study, monkeypatch, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    # no retries: the same failure path in a fraction of the time (the defaults retry twice)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    rec = next(tracking.iter_records(study))[1]
    t0 = time.time()
    assert tracking.log_iteration(study, rec) is False
    assert time.time() - t0 < 60
    err = capsys.readouterr().err
    assert "warning: MLflow tracking failed" in err and "sync-mlflow" in err
    ok, failed = tracking.sync(study)
    assert ok == 0 and failed == 12
    # later, with the store reachable, a re-sync brings everything in
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking.sync(study) == (12, 0)


# ---- the lean server of the README, through its REST API ---------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(base, path, body=None):
    if body is None:
        req = urllib.request.Request(base + path)
    else:
        req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture
def server(tmp_path):
    """`MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --workers 1 --host 127.0.0.1 --port P
    --backend-store-uri sqlite:///...`, as README.md says; stopped (its process group) at the end."""
    port = free_port()
    db = tmp_path / "server.db"
    mlflow_bin = os.path.join(os.path.dirname(sys.executable), "mlflow")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([mlflow_bin, "ui", "--workers", "1", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{db}"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.flush()
                pytest.fail(f"mlflow ui did not serve: {(tmp_path / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield base
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_server_rest_api(study, server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    assert tracking.sync(study) == (12, 0)
    exp = api(server, "/api/2.0/mlflow/experiments/get-by-name?"
              + urllib.parse.urlencode({"experiment_name": "test-study"}))["experiment"]
    parents = api(server, "/api/2.0/mlflow/runs/search", {
        "experiment_ids": [exp["experiment_id"]], "max_results": 100,
        "filter": "tags.level = 'parent' and tags.task = 'wildcard'"})["runs"]
    assert len(parents) == 2
    parent = next(r for r in parents if {"key": "method", "value": "amplification"} in r["data"]["tags"])
    pid = parent["info"]["run_id"]
    kids = api(server, "/api/2.0/mlflow/runs/search", {
        "experiment_ids": [exp["experiment_id"]], "max_results": 100,
        "filter": f"tags.mlflow.parentRunId = '{pid}'"})["runs"]
    assert len(kids) == 3
    for kid in kids:
        params = {p["key"]: p["value"] for p in kid["data"]["params"]}
        i = int(params["iteration"])
        rec = json.load(open(tracking.metrics_path(study, "wildcard", "amplification", 0, i)))
        hist = api(server, "/api/2.0/mlflow/metrics/get-history?" + urllib.parse.urlencode(
            {"run_id": kid["info"]["run_id"], "metric_key": "accuracy/teacher/greedy"}))["metrics"]
        assert [(m["step"], m["value"]) for m in hist] == [(i, pytest.approx(rec["metrics"]["accuracy/teacher/greedy"]))]
    hist = api(server, "/api/2.0/mlflow/metrics/get-history?" + urllib.parse.urlencode(
        {"run_id": pid, "metric_key": "h_calls/cumulative"}))["metrics"]
    assert sorted(m["step"] for m in hist) == [0, 1, 2]
