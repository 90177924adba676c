"""Learning-core benchmark: costs measured side by side in one run (CPU or GPU).

Prints:
  1. amplification target generation (Amplify^{H'}(X), questions/s) against a supervised distil
     step on the same batch, and the cost of one distilled step in each method under a pipeline
     config (targets are generated once per iteration and replayed for `steps` steps);
  2. X answering with the cached fact encoding against recomputing it per question (speed-up);
  3. H' transcript decoding with and without the key/value cache (speed-up);
  4. Amplify^{H'}(X) with a tree of depth 1 and 2 (`amplify.levels`): H''s key/value cache as
     implemented (preallocated buffers; one-query attention as two matmuls, and as torch's
     scaled_dot_product_attention) against the previous one, kept here as the reference (grown by
     concatenation, attention as two einsums); the targets must agree.

    python bench/bench_learning.py                       # reduced permutation, CPU, 2 threads
    python bench/bench_learning.py --paper --device cuda --steps 300   # the GPU check (issue 3)
    python bench/bench_learning.py --task union_find --threads 1 --study config/config.yaml  # part 4 on trained models
"""
from __future__ import annotations

import argparse
import contextlib
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from amplification.amplify import amplify_hprime  # noqa: E402
from amplification.hparams import DistillConfig, HPrimeConfig, HPrimeTrainConfig, XConfig  # noqa: E402
from amplification.human import amplify_h_batch  # noqa: E402
from amplification.tasks import make_task  # noqa: E402
from amplification.train import ContextData, Distiller, HPrimeTrainer  # noqa: E402


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def timeit(fn, device, repeats=3):
    fn()  # warm-up
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


@contextlib.contextmanager
def concatenated_cache():
    """The previous key/value cache, as the reference of part 4: every decoding step concatenated
    its keys and values to the cache (copying all of it) and attended with two einsums."""
    from amplification import hprime as H

    def attn_forward(self, x, cache=None):
        if cache is None:
            return saved["attn"](self, x)
        B, T, W = x.shape
        q, k, v = (t.view(B, T, self.h, W // self.h).transpose(1, 2) for t in self.qkv(x).split(W, -1))
        if "k" not in cache:  # the first step, the question's tokens: causal among themselves
            cache["k"], cache["v"] = k, v
            y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
            w = torch.softmax(torch.einsum("bhqd,bhtd->bhqt", q, k) * (W // self.h) ** -0.5, -1)
            y = torch.einsum("bhqt,bhtd->bhqd", w, v)
        return self.out(y.transpose(1, 2).reshape(B, T, W))

    def step(self, cache, tokens):
        x = self._embed(tokens, cache["t"])
        for layer, lc in zip(self.layers, cache["layers"]):
            x = layer(x, lc)
        keys = self.copy_k(self.ln(x))
        cache["keys"] = keys if cache["keys"] is None else torch.cat([cache["keys"], keys], 1)
        cache["tokens"] = tokens if cache["tokens"] is None else torch.cat([cache["tokens"], tokens], 1)
        cache["t"] += tokens.shape[1]
        return self._output(x[:, -1:], cache["keys"], cache["tokens"])[:, 0]

    saved = {"attn": H.CausalSelfAttention.forward, "step": H.HPrime.step}
    H.CausalSelfAttention.forward, H.HPrime.step = attn_forward, step
    try:
        yield
    finally:
        H.CausalSelfAttention.forward, H.HPrime.step = saved["attn"], saved["step"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="permutation")
    ap.add_argument("--paper", action="store_true", help="paper scale: 64 names, X 512 wide 6+3 layers, H' 128x4")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--contexts", type=int, default=None, help="contexts per batch (default 32, paper 50)")
    ap.add_argument("--steps", type=int, default=20, help="distil steps timed (GPU check: a few hundred)")
    ap.add_argument("--iter-contexts", type=int, default=512, help="contexts per iteration (pipeline ratio)")
    ap.add_argument("--iter-steps", type=int, default=200, help="distil steps per iteration (pipeline ratio)")
    ap.add_argument("--amp-contexts", type=int, default=256, help="contexts of part 4's Amplify^{H'}(X) batch")
    ap.add_argument("--study", default=None, metavar="CONFIG",
                    help="part 4 on a finished study's trained models and sampled batch (its config file), not fresh ones")
    ap.add_argument("--study-iteration", type=int, default=10, help="that study's iteration (X_{i-1}, H'_i, sample_i)")
    ap.add_argument("--autograd-amplify", action="store_true",
                    help="run Amplify^H'(X) with autograd on, as before the memory fix (its peak memory, for comparison)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = args.device
    if args.paper:
        task = make_task(args.task)
        xcfg = XConfig(width=512, heads=8, embed=100, enc_layers=6, dec_layers=3, ffn=4)
        hcfg = HPrimeConfig(width=128, heads=4, layers=4)
        B = args.contexts or 50
        size = task.max_size
    else:
        task = make_task(args.task, **({"nchars": 8, "length": 1, "log_iters": 4} if args.task == "permutation" else {"nchars": 8, "length": 1}))
        xcfg, hcfg = XConfig(enc_layers=3, dec_layers=3), HPrimeConfig()
        B = args.contexts or 32
        size = task.max_size
    print(f"task {task.name} {task.params} size {size}, {B} contexts/batch, device {dev}, threads {args.threads}")
    d = Distiller(task, xcfg, DistillConfig(batch_contexts=B), 0, dev)
    hp = HPrimeTrainer(task, hcfg, HPrimeTrainConfig(), 0, dev)
    print(f"X parameters: {sum(p.numel() for p in d.model.parameters()) / 1e6:.2f} M, "
          f"H' parameters: {sum(p.numel() for p in hp.model.parameters()) / 1e6:.2f} M")
    b = task.generate(B, size, 0)
    Q = b.questions.shape[1]
    nq = B * Q
    data = ContextData(b.facts, b.fact_mask, b.questions, b.answers, np.ones((B, Q), bool))
    idx = np.arange(B)
    from amplification.train import _trim

    mb = _trim(data, idx)
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev == "cuda" else torch.autocast("cpu", enabled=False)

    def distil_steps(n):
        with autocast:
            for _ in range(n):
                d.train_step(*mb)

    def supervised_targets():
        task.generate(B, size, 1)  # the ground truth comes with the batch

    rng = np.random.default_rng(0)

    amp_fn = amplify_hprime.__wrapped__ if args.autograd_amplify else amplify_hprime  # no_grad's inner function

    def amplify():
        with autocast:
            amp_fn(task, hp.model, d.teacher.model, b.facts, b.fact_mask, b.questions, b.db, rng, dev)

    t_step = timeit(lambda: distil_steps(1), dev)
    if dev == "cuda":  # Amplify^H'(X)'s own peak, above what the models and optimiser already hold
        sync(dev)
        torch.cuda.reset_peak_memory_stats()
        held = torch.cuda.memory_allocated()
    t_amp = timeit(amplify, dev)
    amp_peak = (torch.cuda.max_memory_allocated() - held) / 2**30 if dev == "cuda" else None
    t_sup = timeit(supervised_targets, dev)
    t_many = timeit(lambda: distil_steps(args.steps), dev, repeats=1)
    print("\n1. targets against distillation (same batch)")
    print(f"   distil step: {t_step * 1e3:8.1f} ms  ({nq / t_step:9.0f} questions/s)   "
          f"{args.steps} steps: {args.steps / t_many:.2f} steps/s")
    print(f"   Amplify^H'(X) targets: {t_amp * 1e3:8.1f} ms  ({nq / t_amp:9.0f} questions/s)"
          + (" [autograd on, as before the fix]" if args.autograd_amplify else ""))
    if amp_peak is not None:
        print(f"   Amplify^H'(X) peak GPU memory above the models': {amp_peak:.2f} GiB")
    print(f"   supervised targets (generation with ground truth): {t_sup * 1e3:.1f} ms")
    print(f"   targets/step cost ratio on one batch: amplification {(t_step + t_amp) / (t_step + t_sup):.2f}x supervised")
    # one pipeline iteration: targets for iter_contexts contexts, then iter_steps distil steps;
    # amplification also trains H' (its steps are small) and collects a few H transcripts
    per_ctx_amp = t_amp / B
    trs = amplify_h_batch(task, task.generate(256, size, 2, n_questions=1))
    t_hp = timeit(lambda: hp.train(trs.tokens(), 1), dev)
    sup_iter = args.iter_steps * t_step + args.iter_contexts * t_sup / B
    amp_iter = args.iter_steps * t_step + args.iter_contexts * per_ctx_amp + 150 * t_hp
    print(f"   per pipeline iteration ({args.iter_contexts} contexts, {args.iter_steps} X steps, 150 H' steps): "
          f"supervised {sup_iter:.2f} s, amplification {amp_iter:.2f} s -> {amp_iter / sup_iter:.2f}x per distilled step")

    print("\n2. cached against recomputed fact encodings (X answering every question of a batch)")
    x = d.teacher.model
    f = torch.as_tensor(b.facts, device=dev).long()
    m = torch.as_tensor(b.fact_mask, device=dev).bool()
    q = torch.as_tensor(b.questions, device=dev).long()

    @torch.no_grad()
    def cached():
        with autocast:
            x.generate(x.encode(f, m), f, m, q)

    @torch.no_grad()
    def recomputed():  # every question re-encodes its context's facts
        with autocast:
            ff = f.repeat_interleave(Q, 0)
            mm = m.repeat_interleave(Q, 0)
            x.generate(x.encode(ff, mm), ff, mm, q.reshape(B * Q, 1, -1))

    tc, tr_ = timeit(cached, dev), timeit(recomputed, dev, repeats=1)
    print(f"   cached {tc * 1e3:.1f} ms, recomputed {tr_ * 1e3:.1f} ms -> {tr_ / tc:.1f}x speed-up")

    print("\n3. H' decoding of whole transcripts, with and without the key/value cache")
    seqs = hp.sequences(amplify_h_batch(task, task.generate(B, size, 3, n_questions=Q)).tokens()[:nq])
    model = hp.model.eval()
    k = 1 + task.question_length

    @torch.no_grad()
    def with_cache():
        with autocast:
            c = model.start(len(seqs), dev)
            model.step(c, seqs[:, :k])
            for t in range(k, seqs.shape[1]):
                model.step(c, seqs[:, t:t + 1])

    @torch.no_grad()
    def without_cache():
        with autocast:
            for t in range(k, seqs.shape[1] + 1):
                model.predict_nocache(seqs[:, :t])

    tw, tn = timeit(with_cache, dev, repeats=1), timeit(without_cache, dev, repeats=1)
    print(f"   {len(seqs)} transcripts of {seqs.shape[1]} tokens: cache {tw * 1e3:.1f} ms, "
          f"no cache {tn * 1e3:.1f} ms -> {tn / tw:.1f}x speed-up")

    print("\n4. Amplify^H'(X) by tree depth: the preallocated key/value cache (matmul or SDPA attention) "
          "against the previous, concatenated one (einsums)")
    import amplification.hprime as hprime_mod

    task4, hp4, x4 = task, hp.model, d.teacher.model
    b4 = task.generate(args.amp_contexts, size, 4)
    if args.study:  # a finished study's trained X and H' and its sampled batch, instead of fresh models
        from amplification import stages
        from amplification.checkpoint import load_hprime, load_x
        from amplification.config import load_config

        c = stages.Ctx(load_config(args.study), args.task, "amplification", 0, args.study_iteration)
        ins = c.inp("amplify")
        if not all(os.path.exists(p) for p in ins.values()):
            raise SystemExit(f"bench: --study {args.study}: no finished iteration {args.study_iteration} of its "
                             f"{args.task} amplification run (run the study first): {ins['model']}")
        task4, hp4, x4 = c.task, load_hprime(ins["hprime"], dev), load_x(ins["model"], dev, teacher=True)
        b4 = stages.arrays_to_batch(stages.load_npz(ins["sample"]))
        print(f"   {args.study}'s {args.task} amplification run, seed 0, iteration {args.study_iteration} "
              f"(size {b4.size}, {b4.questions.shape[0]} contexts)")
    n4 = b4.questions.shape[0] * b4.questions.shape[1]
    # (the concatenated reference has its own attention, two einsums: the switch does not reach it)
    impls = {"concatenated": ("auto", concatenated_cache), "matmul": ("matmul", None), "sdpa": ("sdpa", None)}
    for levels in (1, 2):
        times, answers = {}, {}
        for name, (attention, patch) in impls.items():
            hprime_mod.ONE_QUERY_ATTENTION = attention

            def amp4():
                with autocast, (patch() if patch else contextlib.nullcontext()):
                    answers[name] = amplify_hprime(task4, hp4, x4, b4.facts, b4.fact_mask, b4.questions,
                                                   b4.db, np.random.default_rng(5), dev, levels=levels).answers
            times[name] = timeit(amp4, dev, repeats=2)
        ref = times["concatenated"]
        print(f"   levels {levels}, {n4} questions: concatenated {ref:.2f} s; "
              + "; ".join(f"{k} {times[k]:.2f} s ({ref / times[k]:.2f}x, the same targets for "
                          f"{(answers[k] == answers['concatenated']).all(-1).mean():.1%})" for k in ("matmul", "sdpa")))
    hprime_mod.ONE_QUERY_ATTENTION = "auto"
    if dev == "cuda":
        print(f"\npeak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
