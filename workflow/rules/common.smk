# Config, helpers and wildcard constraints shared by the rules.
import hashlib
import json
import re
import shlex

from amplification import hparams, paths
from amplification.server import ENV as SERVER_ENV
from amplification.tracking import logs_per_run
from amplification.config import ConfigError, dump, load_config, retype, save_resolved, task_settings


def _load_study_config():
    """config/config.yaml, or the --configfile files INSTEAD of it, then --config key=value on top;
    validated against workflow/schemas/config.schema.yaml before any job is scheduled."""
    files = [str(p) for p in workflow.overwrite_configfiles] or ["config/config.yaml"]
    overrides = retype(dict(getattr(workflow.config_settings, "config", None) or {}))
    try:
        return load_config(files, overrides)
    except ConfigError as e:
        raise WorkflowError(f"{e} (config files: {', '.join(files)})") from None


CFG = _load_study_config()
config.clear()
config.update(CFG)

RESULTS = CFG["results_dir"]
DATA = CFG["data_dir"]
TASKS, METHODS, SEEDS = CFG["tasks"], CFG["methods"], CFG["seeds"]
ITERS = {t: hparams.iterations(CFG, t) for t in TASKS}  # per task: its schedule.iterations or the study's
LOGS = os.path.join("logs", CFG["name"])

# The jobs read the resolved config (defaults filled in, overrides applied) from a file named by
# its content: it is never rewritten under a running job, and another run's overrides cannot change
# what a running study reads. It is written when jobs are about to run (a dry run writes nothing).
RESOLVED = os.path.join(RESULTS, "configs", f"{CFG['name']}-{hashlib.sha1(dump(CFG).encode()).hexdigest()[:12]}.yaml")


# the package's command line, run by this interpreter (AMPLIFICATION_CMD replaces it, e.g. in tests);
# with stage_server, the light client of amplification.server, which runs the same command in a
# process forked from one that imported torch once (and runs it itself when no server answers)
AMP = os.environ.get("AMPLIFICATION_CMD") or (
    f"{shlex.quote(sys.executable)} -m amplification.{'server' if CFG['stage_server'] else 'cli'}")
_SERVER = {}


def _start_stage_server():
    """Start the stage server for this Snakemake process; the jobs find it through the environment."""
    import subprocess
    import tempfile
    import time

    path = os.path.join(tempfile.mkdtemp(prefix="amp-"), "stages.sock")  # short: Unix sockets allow ~100 bytes
    _SERVER["proc"] = subprocess.Popen(
        [sys.executable, "-m", "amplification.server", "--socket", path, "--parent", str(os.getpid())],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(LOGS, "stage_server.log"), "ab"))
    _SERVER["path"] = path
    os.environ.update({SERVER_ENV: path})  # (update, not [...]: the linter reads [...] as a use)
    deadline = time.time() + 60  # its imports take a few seconds; jobs that start earlier run alone
    while not os.path.exists(path) and _SERVER["proc"].poll() is None and time.time() < deadline:
        time.sleep(0.1)


def _stop_stage_server():
    proc = _SERVER.pop("proc", None)
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except Exception:
            proc.kill()
    if "path" in _SERVER:
        import shutil

        shutil.rmtree(os.path.dirname(_SERVER.pop("path")), ignore_errors=True)
    os.environ.pop(SERVER_ENV, None)


onstart:
    save_resolved(CFG, RESOLVED)
    if CFG["stage_server"] and not os.environ.get("AMPLIFICATION_CMD"):
        os.makedirs(LOGS, exist_ok=True)
        _start_stage_server()


onsuccess:
    _stop_stage_server()


onerror:
    _stop_stage_server()

wildcard_constraints:
    task="|".join(map(re.escape, TASKS)),
    method="|".join(map(re.escape, METHODS)),
    seed=r"\d+",
    i=r"\d+",


def settings(task):
    """One task's settings (defaults < per_task) as stable JSON: a rule parameter, so that with
    the `params` rerun trigger a changed setting reruns exactly that task's jobs."""
    return json.dumps(task_settings(CFG, task), sort_keys=True)


def stage_outputs(stage):
    """The named outputs of a stage as wildcard patterns (paths.py is the one place of the layout)."""
    return paths.stage_outputs(stage, RESULTS, "{task}", "{method}", "{seed}", "{i}")


def stage_inputs(stage):
    """Input function: the named inputs of a stage at iteration i (including iteration i-1's files)."""

    def inputs(wildcards):
        return paths.stage_inputs(
            stage, RESULTS, wildcards.task, wildcards.method, int(wildcards.seed), int(wildcards.i),
            replay_iters=task_settings(CFG, wildcards.task)["distill"]["replay_iters"],
            data_dir=DATA, human=CFG["human"], demonstrations_dir=CFG["demonstrations_dir"],
        )

    return inputs


def stage_log(stage):
    return os.path.join(LOGS, "{task}", "{method}", "seed{seed}", "iter{i}", f"{stage}.log")


def stage_cmd(stage):
    """The thin package command of an iteration stage; its stdout and stderr go to the job's log."""
    return (f"{AMP} stage {stage} --config {shlex.quote(RESOLVED)} --task {{wildcards.task}} "
            f"--method {{wildcards.method}} --seed {{wildcards.seed}} --iter {{wildcards.i}} > {{log}} 2>&1")


def metrics_file(task, method, seed, i):
    return paths.stage_outputs("evaluate", RESULTS, task, method, seed, i)["metrics"]


def all_metrics(wildcards=None):
    """Every iteration's metrics.json of the study."""
    return [metrics_file(t, m, s, i) for t in TASKS for m in METHODS for s in SEEDS for i in range(ITERS[t])]


def final_metrics(wildcards=None):
    return [metrics_file(t, m, s, ITERS[t] - 1) for t in TASKS for m in METHODS for s in SEEDS]


def track_markers(wildcards=None):
    """With mlflow.log: run, one track job per run logs its iterations to MLflow; else none."""
    if not logs_per_run(CFG):
        return []
    return [paths.track_marker(RESULTS, t, m, s) for t in TASKS for m in METHODS for s in SEEDS]
