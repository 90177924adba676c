#!/usr/bin/env python
"""Kill the study with SIGKILL in the middle of a distill stage, rerun it, and check that
(1) no stage that had finished runs again and (2) the final metrics equal those of an
uninterrupted run (CPU, deterministic; wall times excluded). The resume is what README.md says:
`snakemake --unlock` (a killed Snakemake leaves its lock), then the same `snakemake` command.

    python scripts/kill_resume_check.py                          # the smoke config, real stages
    python scripts/kill_resume_check.py --config config/smoke.yaml --cores 2 --keep

Both runs happen in fresh copies of the workflow under a temporary folder (the repository's own
results are not touched). Exit status 0 when both checks hold. AMPLIFICATION_CMD, if set, replaces
the stage command (tests use a fake one).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COPY = ["Snakefile", "profiles", "workflow", "config", "src", "data/demonstrations", "tests/fake_stage.py"]
SNAKEMAKE = os.path.join(os.path.dirname(sys.executable), "snakemake")


def copy_workflow(dest: str) -> str:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for rel in COPY:
        src = os.path.join(ROOT, rel)
        if not os.path.exists(src):
            continue
        dst = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.islink(src):  # profiles -> workflow/profiles
            os.symlink(os.readlink(src), dst)
        elif os.path.isdir(src):
            shutil.copytree(src, dst, ignore=ignore)
        else:
            shutil.copy2(src, dst)
    return dest


def load_cfg(wd: str, config: str) -> dict:
    sys.path.insert(0, os.path.join(ROOT, "src"))
    from amplification.config import load_config

    return load_config(os.path.join(wd, config))


def outputs(wd: str, cfg: dict) -> dict:
    """path -> mtime_ns of every file the study wrote (results and test sets)."""
    found = {}
    for base in (cfg["results_dir"], cfg["data_dir"]):
        for p in glob.glob(os.path.join(wd, base, "**", "*"), recursive=True):
            if os.path.isfile(p) and "/configs/" not in p:
                found[os.path.relpath(p, wd)] = os.stat(p).st_mtime_ns
    return found


def final_metrics(wd: str, cfg: dict) -> dict:
    out = {}
    for p in sorted(glob.glob(os.path.join(wd, cfg["results_dir"], "*", "*", "seed*", "iter*", "metrics.json"))):
        with open(p) as fh:
            rec = json.load(fh)
        rec["metrics"] = {k: v for k, v in rec["metrics"].items() if not k.startswith("wall_time")}
        out[os.path.relpath(p, os.path.join(wd, cfg["results_dir"]))] = rec
    return out


def env_for(wd: str) -> dict:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{wd}/mlflow.db", "OMP_WAIT_POLICY": "PASSIVE"}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def base_cmd(args) -> list[str]:
    cmd = [SNAKEMAKE, "--cores", str(args.cores), "--configfile", args.config]
    return cmd + (["--config", "mlflow={enabled: false}"] if args.no_mlflow else [])


def run(wd: str, args, extra=()) -> subprocess.CompletedProcess:
    cmd = [*base_cmd(args), *extra]
    return subprocess.run(cmd, cwd=wd, env=env_for(wd), capture_output=True, text=True, timeout=args.timeout)


def incomplete_outputs(wd: str) -> set[str]:
    """Outputs Snakemake had marked incomplete (jobs it had not seen finish) when it was killed."""
    from base64 import urlsafe_b64decode

    base = os.path.join(wd, ".snakemake", "incomplete")
    found = set()
    for d, _, files in os.walk(base):
        for f in files:
            if f == "migration_underway":
                continue
            parts = os.path.relpath(os.path.join(d, f), base).split(os.sep)
            try:
                found.add(urlsafe_b64decode("".join(p.lstrip("@") for p in parts)).decode())
            except ValueError:
                pass
    return found


def distill_in_progress(wd: str, cfg: dict) -> list[str]:
    """Distill jobs that have started (their log exists) and not finished (no model.pt yet)."""
    busy = []
    for log in glob.glob(os.path.join(wd, "logs", cfg["name"], "*", "*", "seed*", "iter*", "distill.log")):
        rel = os.path.relpath(os.path.dirname(log), os.path.join(wd, "logs", cfg["name"]))
        if not os.path.exists(os.path.join(wd, cfg["results_dir"], rel, "model.pt")):
            busy.append(rel)
    return busy


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--config", default="config/smoke.yaml")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per snakemake run")
    ap.add_argument("--skip-distills", type=int, default=1,
                    help="let this many distill jobs finish before killing inside the next one")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders")
    ap.add_argument("--no-mlflow", action="store_true", help="run with mlflow.enabled false (faster)")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="kill-resume-")
    ok = True
    try:
        ref, victim = copy_workflow(os.path.join(tmp, "uninterrupted")), copy_workflow(os.path.join(tmp, "killed"))
        cfg = load_cfg(ref, args.config)

        t0 = time.time()
        r = run(ref, args)
        if r.returncode:
            print(r.stdout[-3000:], r.stderr[-3000:], sep="\n")
            print("FAIL: the uninterrupted run failed")
            return 1
        print(f"uninterrupted run: {time.time() - t0:.1f} s")
        want = final_metrics(ref, cfg)

        cmd = base_cmd(args)
        log = open(os.path.join(tmp, "killed-run.log"), "w")
        proc = subprocess.Popen(cmd, cwd=victim, env=env_for(victim), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        killed_in = None
        deadline = time.time() + args.timeout
        while proc.poll() is None and time.time() < deadline:
            done = len(glob.glob(os.path.join(victim, cfg["results_dir"], "*", "*", "seed*", "iter*", "model.pt")))
            busy = distill_in_progress(victim, cfg)
            if busy and done >= args.skip_distills:
                killed_in = busy
                os.killpg(proc.pid, signal.SIGKILL)  # snakemake and every job, no clean-up
                proc.wait()
                break
            time.sleep(0.02)
        log.close()
        if killed_in is None:
            print("FAIL: the run ended before a distill stage could be killed; rerun with --skip-distills 0")
            return 1
        before = outputs(victim, cfg)
        unfinished = incomplete_outputs(victim)
        print(f"SIGKILL during distill of {', '.join(killed_in)}; {len(before)} output files existed; "
              f"Snakemake had {len(unfinished)} outputs of running jobs marked incomplete")

        # a killed Snakemake leaves its lock behind: the documented resume is unlock, then rerun
        r = run(victim, args, ["--unlock"])
        if r.returncode:
            print(r.stdout[-3000:], r.stderr[-3000:], sep="\n")
            print("FAIL: snakemake --unlock failed")
            return 1
        t0 = time.time()
        r = run(victim, args)
        if r.returncode:
            print(r.stdout[-3000:], r.stderr[-3000:], sep="\n")
            print("FAIL: the resumed run failed")
            return 1
        after = outputs(victim, cfg)
        # a job whose files were written but whose end Snakemake had not recorded is not finished
        # (it is marked incomplete) and rightly runs again; every other existing output must stay
        rerun = sorted(p for p, m in before.items() if after.get(p) != m and p not in unfinished)
        redone = sorted(p for p, m in before.items() if after.get(p) != m and p in unfinished)
        if redone:
            print(f"note: {len(redone)} files of jobs still running at the kill (marked incomplete) were "
                  f"written again: {redone}")
        jobs = [line.split()[1].rstrip(":") for line in (r.stdout + r.stderr).splitlines()
                if line.startswith(("rule ", "localrule ")) and line.rstrip().endswith(":")]
        print(f"resumed run: {time.time() - t0:.1f} s, {len(jobs)} jobs")
        if rerun:
            ok = False
            print(f"FAIL: {len(rerun)} finished outputs were written again, e.g. {rerun[:5]}")
        else:
            print(f"ok: no finished stage ran again ({len(before) - len(redone)} finished outputs untouched)")
        got = final_metrics(victim, cfg)
        if got == want:
            print(f"ok: the {len(got)} metrics.json files equal the uninterrupted run's (wall times excluded)")
        else:
            ok = False
            diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
            print(f"FAIL: metrics differ in {diff[:5]}")
        r = run(victim, args, ["-n"])
        if "Nothing to be done" not in r.stdout + r.stderr:
            ok = False
            print("FAIL: a third run still has work to do")
        else:
            print("ok: a third run has nothing to do")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
