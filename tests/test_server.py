"""The stage server: a job run through it computes exactly what the plain command computes."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from amplification import paths, stages
from amplification.cli import main as cli_main
from amplification.config import dump, load_config

HERE = os.path.dirname(__file__)
SRC = os.path.join(HERE, "..", "src")


def env(**extra):
    e = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]),
         "OMP_WAIT_POLICY": "PASSIVE"}
    e.pop("AMPLIFICATION_SERVER", None)
    e.update(extra)
    return e


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("srv") / "s.sock")
    proc = subprocess.Popen([sys.executable, "-m", "amplification.server", "--socket", path], env=env(),
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not os.path.exists(path):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline, "the server did not start"
        time.sleep(0.1)
    yield path, proc
    proc.terminate()
    proc.wait(timeout=30)
    assert not os.path.exists(path), "the server leaves no socket behind"


def client(args, server_path, **kw):
    return subprocess.run([sys.executable, "-m", "amplification.server", *args], env=env(AMPLIFICATION_SERVER=server_path),
                          capture_output=True, text=True, timeout=300, **kw)


def config_file(tmp_path, name):
    cfg = load_config(os.path.join(HERE, "..", "config", "smoke.yaml"), overrides={
        "results_dir": str(tmp_path / name), "data_dir": str(tmp_path / "data"), "mlflow": {"enabled": False}})
    p = tmp_path / f"{name}.yaml"
    p.write_text(dump(cfg))
    return str(p), cfg


def test_stages_through_the_server_equal_the_plain_commands(server, tmp_path, capsys):
    """The plain command runs in this process (cli.main: what `amplification stage ...` runs,
    without six more torch imports)."""
    path, _ = server
    runs = {}
    for name in ("served", "plain"):
        cfg_path, cfg = config_file(tmp_path, name)
        if name == "served":
            r = client(["stage", "testset", "--config", cfg_path, "--task", "permutation"], path)
            assert r.returncode == 0, r.stderr
        for stage in ("sample", "decompose", "train_hprime", "amplify", "distill", "evaluate"):
            args = ["stage", stage, "--config", cfg_path, "--task", "permutation", "--method", "amplification",
                    "--seed", "0", "--iter", "0"]
            if name == "served":
                r = client(args, path)
                assert r.returncode == 0, r.stderr
                out = r.stdout
            else:
                capsys.readouterr()
                assert cli_main(args) == 0
                out = capsys.readouterr().out
            assert isinstance(json.loads(out.strip().splitlines()[-1]), dict)  # the job's stdout came back
        runs[name] = cfg
    a, b = (paths.iter_dir(runs[n]["results_dir"], "permutation", "amplification", 0, 0) for n in ("served", "plain"))
    for f in ("sample.npz", "transcripts.npz", "targets.npz"):
        x, y = np.load(os.path.join(a, f)), np.load(os.path.join(b, f))
        assert all(np.array_equal(x[k], y[k]) for k in x.files), f
    for f in ("model.pt", "hprime.pt"):
        assert open(os.path.join(a, f), "rb").read() == open(os.path.join(b, f), "rb").read(), f
    ma, mb = (stages.read_json(os.path.join(d, "metrics.json"))["metrics"] for d in (a, b))
    ma.pop("wall_time/cumulative"), mb.pop("wall_time/cumulative")
    assert ma == mb


def test_a_client_without_a_server_runs_the_command_itself(tmp_path):
    """No server at the socket: the client runs the job in its own process, same output."""
    args = ["tasks", "show", "union_find", "--nchars", "4", "--length", "1", "--size", "4", "--seed", "20"]
    r = client(args, str(tmp_path / "no-such.sock"))
    assert r.returncode == 0, r.stderr
    plain = subprocess.run([sys.executable, "-m", "amplification.cli", *args], env=env(), capture_output=True,
                           text=True, timeout=300)
    assert r.stdout == plain.stdout and "facts:" in r.stdout


def test_errors_and_exit_statuses_come_back(server, tmp_path):
    path, _ = server
    r = client(["stage", "sample", "--config", str(tmp_path / "missing.yaml"), "--task", "permutation",
                "--method", "supervised", "--seed", "0", "--iter", "0"], path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("amplification: error:")
    r = client(["no-such-command"], path)
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = client(["tasks", "list"], path)
    assert r.returncode == 0 and "permutation" in r.stdout


def test_the_working_directory_and_environment_are_the_jobs(server, tmp_path):
    path, _ = server
    cfg_path, _ = config_file(tmp_path, "rel")
    os.makedirs(tmp_path / "cwd")
    # a relative config path resolves against the client's directory, not the server's
    rel = os.path.relpath(cfg_path, tmp_path / "cwd")
    r = client(["stage", "testset", "--config", rel, "--task", "permutation"], path, cwd=str(tmp_path / "cwd"))
    assert r.returncode == 0, r.stderr


def test_a_cancelled_client_cancels_its_job(server, tmp_path):
    path, _ = server
    import socket

    with socket.socket() as s:  # a free port for a job that runs until it is stopped: the demonstration UI
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([sys.executable, "-m", "amplification.server", "demonstrate", "permutation", "--port", str(port),
                          "--out", str(tmp_path / "d.jsonl")], env=env(AMPLIFICATION_SERVER=path),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while True:  # wait until the job (the server's child) is up
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert p.poll() is None and time.time() < deadline, p.stderr.read().decode()
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    # the status is the child's: it got the signal, ended, and the server reaped it
    assert p.wait(timeout=30) == 128 + signal.SIGTERM
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the job still runs"


def test_the_server_exits_with_its_parent(tmp_path):
    path = str(tmp_path / "p.sock")
    # a parent that starts the server and exits at once: the server must notice and go
    parent = subprocess.run([sys.executable, "-c", (
        "import subprocess, sys, os; "
        f"p = subprocess.Popen([sys.executable, '-m', 'amplification.server', '--socket', {path!r}, "
        "'--parent', str(os.getpid())]); print(p.pid)")], env=env(), capture_output=True, text=True, timeout=60)
    pid = int(parent.stdout.strip())
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the server outlived its parent")
    assert not os.path.exists(path)
