"""Issue 3's learning check: reduced permutation powering (8 names, exponents up to 15) on CPU.

Runs the pipeline's own stage functions in-process (no Snakemake), iteration after iteration,
for amplification (learned H', no ground-truth labels) and the supervised baseline, until the
teacher's greedy held-out accuracy reaches the goal or the time runs out. Prints one line per
iteration and a final table: steps, wall time and H calls at which each method reached the goal.

    python experiments/reduced_permutation.py --minutes 15 --threads 2

Any other task and size can be calibrated the same way, e.g.
    python experiments/reduced_permutation.py --task shortest_path --params '{"nchars": 8, "length": 1}'
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from amplification import stages  # noqa: E402
from amplification.config import dump  # noqa: E402


def config(results: str, threads: int, args) -> dict:
    return {
        "name": f"reduced-{args.task}", "results_dir": results, "data_dir": results, "threads": threads,
        "device": "cpu", "human": "scripted", "mlflow": {"enabled": False},
        "test_set": {"contexts": 128, "questions_per_context": 8, "seed": 1000003},
        "defaults": {
            "params": json.loads(args.params),
            "distill": {"steps": args.steps, "lr": args.lr, "batch_contexts": args.batch_contexts, "replay_iters": args.replay, "ema_horizon": args.ema,
                        "warmup": args.warmup, "weight_decay": args.weight_decay,
                        "decay_steps": args.decay_steps, "lr_min": args.lr_min},
            "hprime_train": {"steps": args.hp_steps, "converged_steps": args.hp_converged_steps,
                             "hard_fraction": args.hp_hard, "first_steps": args.hp_first_steps,
                             "recent_fraction": args.hp_recent, "rename": args.hp_rename,
                             "counterfactual": args.hp_counterfactual},
            "budget": {"initial": args.h_initial, "min_calls": args.h_min, "focus": args.h_focus, "focus_by": args.h_focus_by,
                       "review": args.h_review},
            "x": {"enc_layers": args.enc_layers, "dec_layers": args.dec_layers, "width": args.width,
                  "match_bias": args.match_bias or bool(args.match_init), "match_bias_init": args.match_init,
                  "share_layers": args.share_layers,
                  "token_encoder": args.token_encoder},
            "curriculum": {"start": args.start_size, "threshold": args.threshold},
            "sample": {"contexts": args.contexts},
            "amplify": {"repeats": args.repeats, "levels": args.levels, "deep_transcripts": args.deep_transcripts,
                        "min_confidence": args.min_confidence, "confidence_of": args.confidence_of},
            "hprime": {**json.loads(args.hprime), **({"numbers": True} if args.hp_numbers else {})},
        },
    }


def _targets_from_h(until: int | None = None) -> dict:
    """Make the amplify stage call Amplify^H(X) where it calls Amplify^{H'}(X) (same tree depth),
    at every iteration, or with `until` only up to that iteration (main sets `state["i"]`)."""
    import numpy as np

    from amplification import amplify

    state = {"i": 0}
    learned = amplify.amplify_hprime

    def h_in_hprime_place(task, hp, x, facts, fact_mask, questions, db, rng, device="cpu", repeats="greedy",
                          levels=1, **kw):
        if until is not None and state["i"] > until:
            return learned(task, hp, x, facts, fact_mask, questions, db, rng, device, repeats=repeats, levels=levels, **kw)
        B, Q, ql = questions.shape
        if kw.get("scores") is not None:  # H is sure of every step
            kw["scores"].update(answer_logp=np.zeros(B * Q, dtype=np.float32), min_logp=np.zeros(B * Q, dtype=np.float32))
        return amplify.amplify_h_with_x(task, x, facts, fact_mask, np.repeat(np.arange(B), Q),
                                        np.asarray(questions).reshape(B * Q, ql), db, rng, device,
                                        repeats=repeats, levels=levels)

    amplify.amplify_hprime = h_in_hprime_place
    return state


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=15.0, help="time limit per method")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--goal", type=float, default=0.95)
    ap.add_argument("--no-stop", action="store_true",
                    help="run every iteration even after the goal (the table still gives the first crossing): "
                         "a mean over seeds at a later iteration then needs no stopped runs")
    ap.add_argument("--steps", type=int, default=100, help="X steps per iteration")
    ap.add_argument("--hp-steps", type=int, default=150, help="H' steps per iteration")
    ap.add_argument("--contexts", type=int, default=1536, help="contexts per iteration (512 overfits: each is then seen ~6 times per iteration)")
    ap.add_argument("--h-initial", type=int, default=200, help="H transcripts collected at iteration 0 (paper: 500)")
    ap.add_argument("--h-min", type=int, default=0, help="H transcripts every later iteration collects at least (budget.min_calls)")
    ap.add_argument("--h-focus", type=float, default=0.0,
                    help="share of H calls on questions where X and Amplify(X) differ (budget.focus)")
    ap.add_argument("--h-review", action="store_true",
                    help="the --h-focus calls review this iteration's own targets (picked by --h-focus-by): H's answers replace them (budget.review)")
    ap.add_argument("--h-focus-by", choices=["disagree", "uncertain"], default="disagree",
                    help="which questions --h-focus picks (budget.focus_by)")
    ap.add_argument("--hp-first-steps", type=int, default=None, help="H' steps at iteration 0 (hprime_train.first_steps; default: --hp-steps)")
    ap.add_argument("--hp-converged-steps", type=int, default=20, help="H' steps per iteration once the gate says it imitates H")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch-contexts", type=int, default=32, help="contexts per X step, all their questions (distill.batch_contexts)")
    ap.add_argument("--ema", type=int, default=50, help="teacher averaging horizon (steps)")
    ap.add_argument("--replay", type=int, default=1, help="iterations of targets replayed (1: fresh targets only)")
    ap.add_argument("--warmup", type=int, default=200, help="X learning-rate warm-up steps")
    ap.add_argument("--weight-decay", type=float, default=0.0, help="X's AdamW decoupled weight decay (distill.weight_decay)")
    ap.add_argument("--decay-steps", type=int, default=0, help="cosine decay of X's learning rate over this many steps (distill.decay_steps)")
    ap.add_argument("--lr-min", type=float, default=0.1, help="the decay's floor, a share of --lr (distill.lr_min)")
    ap.add_argument("--enc-layers", type=int, default=3)
    ap.add_argument("--dec-layers", type=int, default=3)
    ap.add_argument("--width", type=int, default=96)
    ap.add_argument("--match-bias", action="store_true", help="X's token-match attention bias (x.match_bias)")
    ap.add_argument("--match-init", type=float, default=0.0,
                    help="the match bias's starting weight on the key fact's first name (x.match_bias_init; turns the bias on)")
    ap.add_argument("--share-layers", action="store_true", help="X's layers share weights within each stack (x.share_layers)")
    ap.add_argument("--token-encoder", action="store_true", help="X's encoder attends over the facts' tokens (x.token_encoder)")
    ap.add_argument("--hp-hard", type=float, default=0.0,
                    help="share of each H' batch from the transcripts it gets wrong (hprime_train.hard_fraction)")
    ap.add_argument("--hp-recent", type=float, default=0.0,
                    help="share of each H' batch from the newest iteration's transcripts (hprime_train.recent_fraction)")
    ap.add_argument("--hp-rename", action="store_true",
                    help="train H' on transcripts with their names randomly renamed (hprime_train.rename)")
    ap.add_argument("--hp-counterfactual", type=float, default=0.0,
                    help="share of each H' batch swapped for H's transcripts of shifted X depths (hprime_train.counterfactual)")
    ap.add_argument("--hp-numbers", action="store_true", help="H' embeds number tokens on a shared line (hprime.numbers)")
    ap.add_argument("--hprime", default="{}", help="H' model settings (JSON, the config's `hprime` section), e.g. '{\"width\": 128, \"layers\": 4}'")
    ap.add_argument("--repeats", choices=["sample", "greedy", "second", "all"], default="greedy",
                    help="how X answers a subquestion asked again in one transcript")
    ap.add_argument("--levels", type=int, default=1,
                    help="depth of the amplification tree (amplify.levels; 2: subquestions answered by Amplify(X))")
    ap.add_argument("--deep-transcripts", type=float, default=0.0,
                    help="share of H transcripts with sub-answers from Amplify(X) one level down (amplify.deep_transcripts; needs --levels 2+)")
    ap.add_argument("--h-targets", action="store_true",
                    help="diagnostic: the amplify stage's targets from Amplify^H(X) (the scripted H in H' place, at "
                         "every level of the tree; those H calls are not counted): the most a perfect H' could give")
    ap.add_argument("--h-targets-until", type=int, default=None,
                    help="diagnostic: --h-targets up to this iteration only, Amplify^{H'}(X) after it")
    ap.add_argument("--min-confidence", type=float, default=0.0,
                    help="targets H' decoded with a lower probability are not given (amplify.min_confidence)")
    ap.add_argument("--confidence-of", choices=["answer", "tree"], default="answer",
                    help="what --min-confidence reads: H''s final answer, or its least sure token in the tree (amplify.confidence_of)")
    ap.add_argument("--confidence", action="store_true",
                    help="print how often H' is unsure of a target, and how right those targets are (ground truth, logging only)")
    ap.add_argument("--threshold", type=float, default=0.85, help="curriculum: agreement that promotes (paper: 0.85)")
    ap.add_argument("--start-size", type=int, default=None, help="first curriculum size (default: the task's)")
    ap.add_argument("--methods", default="amplification,supervised")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iterations", type=int, default=10**9, help="stop after this many iterations")
    ap.add_argument("--classes", action="store_true", help="print accuracy by difficulty class too")
    ap.add_argument("--task", default="permutation", help="any task, for calibrating the study's settings")
    ap.add_argument("--params", default='{"nchars": 8, "length": 1, "log_iters": 4}', help="task size parameters (JSON)")
    args = ap.parse_args()
    h_state = _targets_from_h(args.h_targets_until) if args.h_targets or args.h_targets_until is not None else None
    results = tempfile.mkdtemp(prefix="reduced-")
    cfg = config(results, args.threads, args)
    with open(os.path.join(results, "config.yaml"), "w") as fh:  # for the scripts that reread an iteration
        fh.write(dump(cfg))
    stages.run_testset(cfg, args.task)
    summary = {}
    for method in args.methods.split(","):
        t0, i, reached = time.time(), 0, None
        while time.time() - t0 < args.minutes * 60 and i < args.iterations:
            if h_state is not None:
                h_state["i"] = i
            rec = stages.run_iteration(cfg, args.task, method, args.seed, i)
            m = rec["metrics"]
            wall = time.time() - t0
            print(f"{method:13s} iter {i:3d} steps {m['steps/cumulative']:6d} wall {wall:6.0f}s "
                  f"acc {m['accuracy/teacher/greedy']:.3f} (sampled {m['accuracy/teacher/sampled']:.3f}) "
                  f"targets {m['accuracy/targets']:.3f} agree {m['agreement']:.3f} H calls {m['h_calls/cumulative']}"
                  + (" | " + " ".join(f"{k.rsplit('/', 1)[1]}={v:.2f}" for k, v in m.items()
                                      if k.startswith("accuracy/teacher/greedy/class/")) if args.classes else ""),
                  flush=True)
            if args.confidence and method == "amplification":
                from amplification import paths
                from amplification.stages import read_json
                a = read_json(paths.stage_output(results, args.task, method, args.seed, i, "amplify", "amplify.json"))
                fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
                print("    confidence: " + " ".join(f"<{p}: {a[f'answer_confidence_below_{p}']:.3f} right {fmt(a[f'answer_accuracy_below_{p}'])}"
                                                  for p in (0.5, 0.9, 0.99))
                      + f" | dropped {a['dropped']:.3f} right {fmt(a['dropped_targets_accuracy'])}, kept right {fmt(a['kept_targets_accuracy'])}"
                      + "\n    tree confidence: " + " ".join(f"<{p}: {a[f'tree_confidence_below_{p}']:.3f} right {fmt(a[f'tree_accuracy_below_{p}'])}"
                                                       for p in (0.5, 0.9, 0.99)), flush=True)
            if reached is None and m["accuracy/teacher/greedy"] >= args.goal:
                reached = (m["steps/cumulative"], round(wall), m["h_calls/cumulative"], m["accuracy/teacher/greedy"])
                if not args.no_stop:
                    break
            i += 1
        summary[method] = reached
    print("\nmethod         reached  steps  wall_s  H_calls  accuracy")
    for method, r in summary.items():
        print(f"{method:13s}  {'yes' if r else 'no':7s}  " + ("  ".join(str(v) for v in r) if r else "-"))
    print(f"(results in {results}, its config in config.yaml there)")


if __name__ == "__main__":
    main()
