"""Does H' imitate H better with transcripts from the current X?

For one iteration of a finished study run: take H'_{i} as the study trained it, optionally collect
`--new` fresh H transcripts with X_{i-1} answering (the distribution H' is used on at iteration i),
train H' `--steps` more steps on all transcripts, then compare Amplify^{H'}(X_{i-1}) with
Amplify^H(X_{i-1}) on the iteration's sampled questions (the same oracle draws for both). Prints
how often the two give the same target, overall and on the classes where they differ most.

    python experiments/hprime_more_data.py --task shortest_path --iter 11 --new 200 --steps 150

With `--new 0 --steps 0` it measures the study's own H' (what experiments/hprime_vs_h.py reports).
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from hprime_vs_h import add_study_args, iteration, study_config, truth_and_classes, with_h, with_hprime  # noqa: E402


def measure(cfg: dict, task_name: str, seed: int, i: int, new: int, steps: int, contexts: int) -> dict:
    from amplification import stages
    from amplification.amplify import amplify_h_with_x
    from amplification.human import Transcripts
    from amplification.train import HPrimeTrainer, load_checkpoint

    c, s, x, _ = iteration(cfg, task_name, seed, i)
    tr = Transcripts.concat([stages.arrays_to_transcripts(stages.load_npz(p)) for p in c.inp("train_hprime")["transcripts"]])
    if new:
        rng = np.random.default_rng([seed, i, 77])
        b = c.task.generate(new, int(s.size), rng, n_questions=1)
        fresh = amplify_h_with_x(c.task, x, b.facts, b.fact_mask, np.arange(new), b.questions[:, 0], b.db, rng)
        tr = Transcripts.concat([tr, fresh])
    trainer = HPrimeTrainer(c.task, c.sec["hprime"], c.sec["hprime_train"], seed)
    trainer.load_state_dict(load_checkpoint(c.inp("amplify")["hprime"]))  # H'_i with its optimiser state
    if steps:
        trainer.train(tr.tokens(), steps)
    n = min(contexts, len(s.facts))
    by_hp = with_hprime(c, s, x, trainer.model, seed, i, n).answers
    by_h = with_h(c, s, x, seed, i, n)
    truth, cls = truth_and_classes(s, n)
    same, right = (by_hp == by_h).all(-1), (by_hp == truth).all(-1)
    per_class = {name: float(same[cls == k].mean()) for k, name in enumerate(c.task.class_names) if (cls == k).sum() >= 100}
    return {"size": int(s.size), "transcripts": len(tr), "same": float(same.mean()), "right": float(right.mean()),
            "per_class": per_class}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_study_args(ap, contexts=512)
    ap.add_argument("--new", type=int, default=200, help="fresh H transcripts to add (H calls)")
    ap.add_argument("--steps", type=int, default=150, help="more H' training steps")
    args = ap.parse_args()
    r = measure(study_config(args), args.task, args.seed, args.iter, args.new, args.steps, args.contexts)
    worst = sorted(r["per_class"].items(), key=lambda kv: kv[1])[:3]
    print(f"{args.task} iter {args.iter} (size {r['size']}) new {args.new} steps {args.steps} transcripts {r['transcripts']}: "
          f"H'==H {r['same']:.3f}, targets right {r['right']:.3f}; lowest classes "
          + " ".join(f"{k}={v:.3f}" for k, v in worst))


if __name__ == "__main__":
    main()
