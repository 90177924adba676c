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


def measure(cfg: dict, task_name: str, seed: int, i: int, new: int, steps: int, contexts: int) -> dict:
    from amplification import stages
    from amplification.amplify import amplify_h_with_x, amplify_hprime
    from amplification.checkpoint import load_x
    from amplification.human import Transcripts
    from amplification.train import HPrimeTrainer, load_checkpoint

    if i < 1:
        raise ValueError("--iter must be >= 1 (iteration i's targets come from X_{i-1})")
    c = stages.Ctx(cfg, task_name, "amplification", seed, i)
    ins = c.inp("amplify")
    x = load_x(ins["model"], "cpu", teacher=True)
    s = stages.arrays_to_batch(stages.load_npz(ins["sample"]))
    tr = Transcripts.concat([stages.arrays_to_transcripts(stages.load_npz(p)) for p in c.inp("train_hprime")["transcripts"]])
    if new:
        rng = np.random.default_rng([seed, i, 77])
        b = c.task.generate(new, int(s.size), rng, n_questions=1)
        fresh = amplify_h_with_x(c.task, x, b.facts, b.fact_mask, np.arange(new), b.questions[:, 0], b.db, rng)
        tr = Transcripts.concat([tr, fresh])
    trainer = HPrimeTrainer(c.task, c.sec["hprime"], c.sec["hprime_train"], seed)
    trainer.load_state_dict(load_checkpoint(ins["hprime"]))
    if steps:
        trainer.train(tr.tokens(), steps)
    n = min(contexts, len(s.facts))
    Q = s.questions.shape[1]
    db = {k: v[:n] for k, v in s.db.items()}
    rng = lambda: np.random.default_rng([seed, i, 99])  # noqa: E731 - the same oracle draws for both
    by_hp = amplify_hprime(c.task, trainer.model, x, s.facts[:n], s.fact_mask[:n], s.questions[:n], db, rng()).answers
    by_h = amplify_h_with_x(c.task, x, s.facts[:n], s.fact_mask[:n], np.repeat(np.arange(n), Q),
                            s.questions[:n].reshape(n * Q, -1), db, rng()).answers
    truth, cls = s.answers[:n].reshape(n * Q, -1), s.classes[:n].reshape(-1)
    same, right = (by_hp == by_h).all(-1), (by_hp == truth).all(-1)
    per_class = {name: float(same[cls == k].mean()) for k, name in enumerate(c.task.class_names) if (cls == k).sum() >= 100}
    return {"size": int(s.size), "transcripts": len(tr), "same": float(same.mean()), "right": float(right.mean()),
            "per_class": per_class}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config/config.yaml", help="the study's config")
    ap.add_argument("--results", help="the study's results folder (default: the config's results_dir)")
    ap.add_argument("--task", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iter", type=int, required=True, help="iteration (>= 1) to measure")
    ap.add_argument("--new", type=int, default=200, help="fresh H transcripts to add (H calls)")
    ap.add_argument("--steps", type=int, default=150, help="more H' training steps")
    ap.add_argument("--contexts", type=int, default=512, help="sampled contexts to compare on")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from amplification.config import load_config

    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, overrides={"results_dir": args.results} if args.results else None)
    r = measure(cfg, args.task, args.seed, args.iter, args.new, args.steps, args.contexts)
    worst = sorted(r["per_class"].items(), key=lambda kv: kv[1])[:3]
    print(f"{args.task} iter {args.iter} (size {r['size']}) new {args.new} steps {args.steps} transcripts {r['transcripts']}: "
          f"H'==H {r['same']:.3f}, targets right {r['right']:.3f}; lowest classes "
          + " ".join(f"{k}={v:.3f}" for k, v in worst))


if __name__ == "__main__":
    main()
