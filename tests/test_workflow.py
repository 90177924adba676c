"""The Snakemake workflow and the DVC pipeline around it.

Every test runs in a fresh copy of the workflow under tmp_path. The DAG machinery (reruns,
--forcerun/--until, kill/resume, DVC) is tested with tests/fake_stage.py standing in for the stage
commands (AMPLIFICATION_CMD), so it runs in seconds; the smoke run of the real stages runs when the
stage commands exist (`amplification stage ...`).
"""
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
SNAKEMAKE = os.path.join(BIN, "snakemake")
COPY = ["Snakefile", "profiles", "workflow", "config", "src", "data/demonstrations", "tests/fake_stage.py",
        "dvc.yaml", "scripts/kill_resume_check.py"]
HAVE_STAGES = importlib.util.find_spec("amplification.commands.stages") is not None
needs_stages = pytest.mark.skipif(not HAVE_STAGES, reason="the stage commands (amplification stage ...) are not built yet")
SMOKE = ["--configfile", "config/smoke.yaml"]
AMP_I1 = "results-smoke/permutation/amplification/seed0/iter1/metrics.json"


def copy_workflow(dest) -> str:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for rel in COPY:
        src, dst = os.path.join(ROOT, rel), os.path.join(dest, rel)
        if not os.path.lexists(src):
            continue
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
        elif os.path.isdir(src):
            shutil.copytree(src, dst, ignore=ignore)
        else:
            shutil.copy2(src, dst)
    return str(dest)


@pytest.fixture
def wd(tmp_path):
    return copy_workflow(tmp_path / "wd")


def env_for(wd, fake=True, **extra):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{wd}/mlflow.db", "DVC_NO_ANALYTICS": "1",
           "PATH": BIN + os.pathsep + os.environ.get("PATH", ""), "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("AMPLIFICATION_CMD", None)
    if fake:
        env["AMPLIFICATION_CMD"] = f"{sys.executable} {os.path.join(wd, 'tests', 'fake_stage.py')}"
    env.update(extra)
    return env


def sm(wd, *args, fake=True, check=True, timeout=600, **extra):
    r = subprocess.run([SNAKEMAKE, *args], cwd=wd, env=env_for(wd, fake, **extra), capture_output=True,
                       text=True, timeout=timeout)
    if check and r.returncode:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


def job_counts(r) -> dict:
    """The 'Job stats' table of a (dry) run."""
    text = r.stdout + r.stderr
    m = re.search(r"Job stats:\njob\s+count\n[-\s]+\n(.*?)\n\s*total\s+(\d+)", text, re.S)
    if not m:
        return {}
    return {k: int(v) for k, v in (line.split() for line in m.group(1).strip().splitlines())}


def mtimes(wd, *dirs) -> dict:
    out = {}
    for d in dirs:
        for base, _, files in os.walk(os.path.join(wd, d)):
            for f in files:
                p = os.path.join(base, f)
                out[os.path.relpath(p, wd)] = os.stat(p).st_mtime_ns
    return out


def test_readme_quick_start_and_ci_agree():
    """README's two commands, and .ci/run runs the test one (it reads it from the README)."""
    readme = open(os.path.join(ROOT, "README.md")).read()
    install = "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[pipeline,test]'"
    assert f"\n{install} && snakemake --cores all\n" in readme
    assert f"\n{install} && python -m pytest\n" in readme
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    pattern = re.search(r'grep -m1 -E "(.+?)" README.md', ci).group(1).replace("\\.", ".")
    lines = [line for line in readme.splitlines() if re.match(pattern.replace(".venv", r"\.venv"), line)]
    assert lines == [f"{install} && python -m pytest"]


# ---- the DAG, without running anything ------------------------------------------------------------
def expected_counts(cfg) -> dict:
    from amplification.hparams import iterations

    runs = len(cfg["tasks"]) * len(cfg["methods"]) * len(cfg["seeds"])
    # iterations of one run of each task, summed over tasks and seeds (a task may set its own)
    n = sum(iterations(cfg, t) for t in cfg["tasks"]) * len(cfg["seeds"])
    amp = n * ("amplification" in cfg["methods"])
    per_method = n * len(cfg["methods"])
    counts = {"testset": len(cfg["tasks"]), "sample": per_method, "decompose": amp, "train_hprime": amp,
              "amplify": per_method, "distill": per_method, "evaluate": per_method, "summary": 1, "figures": 1, "all": 1}
    if cfg["mlflow"]["enabled"] and cfg["mlflow"]["log"] == "run":
        counts["track"] = runs  # one MLflow job per run instead of one per evaluate
    return counts


def test_dry_run_default_config(wd):
    from amplification.config import load_config

    r = sm(wd, "-n", "--quiet", "rules")
    assert "Using workflow specific profile profiles/default" in r.stderr  # the default profile applies
    cfg = load_config(os.path.join(wd, "config", "config.yaml"))
    assert len(cfg["tasks"]) == 5 and cfg["methods"] == ["amplification", "supervised"]
    assert job_counts(r) == expected_counts(cfg)


def test_dry_run_paper_config(wd):
    # the full paper config (100 iterations x 3 seeds, 15,008 jobs) takes about a minute to plan;
    # the same config with fewer iterations checks the same rules
    from amplification.config import load_config

    r = sm(wd, "-n", "--quiet", "rules", "--configfile", "config/paper.yaml", "--config", "iterations=3")
    cfg = load_config(os.path.join(wd, "config", "paper.yaml"), ["iterations=3"])
    assert len(cfg["seeds"]) == 3 and job_counts(r) == expected_counts(cfg)
    r = sm(wd, "-n", "-p", "--configfile", "config/paper.yaml", "--config", "iterations=2", "seeds=[0]",
           "tasks=[wildcard]", "methods=[amplification]")
    text = r.stdout + r.stderr
    assert "resources: tmpdir=/tmp, gpu=1" in text  # device cuda: distill takes the GPU
    assert re.search(r"stage distill --config \S+ --task wildcard --method amplification --seed 0 --iter 1 > \S+distill.log 2>&1", text)


def test_a_task_can_run_more_iterations_than_the_study(wd):
    """per_task.<t>.schedule.iterations: that task's runs (both methods) have their own length."""
    from amplification.config import load_config

    over = ["iterations=2", "tasks=[permutation, wildcard]", "per_task={permutation: {schedule: {iterations: 3}}}"]
    r = sm(wd, "-n", "-p", *SMOKE, "--config", *over)
    cfg = load_config(os.path.join(wd, "config", "smoke.yaml"), over)
    assert job_counts(r) == expected_counts(cfg) and job_counts(r)["distill"] == 2 * (3 + 2)
    text = r.stdout
    assert "permutation/supervised/seed0/iter2/metrics.json" in text
    assert "wildcard/supervised/seed0/iter1/metrics.json" in text
    assert "wildcard/supervised/seed0/iter2/" not in text  # the other task stops at the study's 2


def test_iteration_chain_and_logs(wd):
    """Iteration i reads i-1; every job has a log; supervised runs have no H stages."""
    r = sm(wd, "-n", "-p", *SMOKE)
    text = r.stdout
    jobs = re.findall(r"rule (\w+):\n(.*?)\n\n", text, re.S)
    assert {name for name, _ in jobs} == {"testset", "sample", "decompose", "train_hprime", "amplify", "distill",
                                           "evaluate", "summary", "figures", "all"}
    for name, body in jobs:
        if name != "all":
            assert "log: logs/smoke/" in body, name
        if name in ("decompose", "train_hprime"):
            assert "method=amplification" in body
    distill1 = next(b for n, b in jobs if n == "distill" and "amplification/seed0/iter1/model.pt" in b.split("output:")[1])
    assert "iter0/model.pt" in distill1.split("output:")[0]  # X_1 starts from X_0
    sample1 = next(b for n, b in jobs if n == "sample" and "iter1/sample.npz" in b.split("output:")[1])
    assert "iter0/amplify.json" in sample1  # the curriculum reads the previous agreement


def test_lint_only_wants_conda(wd):
    r = sm(wd, "--lint", check=False)
    titles = {line.strip()[2:] for line in (r.stdout + r.stderr).splitlines() if line.startswith("    * ")}
    assert titles == {"Specify a conda environment or container for each rule.:"}, titles


@pytest.mark.parametrize("args, key", [
    (["--config", "foo=1"], "config: unknown key 'foo'"),
    (["--config", "iterations=two"], "config: iterations: 'two' is not of type 'integer'"),
    (["--config", "tasks=[permutation, sorting]"], "config: tasks[1]: 'sorting' is not one of"),
    (["--configfile", "bad.yaml"], "config: defaults.distill.lr: 'fast' is not of type 'number'"),
    (["--configfile", "badtask.yaml"], "config: unknown key 'per_task.sorting'"),
])
def test_invalid_config_fails_before_any_job(wd, args, key):
    with open(os.path.join(wd, "bad.yaml"), "w") as fh:
        fh.write("defaults:\n  distill: {lr: fast}\n")
    with open(os.path.join(wd, "badtask.yaml"), "w") as fh:
        fh.write("per_task:\n  sorting: {}\n")
    r = sm(wd, "--cores", "1", *args, check=False)
    assert r.returncode != 0
    assert key in r.stderr, r.stderr[-2000:]
    assert "Building DAG" not in r.stdout + r.stderr
    for d in ("results", "logs", "data/testsets"):
        assert not os.path.exists(os.path.join(wd, d)), d


# ---- running the DAG with the fake stages ---------------------------------------------------------
def test_fake_study_rerun_semantics(wd):
    """Whole DAG; a second run does nothing; --forcerun distill --until reruns only what it should;
    a changed setting of one task reruns exactly that task. (MLflow off: its logging is
    test_fake_study_mlflow_*'s; here it would cost ~2 s per evaluate job.)"""
    more = ["--config", "tasks=[permutation, wildcard]", "mlflow={enabled: false}"]
    r = sm(wd, "--cores", "2", *SMOKE, *more)
    for p in ["results-smoke/summary.csv", "results-smoke/metrics.csv", "results-smoke/summary.json",
              "results-smoke/figures/accuracy_vs_steps.png", AMP_I1, "data-smoke/testsets/wildcard.npz",
              "logs/smoke/permutation/amplification/seed0/iter1/distill.log"]:
        assert os.path.exists(os.path.join(wd, p)), p
    assert "fake stage distill" in open(os.path.join(wd, "logs/smoke/permutation/amplification/seed0/iter1/distill.log")).read()
    assert not os.path.exists(os.path.join(wd, "mlflow.db"))

    r = sm(wd, "--cores", "2", *SMOKE, *more)
    assert "Nothing to be done" in r.stdout + r.stderr

    before = mtimes(wd, "results-smoke", "data-smoke")
    r = sm(wd, "--cores", "2", *SMOKE, *more, "--forcerun", "distill", "--until", AMP_I1)
    assert job_counts(r) == {"distill": 2, "train_hprime": 1, "decompose": 1, "amplify": 1, "evaluate": 2}
    changed = {p for p, m in mtimes(wd, "results-smoke", "data-smoke").items() if before.get(p) != m}
    d = "results-smoke/permutation/amplification/seed0/"
    assert changed == {d + f for f in ["iter0/model.pt", "iter0/distill.json", "iter0/metrics.json",
                                       "iter1/transcripts.npz", "iter1/decompose.json", "iter1/hprime.pt",
                                       "iter1/hprime.json", "iter1/targets.npz", "iter1/amplify.json",
                                       "iter1/model.pt", "iter1/distill.json", "iter1/metrics.json"]}
    # the fake stages are deterministic, so the rerun wrote the same metrics.json bytes: Snakemake
    # compares the recorded checksums of small inputs (< 1 MB) and has nothing more to do
    r = sm(wd, "-n", *SMOKE, *more)
    assert "Nothing to be done" in r.stdout + r.stderr

    # params trigger: a changed setting of wildcard reruns wildcard's jobs only
    r = sm(wd, "-n", "--quiet", "rules", *SMOKE, *more, "per_task={wildcard: {distill: {steps: 5}}}")
    assert job_counts(r) == {"sample": 4, "decompose": 2, "train_hprime": 2, "amplify": 4, "distill": 4,
                             "evaluate": 4, "summary": 1, "figures": 1, "all": 1}  # not the test set
    # while a change of threads or MLflow settings (per-iteration logging: no new jobs) reruns nothing
    r = sm(wd, "-n", *SMOKE, "--config", "tasks=[permutation, wildcard]", "threads=2",
           "mlflow={enabled: true, log: iteration}")
    assert "Nothing to be done" in r.stdout + r.stderr


def test_fake_study_mlflow_logging(wd):
    """mlflow.log: run: evaluate logs nothing; one track job per run logs all its iterations.
    mlflow.log: iteration: an evaluate job logs its iteration into the same MLflow run."""
    r = sm(wd, "--cores", "2", *SMOKE, "--config", "mlflow={log: run}")
    assert job_counts(r)["track"] == 2
    for method in ("amplification", "supervised"):
        with open(os.path.join(wd, f"results-smoke/permutation/{method}/seed0/mlflow.json")) as fh:
            marker = json.load(fh)
        assert marker["logged"] == 2 and marker["failed"] == 0 and marker["method"] == method
        assert "MLflow" not in open(os.path.join(wd, f"logs/smoke/permutation/{method}/seed0/iter1/evaluate.log")).read()
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=f"sqlite:///{wd}/mlflow.db")
    exp = c.get_experiment_by_name("iterated-amplification")
    runs = c.search_runs([exp.experiment_id], "tags.level = 'iteration'")
    assert sorted((r.data.tags["method"], r.data.tags["iteration"]) for r in runs) == [
        (m, i) for m in ("amplification", "supervised") for i in ("0", "1")]
    assert all("accuracy/teacher/greedy" in r.data.metrics for r in runs)
    # mlflow.log: iteration: the evaluate job logs its own iteration (its run, deleted here, comes back)
    [it0] = [r.info.run_id for r in runs if r.data.tags["method"] == "amplification" and r.data.tags["iteration"] == "0"]
    c.delete_run(it0)
    r = sm(wd, "--cores", "2", *SMOKE, "--config", "mlflow={log: iteration}", "--forcerun", "evaluate",
           "--until", AMP_I1.replace("iter1", "iter0"))
    assert job_counts(r) == {"evaluate": 1}
    again = {(r.data.tags["method"], r.data.tags["iteration"]): r for r in
             c.search_runs([exp.experiment_id], "tags.level = 'iteration'")}
    assert len(again) == 4 and again["amplification", "0"].info.run_id != it0
    assert "accuracy/teacher/greedy" in again["amplification", "0"].data.metrics
    # a tracking server that is down: the track jobs warn, the study still completes
    r = sm(wd, "--cores", "2", *SMOKE, "--config", "mlflow={log: run}", "--forcerun", "track",
           MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    with open(os.path.join(wd, "results-smoke/permutation/supervised/seed0/mlflow.json")) as fh:
        assert json.load(fh)["failed"] == 2


def test_fake_kill_resume(wd):
    """SIGKILL in the middle of a distill, unlock, rerun: no finished stage reruns, same metrics."""
    r = subprocess.run([sys.executable, os.path.join(wd, "scripts", "kill_resume_check.py"), "--cores", "2",
                        "--no-mlflow"],
                       cwd=wd, env=env_for(wd, FAKE_STAGE_SLEEP="distill:1"), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "ok: no finished stage ran again" in r.stdout and "PASS" in r.stdout


@pytest.mark.slow
def test_dvc_pipeline(wd, tmp_path):
    """dvc repro / second repro / exp run -S / metrics diff / plots diff / push, clone, pull, touch."""
    pytest.importorskip("dvc")
    env = env_for(wd)
    # the DVC pipeline runs config/config.yaml: make it the (fake) smoke study, in results/ and data/
    with open(os.path.join(wd, "config", "smoke.yaml")) as fh:
        text = fh.read()
    text = re.sub(r"(?m)^results_dir:.*$", "results_dir: results", text)
    text = re.sub(r"(?m)^data_dir:.*$", "data_dir: data", text)
    with open(os.path.join(wd, "config", "config.yaml"), "w") as fh:
        fh.write(text + "mlflow: {enabled: false}\n")
    with open(os.path.join(wd, ".gitignore"), "w") as fh:
        fh.write("/results/\n/logs/\n/.snakemake/\n/mlflow.db\n__pycache__/\n/plots/\n")
    with open(os.path.join(wd, ".dvcignore"), "w") as fh:
        fh.write("__pycache__/\n*.pyc\n")

    def run(*cmd, cwd=wd, check=True):
        r = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        if check and r.returncode:
            raise AssertionError(f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        return r.stdout + r.stderr

    run("git", "init", "-q")
    run("git", "config", "user.email", "t@example.com")
    run("git", "config", "user.name", "t")
    run("dvc", "init", "-q")
    run("dvc", "remote", "add", "-d", "local", str(tmp_path / "remote"))
    run("git", "add", "-A")
    run("git", "commit", "-qm", "init")
    out = run("dvc", "repro")
    assert "Running stage 'testsets'" in out and "Running stage 'study'" in out
    assert os.path.exists(os.path.join(wd, "results", "summary.json"))
    lock = open(os.path.join(wd, "dvc.lock")).read()
    assert "data/testsets" in lock and "data/demonstrations" in lock
    run("git", "add", "-A")
    run("git", "commit", "-qm", "run")
    assert "didn't change" in run("dvc", "repro")
    assert "permutation.amplification.final_accuracy" in run("dvc", "metrics", "show")

    out = run("dvc", "exp", "run", "-S", "config/config.yaml:iterations=3")
    assert "Ran experiment" in out
    diff = run("dvc", "metrics", "diff")
    assert "permutation.amplification.iterations" in diff and "2.0" in diff and "3.0" in diff
    run("dvc", "plots", "diff", "-o", "plots")
    assert os.path.exists(os.path.join(wd, "plots", "index.html"))
    run("git", "checkout", "config/config.yaml", "dvc.lock")
    run("dvc", "checkout", "--force")

    # a changed generator is a changed hash: the testsets stage is stale
    with open(os.path.join(wd, "src/amplification/tasks/permutation.py"), "a") as fh:
        fh.write("\n# changed\n")
    assert "src/amplification/tasks" in run("dvc", "status")
    run("git", "checkout", "src/amplification/tasks/permutation.py")

    # push, then a fresh clone pulls the results; Snakemake then needs --touch once (lost mtimes)
    run("dvc", "push")
    clone = str(tmp_path / "clone")
    run("git", "clone", "-q", wd, clone)
    for rel in ("tests/fake_stage.py",):  # untracked helpers the fake run needs
        os.makedirs(os.path.dirname(os.path.join(clone, rel)), exist_ok=True)
        shutil.copy2(os.path.join(wd, rel), os.path.join(clone, rel))
    run("dvc", "pull", cwd=clone)
    assert os.path.exists(os.path.join(clone, "results", "summary.json"))
    cenv = env_for(clone)
    r = subprocess.run([SNAKEMAKE, "--cores", "1", "--touch"], cwd=clone, env=cenv, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([SNAKEMAKE, "-n"], cwd=clone, env=cenv, capture_output=True, text=True)
    assert "Nothing to be done" in r.stdout + r.stderr, r.stdout[-3000:]
    assert "didn't change" in run("dvc", "repro", cwd=clone) or "up to date" in run("dvc", "status", cwd=clone)


# ---- the real stages ------------------------------------------------------------------------------
@needs_stages
def test_smoke_study_real_stages(wd):
    """The whole DAG of config/smoke.yaml with the real stage commands (the CI smoke run)."""
    sm(wd, "--cores", "2", *SMOKE, fake=False, timeout=900)
    rec = json.load(open(os.path.join(wd, AMP_I1)))
    assert rec["task"] == "permutation" and rec["iteration"] == 1 and rec["config"] == "smoke"
    for k in ("accuracy/teacher/greedy", "accuracy/targets", "h_calls/cumulative", "steps/cumulative"):
        assert k in rec["metrics"], k
    assert rec["metrics"]["h_calls/cumulative"] > 0
    sup = json.load(open(os.path.join(wd, AMP_I1.replace("amplification", "supervised"))))
    assert sup["metrics"]["h_calls/cumulative"] == 0
    for f in ("summary.csv", "metrics.csv", "summary.json", "figures/accuracy_vs_steps.png"):
        assert os.path.exists(os.path.join(wd, "results-smoke", f)), f
    r = sm(wd, "--cores", "2", *SMOKE, fake=False)
    assert "Nothing to be done" in r.stdout + r.stderr
    r = sm(wd, "-n", "--quiet", "rules", *SMOKE, "--forcerun", "distill", "--until", AMP_I1, fake=False)
    assert job_counts(r) == {"distill": 2, "train_hprime": 1, "decompose": 1, "amplify": 1, "evaluate": 2}
