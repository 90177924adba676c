#!/usr/bin/env python3
"""Record demonstrations THROUGH the demonstration page, with a scripted browser driver.

IMPORTANT: the transcripts this script writes were NOT made by a person. A scripted driver
(Selenium + Debian's headless chromium) acts like one: it starts `amplification demonstrate`, reads
each question from the page, types the scripted H's subquestions one round at a time, reads the
answers off the page, and submits H's final answer, exactly as a person following H's
decomposition would. Every line therefore went through the page's validation and its atomic
append, like a person's would. The page writes "source": "human" (it cannot tell); each line
also carries "note": "recorded by scripts/record_demonstrations.py: a scripted browser driver
following H, not a person".

A few questions (--imperfect) are answered the way a careless person might:
  - "typo":      first types a subquestion of the wrong form, gets the inline error, then goes on
                 correctly (the transcript is still H's, and agrees with the truth);
  - "no-odd":    for an odd exponent, forgets the last sigma(z) step and answers z (this mistake
                 waits for the next question with an odd exponent);
  - "early":     asks one subquestion, then answers with its answer;
  - "give-up":   asks nothing and answers '?'.

Usage (the reduced study's permutation configuration; what made data/demonstrations/permutation.jsonl,
40 transcripts of which 6 imperfect; it appends, so remove the file first to remake it):

    .venv/bin/python scripts/record_demonstrations.py --n 40 --imperfect 6 --seed 20260

Requirements: apt-get install chromium chromium-driver; pip install selenium.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))

from amplification.tasks import make_task  # noqa: E402
from amplification.textio import parse_answer, parse_question  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
MISTAKES = ["no-odd", "typo", "early", "give-up"]


# ---- the server and the browser ---------------------------------------------------------------------------
NOTE = "recorded by scripts/record_demonstrations.py: a scripted browser driver following H, not a person"


def start_server(task_args: list[str], out: str, seed: int, size: int | None = None, checkpoint: str | None = None,
                 note: str | None = NOTE):
    """Start `amplification demonstrate` on a free port; -> (process, url)."""
    cmd = [sys.executable, "-m", "amplification.cli", "demonstrate", *task_args,
           "--port", "0", "--seed", str(seed), "--out", out]
    if note:
        cmd += ["--note", note]
    if size:
        cmd += ["--size", str(size)]
    if checkpoint:
        cmd += ["--checkpoint", checkpoint]
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise RuntimeError(f"the demonstrate server did not start: {line.strip()}")


def start_browser(width: int = 1000, height: int = 1100):
    """Headless Debian chromium through selenium with the explicit driver path; -> (driver, profile dir)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--hide-scrollbars", f"--window-size={width},{height}"]:
        opts.add_argument(a)
    profile = tempfile.mkdtemp(prefix="demo-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(30)
    return drv, profile


class Page:
    """The demonstration page as a person sees and uses it."""

    def __init__(self, drv, url: str):
        self.drv = drv
        drv.get(url)
        self.wait(lambda: self.body("ready") == "1", "the page")

    def wait(self, cond, what: str, timeout: float = 15):
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(self.drv, timeout, poll_frequency=0.05).until(lambda d: cond(), message=f"waiting for {what}")

    def body(self, key: str) -> str | None:
        return self.drv.find_element("tag name", "body").get_attribute(f"data-{key}")

    def text(self, elem_id: str) -> str:
        return self.drv.find_element("id", elem_id).text

    def _type(self, input_id: str, text: str) -> None:
        el = self.drv.find_element("id", input_id)
        el.clear()
        el.send_keys(text)
        self.drv.find_element("id", input_id.replace("-text", "-btn")).click()

    def question(self) -> str:
        return self.text("question")

    def ask(self, text: str) -> str:
        """Type a subquestion; -> the answer shown in its row. Raises ValueError with the inline error."""
        n = int(self.body("used"))
        seq = self.drv.find_element("id", "ask-error").get_attribute("data-seq") or "0"
        self._type("ask-text", text)
        self.wait(lambda: self.body("used") == str(n + 1)
                  or (self.drv.find_element("id", "ask-error").get_attribute("data-seq") or "0") != seq,
                  f"the answer to {text!r}")
        if self.body("used") != str(n + 1):
            raise ValueError(self.text("ask-error"))
        rows = self.drv.find_elements("css selector", "#history tbody tr")
        return rows[-1].find_element("css selector", "td.sa").text

    def submit(self, text: str) -> str:
        """Type the final answer; -> the page's note on the recorded demonstration."""
        n = int(self.body("count"))
        self._type("answer-text", text)
        self.wait(lambda: self.body("count") == str(n + 1) or self.text("answer-error"), "the submission")
        if self.body("count") != str(n + 1):
            raise ValueError(self.text("answer-error"))
        return self.text("last")


# ---- a person following H ----------------------------------------------------------------------------------
def _odd_exponent(task, question_text: str) -> bool:
    q = parse_question(task, question_text)
    return task.name == "permutation" and int(q[task.question_length - 1]) == task.bit1


def follow_h(task, page: Page, mistake: str | None = None) -> str:
    """Decompose the page's question as the scripted H would (with an optional mistake); -> final answer text."""
    qtext = page.question()
    q = parse_question(task, qtext)
    if mistake == "give-up":
        return "?"
    if mistake == "typo":  # the wrong form first: too few exponent bits
        try:
            page.ask(qtext.split()[0] + " 1")
            raise RuntimeError("a malformed subquestion was accepted")
        except ValueError as e:
            assert "wrong form" in str(e), e
    gen = task.human(q)
    odd = _odd_exponent(task, qtext)
    answers = []
    try:
        sub = next(gen)
        while True:
            if mistake == "no-odd" and odd and len(answers) == 2:
                return answers[-1]  # forgot the final sigma(z) look-up
            a = page.ask(task.decode(sub))
            answers.append(a)
            if mistake == "early":
                return a
            sub = gen.send(parse_answer(task, a))
    except StopIteration as stop:
        return task.decode(stop.value)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="permutation")
    ap.add_argument("--nchars", type=int, default=8)
    ap.add_argument("--length", type=int, default=1)
    ap.add_argument("--log-iters", type=int, default=4)
    ap.add_argument("--size", type=int, default=None, help="instance size (default: full)")
    ap.add_argument("--n", type=int, default=40, help="transcripts to record")
    ap.add_argument("--imperfect", type=int, default=6, help="of which answered carelessly")
    ap.add_argument("--seed", type=int, default=20260, help="seed of the first question")
    ap.add_argument("--out", default=None, help="default data/demonstrations/TASK.jsonl")
    args = ap.parse_args(argv)

    params = dict(nchars=args.nchars, length=args.length)
    task_args = [args.task, "--nchars", str(args.nchars), "--length", str(args.length)]
    if args.task == "permutation":
        params["log_iters"] = args.log_iters
        task_args += ["--log-iters", str(args.log_iters)]
    task = make_task(args.task, **params)
    out = args.out or os.path.join(ROOT, "data", "demonstrations", f"{args.task}.jsonl")
    # imperfect questions spread evenly, one of each kind in turn
    k = max(0, min(args.imperfect, args.n))
    bad = {round((i + 0.5) * args.n / k): MISTAKES[i % len(MISTAKES)] for i in range(k)} if k else {}

    proc, url = start_server(task_args, out, args.seed, args.size)
    drv, profile = start_browser()
    try:
        page = Page(drv, url)
        pending: list[str] = []
        for i in range(args.n):
            if i in bad:
                pending.append(bad[i])
            mistake = None
            if pending and (pending[0] != "no-odd" or _odd_exponent(task, page.question())):
                mistake = pending.pop(0)  # "no-odd" waits for a question with an odd exponent
            final = follow_h(task, page, mistake)
            note = page.submit(final)
            print(f"{i + 1:3d}/{args.n} {mistake or 'as H':8s} {note}", flush=True)
        print(page.text("counts"))
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)
        proc.terminate()
        proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
