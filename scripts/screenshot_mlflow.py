#!/usr/bin/env python
"""A headless-Chromium screenshot of the MLflow runs page of the study (docs/mlflow_runs.png).

    python scripts/screenshot_mlflow.py                       # the study's store, mlflow.db
    python scripts/screenshot_mlflow.py --db other.db --out docs/x.png
    python scripts/screenshot_mlflow.py --url http://127.0.0.1:5000   # a server already running

Starts the lean server of README.md (`MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --workers 1
--host 127.0.0.1 ...`) on a free port unless --url is given, opens the experiment's runs page with
Debian's chromium (the flags keep it off the network), and stops the server. Not part of CI.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read()) if "json" in r.headers.get("Content-Type", "") else r.read()


def start_server(db: str):
    port = free_port()
    mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen([mlflow, "ui", "--workers", "1", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{os.path.abspath(db)}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            get(url + "/health")
            return proc, url
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    raise SystemExit(f"mlflow ui did not start on {url}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--db", default=os.path.join(ROOT, "mlflow.db"), help="SQLite store (default: mlflow.db)")
    ap.add_argument("--url", help="an MLflow server already running (then --db is not used)")
    ap.add_argument("--experiment", default="iterated-amplification")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "mlflow_runs.png"))
    ap.add_argument("--size", default="1600,1000", help="window width,height")
    ap.add_argument("--view", choices=["table", "chart"], default="table",
                    help="the runs table, or the metric charts of the runs")
    ap.add_argument("--wait-ms", type=int, default=20000, help="virtual time for the page's scripts")
    args = ap.parse_args()

    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not chromium:
        raise SystemExit("no chromium found (apt-get install chromium)")
    proc = None
    if args.url:
        url = args.url.rstrip("/")
    else:
        if not os.path.exists(args.db):
            raise SystemExit(f"no MLflow store at {args.db}: run the study first, or pass --db/--url")
        proc, url = start_server(args.db)
    try:
        q = urllib.parse.urlencode({"experiment_name": args.experiment})
        exp = get(f"{url}/api/2.0/mlflow/experiments/get-by-name?{q}")["experiment"]
        page = f"{url}/#/experiments/{exp['experiment_id']}/runs"
        if args.view == "chart":
            page += "?compareRunsMode=CHART"
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with tempfile.TemporaryDirectory() as profile:
            cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={args.size}",
                   f"--virtual-time-budget={args.wait_ms}", f"--screenshot={os.path.abspath(args.out)}", page]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        if r.returncode or not os.path.exists(args.out):
            print(r.stderr[-2000:], file=sys.stderr)
            raise SystemExit("chromium failed")
        print(f"wrote {args.out} ({page})")
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
