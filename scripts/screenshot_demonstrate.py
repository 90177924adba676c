#!/usr/bin/env python3
"""Screenshot of the demonstration page mid-decomposition, for the README: docs/demonstrate.png.

Starts `amplification demonstrate` for permutation powering (the reduced study's configuration),
reading the counters from data/demonstrations/permutation.jsonl (nothing is submitted, so
nothing is written), opens the page in headless Debian chromium, types the scripted H's first
two subquestions plus one malformed one (to show the inline error), and saves the screenshot.

    .venv/bin/python scripts/screenshot_demonstrate.py [--out docs/demonstrate.png]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from record_demonstrations import ROOT, Page, start_browser, start_server  # noqa: E402

from amplification.tasks import make_task  # noqa: E402
from amplification.textio import parse_answer, parse_question  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "demonstrate.png"))
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)

    task = make_task("permutation", nchars=8, length=1, log_iters=4)
    demos = os.path.join(ROOT, "data", "demonstrations", "permutation.jsonl")
    task_args = ["permutation", "--nchars", "8", "--length", "1", "--log-iters", "4"]
    # an odd exponent with all 3 rounds to come and distinct names along the way, so the picture
    # shows a decomposition half done
    from amplification.human import amplify_h_batch

    seed = args.seed
    while True:
        b = task.generate(1, task.max_size, seed, n_questions=1)
        q = b.questions[0, 0]
        tr = amplify_h_batch(task, b, rng=seed)
        names = {int(q[0]), int(tr.subanswers[0, 0, 0]), int(tr.subanswers[0, 1, 0])}
        if int(q[-1]) == task.bit1 and int(q[1]) == task.bit1 and len(names) == 3:
            break
        seed += 1
    proc, url = start_server(task_args, demos, seed, note=None)
    drv, profile = start_browser(1000, 860)
    try:
        page = Page(drv, url)
        gen = task.human(parse_question(task, page.question()))
        sub = next(gen)
        for _ in range(2):
            sub = gen.send(parse_answer(task, page.ask(task.decode(sub))))
        try:  # a malformed third subquestion: the inline error the page shows
            page.ask(task.decode(sub).rsplit(" ", 2)[0])
        except ValueError:
            pass
        drv.find_element("id", "ask-text").clear()
        drv.find_element("id", "ask-text").send_keys(task.decode(sub).rsplit(" ", 2)[0])
        # the viewport exactly as tall as the page's content: the whole page, no scrolling
        height = drv.execute_script("return Math.ceil(document.querySelector('main').getBoundingClientRect().bottom)")
        drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 1000, "height": int(height) + 12, "deviceScaleFactor": 1, "mobile": False})
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        drv.save_screenshot(args.out)
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)
        proc.terminate()
        proc.wait(10)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
