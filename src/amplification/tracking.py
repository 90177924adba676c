"""MLflow tracking of the study: one parent run per (config, task, method, seed), one nested run per
iteration. The metrics.json files are the source of truth; MLflow is a view of them.

- `log_iteration(cfg, record)` is called by the evaluate stage after it wrote metrics.json. Any
  tracking error (server down, locked database, ...) becomes one warning on stderr, never an
  exception: the study goes on, and `amplification study sync-mlflow` re-logs later.
- Runs are found again by their tags (`run_key`, `level`, `iteration`), so logging the same
  iteration twice updates its run instead of adding one; metric points carry the metrics.json
  file's modification time as their timestamp, so re-logging an unchanged file adds nothing.
- Where: `MLFLOW_TRACKING_URI` if set, else the config's mlflow.tracking_uri, else
  sqlite:///<repository root>/mlflow.db (the root: the nearest folder above the working directory
  that holds the Snakefile).

`import mlflow` costs about 1.4 s, so it happens only inside the functions that log.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time

from . import hparams, paths

# a tracking server that is down must cost seconds, not the minutes of MLflow's default retries
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}

METRIC_PARAMS = ("size", "steps", "examples", "h_calls")  # the record's "params" logged per iteration


def warn(msg: str) -> None:
    print(f"amplification: warning: {msg}", file=sys.stderr, flush=True)


def repo_root(start: str | None = None) -> str:
    d = os.path.abspath(start or os.getcwd())
    while True:
        if os.path.exists(os.path.join(d, "Snakefile")):
            return d
        parent = os.path.dirname(d)
        if parent == d:
            return os.path.abspath(start or os.getcwd())
        d = parent


def tracking_uri(cfg: dict) -> str:
    """MLFLOW_TRACKING_URI wins, then the config's tracking_uri, then the repository's SQLite file."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    uri = (cfg.get("mlflow") or {}).get("tracking_uri")
    return uri or f"sqlite:///{os.path.join(repo_root(), 'mlflow.db')}"


def git_commit(cwd: str | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_key(record: dict) -> str:
    return f"{record.get('config', 'default')}/{record['task']}/{record['method']}/seed{record['seed']}"


def metrics_path(cfg: dict, task: str, method: str, seed: int, i: int) -> str:
    return paths.stage_outputs("evaluate", cfg.get("results_dir", "results"), task, method, seed, i)["metrics"]


def _as_float(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f


class Tracker:
    """One MLflow client with its experiment, parent runs and git commit cached."""

    def __init__(self, cfg: dict):
        for k, v in _HTTP_DEFAULTS.items():
            os.environ.setdefault(k, v)
        from mlflow.tracking import MlflowClient

        self.cfg = cfg
        self.uri = tracking_uri(cfg)
        self.client = MlflowClient(tracking_uri=self.uri)
        self.experiment_id = self._experiment((cfg.get("mlflow") or {}).get("experiment", "iterated-amplification"))
        self.commit = git_commit()
        self._parents: dict[str, str] = {}

    def _experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        try:
            return self.client.create_experiment(name)
        except Exception:  # created by a concurrent job in the meantime
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def _find(self, filter_string: str):
        runs = self.client.search_runs([self.experiment_id], filter_string=filter_string, max_results=10,
                                       order_by=["attributes.start_time ASC"])
        return runs[0] if runs else None

    def _tags(self, record: dict, level: str, **extra) -> dict:
        tags = {
            "run_key": run_key(record),
            "level": level,
            "config": str(record.get("config", self.cfg.get("name", "default"))),
            "task": record["task"],
            "method": record["method"],
            "seed": str(record["seed"]),
            "git_commit": self.commit,
            "mlflow.source.git.commit": self.commit,
        }
        tags.update({k: str(v) for k, v in extra.items()})
        return tags

    def parent_run(self, record: dict) -> str:
        key = run_key(record)
        if key in self._parents:
            return self._parents[key]
        found = self._find(f"tags.run_key = '{key}' and tags.level = 'parent'")
        if found is not None:
            run_id = found.info.run_id
        else:
            name = f"{record['task']}/{record['method']}/seed{record['seed']}"
            run_id = self.client.create_run(self.experiment_id, run_name=name,
                                            tags=self._tags(record, "parent")).info.run_id
        self._parents[key] = run_id
        return run_id

    def iteration_run(self, record: dict, parent_id: str, params: dict) -> str:
        """The nested run of this iteration: found again by its tags; replaced when its logged
        params differ (MLflow params are immutable), e.g. after a config change."""
        it = int(record["iteration"])
        found = self._find(f"tags.run_key = '{run_key(record)}' and tags.level = 'iteration' "
                           f"and tags.iteration = '{it}'")
        if found is not None:
            old = found.data.params
            if all(old.get(k, v) == v for k, v in params.items()):
                return found.info.run_id
            self.client.delete_run(found.info.run_id)
        tags = self._tags(record, "iteration", iteration=it)
        tags["mlflow.parentRunId"] = parent_id
        return self.client.create_run(self.experiment_id, run_name=f"iter{it}", tags=tags).info.run_id

    def log(self, record: dict, timestamp_ms: int | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        if timestamp_ms is None:
            timestamp_ms = int(time.time() * 1000)
        it = int(record["iteration"])
        rp = record.get("params") or {}
        params = {"iteration": str(it), **{k: str(rp[k]) for k in METRIC_PARAMS if k in rp}}
        metrics = {}
        for k, v in (record.get("metrics") or {}).items():
            f = _as_float(v)
            if f is not None:
                metrics[k] = f
        parent = self.parent_run(record)
        child = self.iteration_run(record, parent, params)
        points = [Metric(k, v, timestamp_ms, it) for k, v in sorted(metrics.items())]
        self.client.log_batch(child, metrics=points, params=[Param(k, v) for k, v in params.items()],
                              tags=[RunTag("git_commit", self.commit),  # and what the numbers were computed on
                                    *(RunTag(f"machine.{k}", str(v)) for k, v in (record.get("machine") or {}).items())])
        # the parent holds every iteration's metrics as a history over steps = iterations
        self.client.log_batch(parent, metrics=points)
        self.client.set_terminated(child, "FINISHED")
        self.client.set_terminated(parent, "FINISHED")


@contextlib.contextmanager
def store_lock(uri: str):
    """Serialise the jobs that write one SQLite store: two of them creating a fresh database at
    once race in MLflow's schema migration. (A server does its own locking: no-op there.)"""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    path = uri[len("sqlite:///"):].split("?")[0] + ".lock"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _timestamp(cfg: dict, record: dict) -> int | None:
    try:
        p = metrics_path(cfg, record["task"], record["method"], int(record["seed"]), int(record["iteration"]))
        return int(os.stat(p).st_mtime * 1000)
    except (OSError, KeyError, ValueError, TypeError):
        return None


def enabled(cfg: dict) -> bool:
    return bool((cfg.get("mlflow") or {}).get("enabled", True))


def logs_each_iteration(cfg: dict) -> bool:
    """mlflow.log: `iteration` (evaluate logs live) or `run` (one track job per run logs it all)."""
    return enabled(cfg) and (cfg.get("mlflow") or {}).get("log", "iteration") == "iteration"


def logs_per_run(cfg: dict) -> bool:
    """mlflow.log: run: the track rule (one job per run) logs, the evaluate jobs do not."""
    return enabled(cfg) and not logs_each_iteration(cfg)


def log_iteration(cfg: dict, record: dict, retries: int = 1) -> bool:
    """Log one iteration's metrics record (the content of its metrics.json) to MLflow.
    A no-op unless mlflow is enabled with `log: iteration`. Never raises: returns whether it logged."""
    if not logs_each_iteration(cfg):
        return False
    last = None
    for attempt in range(retries + 1):
        try:
            with store_lock(tracking_uri(cfg)):
                Tracker(cfg).log(record, _timestamp(cfg, record))
            return True
        except Exception as e:  # noqa: BLE001 - tracking must never stop the study
            last = e
            if attempt < retries:
                time.sleep(1.0 + attempt)
    warn(f"MLflow tracking failed ({type(last).__name__}: {_first_line(last)}); the metrics are safe in "
         f"metrics.json; re-log them later with `amplification study sync-mlflow --config <config>`")
    return False


def iter_records(cfg: dict, task: str | None = None, method: str | None = None, seed: int | None = None):
    """(path, record) of every existing metrics.json of the configured study, in run order;
    task, method, seed (when given) select one run's or a few runs' records."""
    tasks = [task] if task is not None else cfg["tasks"]
    methods = [method] if method is not None else cfg["methods"]
    seeds = [seed] if seed is not None else cfg["seeds"]
    for task in tasks:
        for method in methods:
            for seed in seeds:
                for i in range(hparams.iterations(cfg, task)):
                    p = metrics_path(cfg, task, method, seed, i)
                    if not os.path.exists(p):
                        continue
                    with open(p) as fh:
                        yield p, json.load(fh)


def sync(cfg: dict, **select) -> tuple[int, int]:
    """Re-log every metrics.json of the study (or of the runs `select`ed by task, method, seed)
    into MLflow (idempotent). Returns (logged, failed); failures are warnings."""
    uri = tracking_uri(cfg)
    with store_lock(uri):
        try:
            tracker = Tracker(cfg)
        except Exception as e:  # noqa: BLE001
            warn(f"MLflow unreachable at {uri} ({type(e).__name__}: {_first_line(e)})")
            return 0, sum(1 for _ in iter_records(cfg, **select))
        ok = failed = 0
        for p, rec in iter_records(cfg, **select):
            try:
                tracker.log(rec, int(os.stat(p).st_mtime * 1000))
                ok += 1
            except Exception as e:  # noqa: BLE001
                failed += 1
                warn(f"MLflow: could not log {p} ({type(e).__name__}: {_first_line(e)})")
    return ok, failed


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""
