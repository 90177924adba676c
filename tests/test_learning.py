"""The learning core: X's invariances, the teacher average, H' imitation, Amplify^{H'} wiring,
exact checkpoint resumption."""
import numpy as np
import pytest
import torch

from amplification.amplify import amplify_hprime, repeated
from amplification.hparams import DistillConfig, HPrimeConfig, HPrimeTrainConfig, XConfig
from amplification.human import amplify_h, amplify_h_batch
from amplification.hprime import SUB_Q, MAIN_A, layout
from amplification.tasks import make_task
from amplification.train import ContextData, Distiller, HPrimeTrainer, load_checkpoint, save_checkpoint
from amplification.xmodel import MatchBias, Teacher, XAnswerer, XModel

torch.set_num_threads(1)
SMALL_X = XConfig(width=32, heads=2, embed=8, enc_layers=2, dec_layers=2, ffn=2)


def tiny_task():
    return make_task("permutation", nchars=4, length=1, log_iters=3)


@pytest.mark.parametrize("option", [None, "match_bias", "token_encoder"])
@pytest.mark.parametrize("name", ["permutation", "assignments", "shortest_path"])
def test_padding_facts_change_nothing(name, option):
    task = make_task(name, nchars=4, length=1) if name != "permutation" else tiny_task()
    torch.manual_seed(0)
    x = XModel.for_task(task, XConfig(**{**SMALL_X.__dict__, **({option: True} if option else {})})).eval()
    b = task.generate(3, task.max_size, 0)
    f, m, q = (torch.as_tensor(a) for a in (b.facts, b.fact_mask, b.questions))
    prefix = torch.as_tensor(b.answers)
    base = x(f.long(), m, q.long(), prefix.long())
    pad = 5
    f2 = torch.cat([f, torch.zeros(f.shape[0], pad, f.shape[2], dtype=f.dtype)], 1)
    m2 = torch.cat([m, torch.zeros(m.shape[0], pad, dtype=torch.bool)], 1)
    padded = x(f2.long(), m2, q.long(), prefix.long())
    assert torch.allclose(base, padded, atol=1e-5)


def test_match_bias_marks_shared_tokens_and_moves_attention():
    """The token-match bias: equal non-0 tokens in two records' slots, weighted per head."""
    a = torch.tensor([[[5, 6, 0]]])  # one record: tokens 5, 6 and padding
    b = torch.tensor([[[6, 9, 0], [0, 0, 0]]])  # a record holding 6 in slot 0, and a padding record
    eq = MatchBias.equal(a, b)  # [1, 1, 2, 9]
    assert eq[0, 0, 0].view(3, 3).nonzero().tolist() == [[1, 0]]  # slot 1 of a == slot 0 of b
    assert eq[0, 0, 1].sum() == 0  # 0 (padding) never matches
    mb = MatchBias(heads=2, qslots=3, kslots=3)
    with torch.no_grad():
        mb.w[1, 1 * 3 + 0] = 4.0
    bias = mb(eq, torch.tensor([[False, True]])).view(1, 2, 1, 2)
    assert bias[0, 0, 0, 0] == 0 and bias[0, 1, 0, 0] == 4.0
    assert torch.isinf(bias[0, :, 0, 1]).all()  # padding keys are masked in every head
    # a model with the bias gives different answers from one without once the weights move
    task = tiny_task()
    torch.manual_seed(3)
    x = XModel.for_task(task, XConfig(**{**SMALL_X.__dict__, "match_bias": True})).eval()
    b2 = task.generate(2, 4, 0)
    f, m, q, p = (torch.as_tensor(v).long() for v in (b2.facts, b2.fact_mask, b2.questions, b2.answers))
    m = m.bool()
    before = x(f, m, q, p)
    with torch.no_grad():
        for layer in list(x.enc_bias) + list(x.dec_bias):
            layer.w.normal_(0, 3.0)
    assert not torch.allclose(before, x(f, m, q, p))


def test_match_bias_init_starts_on_the_key_facts_first_name():
    """match_bias_init: every query slot's weight against the key's first name starts at the
    value (both characters of a 2-character name), every other weight at 0; a question about x
    then attends to the facts about x before any training."""
    mb = MatchBias(heads=2, qslots=3, kslots=4, init=3.0, key_slots=2)
    w = mb.w.detach().view(2, 3, 4)
    assert (w[:, :, :2] == 3.0).all() and (w[:, :, 2:] == 0).all()
    task2 = make_task("permutation", nchars=4, length=2, log_iters=3)
    x2 = XModel.for_task(task2, XConfig(**{**SMALL_X.__dict__, "match_bias": True, "match_bias_init": 3.0}))
    w = x2.dec_bias[0].w.detach().view(SMALL_X.heads, -1, task2.fact_length)
    assert (w[:, :, :2] == 3.0).all() and (w[:, :, 2:] == 0).all()
    # a question `x n` gets the bias on the one fact about x (x in its first slot), and no other
    task = tiny_task()
    x = XModel.for_task(task, XConfig(**{**SMALL_X.__dict__, "match_bias": True, "match_bias_init": 3.0}))
    b = task.generate(4, 4, 0)
    f, m, q = (torch.as_tensor(v).long() for v in (b.facts, b.fact_mask, b.questions))
    m = m.bool()
    rec = torch.cat([q, torch.zeros_like(q[..., :task.answer_length])], -1)  # no answer tokens yet
    bias = x.dec_bias[0](MatchBias.equal(rec, f), ~m).view(4, SMALL_X.heads, q.shape[1], f.shape[1]).detach()
    about = (f[:, None, :, 0] == q[:, :, None, 0]) & m[:, None, :]  # [B, Q, F]
    assert (about.sum(-1) == 1).all()
    for h in range(SMALL_X.heads):
        assert (bias[:, h][about] == 3.0).all() and (bias[:, h][~about & m[:, None, :]] == 0).all()


def test_token_encoder_sees_a_set_of_facts_with_ordered_slots():
    """token_encoder: the facts are still a set (shuffling them changes nothing), but the slots
    inside a fact are ordered (swapping two slots' tokens changes the answer), and the encoder's
    layers run over tokens, so they matter."""
    task = make_task("assignments", nchars=4, length=1)
    torch.manual_seed(0)
    x = XModel.for_task(task, XConfig(**{**SMALL_X.__dict__, "token_encoder": True})).eval()
    with torch.no_grad():
        x.slot.normal_(0, 1.0)  # a trained model's slot embeddings differ; the initial ones barely do
    b = task.generate(2, task.max_size, 0)
    f, m, q, p = (torch.as_tensor(v).long() for v in (b.facts, b.fact_mask, b.questions, b.answers))
    m = m.bool()
    base = x(f, m, q, p)
    perm = torch.randperm(f.shape[1])
    assert torch.allclose(base, x(f[:, perm], m[:, perm], q, p), atol=1e-5)
    swapped = f.clone()
    swapped[:, :, [1, 2]] = f[:, :, [2, 1]]
    assert not torch.allclose(base, x(swapped, m, q, p), atol=1e-3)
    with torch.no_grad():
        x.encoder[0].attn.in_proj_weight.normal_(0, 1.0)
    assert not torch.allclose(base, x(f, m, q, p), atol=1e-3)
    with pytest.raises(ValueError, match="token_encoder and x.match_bias"):
        XModel.for_task(task, XConfig(**{**SMALL_X.__dict__, "token_encoder": True, "match_bias": True}))


def test_shared_layers_tie_weights_and_the_teacher_averages_each_once():
    """share_layers: one Block per stack applied enc_layers / dec_layers times; the teacher's
    average moves a tied weight once per step, not once per layer that uses it."""
    task = tiny_task()
    cfg = XConfig(**{**SMALL_X.__dict__, "enc_layers": 3, "dec_layers": 2, "share_layers": True})
    torch.manual_seed(0)
    x = XModel.for_task(task, cfg)
    plain = XModel.for_task(task, XConfig(**{**cfg.__dict__, "share_layers": False}))
    assert len(x.encoder) == len(x.decoder) == 1
    block = sum(p.numel() for p in x.encoder[0].parameters())
    dblock = sum(p.numel() for p in x.decoder[0].parameters())
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(plain) - n(x) == 2 * block + 1 * dblock
    # every layer runs: one more application of the shared layer changes the output
    b = task.generate(2, 4, 0)
    f, m, q, p = (torch.as_tensor(v).long() for v in (b.facts, b.fact_mask, b.questions, b.answers))
    m = m.bool()
    x.eval()
    out3 = x(f, m, q, p)
    x.cfg = XConfig(**{**cfg.__dict__, "enc_layers": 4})
    assert not torch.allclose(out3, x(f, m, q, p))
    x.cfg = cfg
    # the teacher: uniform average over the first steps, each tied weight counted once
    t = Teacher(x, horizon=50)
    w0 = t.model.encoder[0].mlp[0].weight.clone()
    with torch.no_grad():
        x.encoder[0].mlp[0].weight.add_(1.0)
    t.update(x, step=4)
    assert torch.allclose(t.model.encoder[0].mlp[0].weight, w0 + 0.25)


def test_cached_fact_encoding_gives_the_same_answers():
    task = tiny_task()
    torch.manual_seed(1)
    x = XModel.for_task(task, SMALL_X).eval()
    b = task.generate(6, 4, 2, n_questions=5)
    cached = XAnswerer(x, b.facts, b.fact_mask)
    ctx = np.repeat(np.arange(6), 5)
    got = cached(ctx, b.questions.reshape(30, -1))
    for i in range(6):  # recompute the encoding for every context from scratch
        f, m = torch.as_tensor(b.facts[i:i + 1]).long(), torch.as_tensor(b.fact_mask[i:i + 1])
        q = torch.as_tensor(b.questions[i:i + 1]).long()
        logp = x(f, m, q, torch.as_tensor(got[i * 5:(i + 1) * 5][None]).long())
        again = x.generate(x.encode(f, m), f, m, q)[0].numpy()
        assert np.array_equal(again, got[i * 5:(i + 1) * 5])
        assert torch.isfinite(logp).all()


def test_teacher_average_is_exact():
    lin = torch.nn.Linear(1, 1, bias=False)
    horizon = 4
    with torch.no_grad():
        lin.weight.fill_(1.0)
    teacher = Teacher(lin, horizon)
    seq = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    expected = 0.0
    for t, w in enumerate(seq, start=1):
        with torch.no_grad():
            lin.weight.fill_(w)
        teacher.update(lin, t)
        if t <= horizon:
            expected = float(np.mean(seq[:t]))  # uniform average of all students so far
        else:
            expected = expected + (w - expected) / horizon  # then exponential, decay 1 - 1/horizon
        assert teacher.model.weight.item() == pytest.approx(expected, abs=1e-7)


def test_hprime_imitates_h_on_a_tiny_task():
    task = tiny_task()
    train = amplify_h_batch(task, task.generate(600, 4, 0, n_questions=1))
    fresh = amplify_h_batch(task, task.generate(300, 4, 1, n_questions=1))
    tr = HPrimeTrainer(task, HPrimeConfig(width=32, heads=2, layers=2, ffn=2), HPrimeTrainConfig(lr=3e-3, batch=64), 0)
    tr.train(train.tokens(), 400)
    ev = tr.evaluate(fresh.tokens())
    assert ev["token_accuracy"] >= 0.99, ev
    assert ev["transcript_accuracy"] >= 0.9, ev


def test_transcript_accuracy_counts_a_transcript_wrong_for_one_wrong_token():
    task = tiny_task()
    tr = HPrimeTrainer(task, HPrimeConfig(width=32, heads=2, layers=2, ffn=2), HPrimeTrainConfig(), 0)
    tokens = amplify_h_batch(task, task.generate(40, 4, 0, n_questions=1)).tokens()
    hp = tr.model
    V, last = hp.nvocab, int(torch.nonzero(hp.target_pos[:-1])[-1])

    def fake_forward(seq):  # a stand-in H': right on every next token but the final answer of rows 30+
        nxt = torch.cat([seq[:, 1:], seq[:, :1]], 1).clone()
        nxt[30:, last] = (nxt[30:, last] + 1) % V
        return torch.log_softmax(10.0 * torch.nn.functional.one_hot(nxt, V).float(), -1)

    hp.forward = fake_forward
    ev = tr.evaluate(tokens)
    assert ev["transcript_accuracy"] == pytest.approx(30 / 40)
    assert ev["token_accuracy"] > 0.9  # one token in many per wrong transcript: the mean hides it


def test_hprime_hard_fraction_draws_part_of_each_batch_from_the_transcripts_it_gets_wrong():
    task = tiny_task()
    tokens = np.unique(amplify_h_batch(task, task.generate(120, 4, 0, n_questions=1)).tokens(), axis=0)[:40]
    assert len(tokens) == 40  # distinct transcripts: a row is wrong or right, never both
    tcfg = HPrimeTrainConfig(batch=8, hard_fraction=0.5, hard_every=3)
    tr = HPrimeTrainer(task, HPrimeConfig(width=32, heads=2, layers=2, ffn=2), tcfg, 0)
    hp = tr.model
    V, last = hp.nvocab, int(torch.nonzero(hp.target_pos[:-1])[-1])

    def fake_forward(seq):  # right on every token but the final answer of the rows from 30 on
        nxt = torch.cat([seq[:, 1:], seq[:, :1]], 1).clone()
        wrong = torch.zeros(len(seq), dtype=torch.bool)
        for r in hard_rows:
            wrong |= (seq == r).all(-1)
        nxt[wrong, last] = (nxt[wrong, last] + 1) % V
        return torch.log_softmax(10.0 * torch.nn.functional.one_hot(nxt, V).float(), -1)

    seqs = tr.sequences(tokens)
    hard_rows = seqs[30:]
    hp.forward = fake_forward
    assert tr.all_right(seqs, chunk=16).tolist() == [True] * 30 + [False] * 10
    batches = []

    def fake_loss(seq):  # record the batch; a loss that still has a graph
        batches.append(seq)
        return sum(p.sum() for p in hp.parameters()) * 0.0 + 1.0, torch.tensor(1.0)

    hp.loss = fake_loss
    tr.train(tokens, 6)
    assert len(batches) == 6
    for b in batches:  # half of each batch from the 10 wrong transcripts, the rest uniform
        n_wrong = sum(bool((hard_rows == row).all(-1).any()) for row in b)
        assert len(b) == 8 and n_wrong >= 4
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="hard_fraction"):
            HPrimeTrainConfig(hard_fraction=bad)
    with pytest.raises(ValueError, match="hard_every"):
        HPrimeTrainConfig(hard_every=0)


def test_hprime_recent_fraction_draws_part_of_each_batch_from_the_newest_transcripts():
    task = tiny_task()
    tokens = np.unique(amplify_h_batch(task, task.generate(120, 4, 0, n_questions=1)).tokens(), axis=0)[:40]
    tr = HPrimeTrainer(task, HPrimeConfig(width=32, heads=2, layers=2, ffn=2),
                       HPrimeTrainConfig(batch=8, recent_fraction=0.5), 0)
    hp, batches = tr.model, []

    def fake_loss(seq):  # record the batch; a loss that still has a graph
        batches.append(seq)
        return sum(p.sum() for p in hp.parameters()) * 0.0 + 1.0, torch.tensor(1.0)

    hp.loss = fake_loss
    seqs = tr.sequences(tokens)
    tr.train(tokens, 20, recent_from=36)  # the newest iteration: the last 4 transcripts
    newest = [sum(bool((seqs[36:] == row).all(-1).any()) for row in b) for b in batches]
    assert len(batches) == 20 and min(newest) >= 4  # 4 of 8 drawn from them, plus uniform luck
    assert sum(newest) < 20 * 6  # the uniform half still draws mostly from the other 36
    batches.clear()
    tr.train(tokens, 20)  # no boundary given (as at iteration 0): uniform batches
    assert sum(sum(bool((seqs[36:] == row).all(-1).any()) for row in b) for b in batches) < 20 * 3
    for bad in ({"recent_fraction": -0.1}, {"recent_fraction": 1.5}, {"recent_fraction": 0.6, "hard_fraction": 0.5}):
        with pytest.raises(ValueError, match="recent_fraction"):
            HPrimeTrainConfig(**bad)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="first_steps"):
            HPrimeTrainConfig(first_steps=bad)


def test_amplify_hprime_builds_no_autograd_graph():
    # with a graph, every H' step kept its activations alive through the key/value cache: 20 GB
    # at 16k questions. Inference only, so no step may record one.
    task = tiny_task()
    batch = task.generate(6, 4, 0)
    hp = HPrimeTrainer(task, HPrimeConfig(width=32, heads=2, layers=2, ffn=2), HPrimeTrainConfig(), 0).model
    x = XModel.for_task(task, XConfig(width=16, heads=2, embed=8, enc_layers=1, dec_layers=1, ffn=2))
    seen = []
    step, encode = hp.step, x.encode

    def recording_step(*a, **k):
        out = step(*a, **k)
        seen.append(torch.is_grad_enabled() or out.requires_grad)
        return out

    hp.step = recording_step
    x.encode = lambda *a, **k: (seen.append(torch.is_grad_enabled()), encode(*a, **k))[1]
    amplify_hprime(task, hp, x, batch.facts, batch.fact_mask, batch.questions, batch.db, np.random.default_rng(0))
    assert seen and not any(seen)


@pytest.mark.parametrize("numbers,members", [(False, 1), (True, 1), (False, 2)])
def test_kv_cache_decoding_equals_full_forward(numbers, members):
    task = tiny_task() if not numbers else make_task("union_find", nchars=4, length=1)
    torch.manual_seed(3)
    tr = HPrimeTrainer(task, HPrimeConfig(width=32, heads=2, layers=2, ffn=2, numbers=numbers, members=members),
                       HPrimeTrainConfig(), 0)
    hp = tr.model.eval()
    seqs = tr.sequences(amplify_h_batch(task, task.generate(8, 4, 0, n_questions=1)).tokens())
    cache = hp.start(len(seqs))
    k = 1 + task.question_length
    with torch.no_grad():
        logp = hp.step(cache, seqs[:, :k])
        for t in range(k, seqs.shape[1]):
            assert torch.allclose(logp, hp.predict_nocache(seqs[:, :t]), atol=1e-4)
            logp = hp.step(cache, seqs[:, t:t + 1])
        # after the first step the cached attention has no causal mask: one token at a time
        with pytest.raises(AssertionError, match="several tokens"):
            hp.step(cache, seqs[:, :2])


def test_hprime_ensemble_mixes_its_members_trains_each_as_if_alone_and_round_trips(tmp_path):
    from amplification.checkpoint import load_hprime
    from amplification.hprime import Ensemble

    task = tiny_task()
    tokens = amplify_h_batch(task, task.generate(200, 4, 0, n_questions=1)).tokens()
    hcfg, tcfg = HPrimeConfig(width=32, heads=2, layers=2, ffn=2), HPrimeTrainConfig(lr=3e-3, batch=32)
    ens = HPrimeTrainer(task, HPrimeConfig(**{**hcfg.__dict__, "members": 2}), tcfg, 0)
    assert isinstance(ens.model, Ensemble) and len(ens.model.members) == 2
    a, b = ens.model.members
    assert not torch.equal(a.tok.weight, b.tok.weight)  # each member from its own random start
    seqs = ens.sequences(tokens[:16])
    with torch.no_grad():  # the mixture: the mean of the members' probabilities
        mix = (a(seqs).exp() + b(seqs).exp()) / 2
        assert torch.allclose(ens.model(seqs).exp(), mix, atol=1e-6)
        # a token both members give p=0.9 keeps 0.9; one they split 0.9/0.1 gets 0.5
        assert torch.allclose(ens.model._mix([torch.tensor([0.9, 0.1]).log(), torch.tensor([0.1, 0.9]).log()]).exp(),
                              torch.tensor([0.5, 0.5]))
    # each member's gradient is its own loss's over 2, whatever the other member does: the
    # objective is the mean of their losses, and each member is clipped at half the norm
    lone = HPrimeTrainer(task, hcfg, tcfg, 0).model
    lone.load_state_dict(b.state_dict())
    ens.model.train_loss(seqs)[0].backward()
    lone.loss(seqs)[0].backward()
    for (k, p), q in zip(b.named_parameters(), lone.parameters()):
        assert torch.allclose(2 * p.grad, q.grad, atol=1e-7), k
    assert ens.model.clip_groups() == [list(a.parameters()), list(b.parameters())]
    before = ens.evaluate(tokens)
    m = ens.train(tokens, 20)
    assert m["steps"] == 20 and ens.evaluate(tokens)["loss"] < before["loss"], (before, m)
    save_checkpoint(ens.state_dict(), str(tmp_path / "hp.pt"))
    back = load_hprime(str(tmp_path / "hp.pt"))
    assert isinstance(back, Ensemble)
    with torch.no_grad():
        assert torch.equal(back(seqs), ens.model.eval()(seqs))
    with pytest.raises(ValueError, match="hprime.members must be an integer >= 1"):
        HPrimeConfig(members=0)


def test_hprime_numbers_share_a_line_and_an_unseen_number_is_still_on_it(tmp_path):
    from amplification.checkpoint import load_hprime

    task = make_task("union_find", nchars=4, length=1)
    assert {task.vocab.labels[t]: v for t, v in task.vocab.numbers.items()} == {"0": 0.0, "1": 1.0, "2": 2.0, "3": 3.0}
    assert make_task("shortest_path", nchars=4, length=1).vocab.numbers  # distances ("inf" is not one)
    assert sorted(make_task("wildcard", nchars=2, length=2).vocab.numbers.values()) == [-2.0, -1.0, 0.0, 1.0, 2.0]
    tr = HPrimeTrainer(task, HPrimeConfig(width=32, heads=2, layers=2, ffn=2, numbers=True), HPrimeTrainConfig(), 0)
    hp, ids = tr.model, sorted(task.vocab.numbers)
    assert hp.tok.weight[ids].abs().sum() == 0  # no number has an embedding of its own at first
    tokens = amplify_h_batch(task, task.generate(32, 4, 0, n_questions=1)).tokens()
    unseen = ids[-1]  # depth 3 never appears in these transcripts: its row gets no gradient
    tokens[tokens == unseen] = 0
    tr.train(tokens, 5)
    assert hp.tok.weight[ids[0]].abs().sum() > 0 and hp.tok.weight[unseen].abs().sum() == 0
    e = hp._embed(torch.tensor([[unseen]]), 1) - hp.kind(hp.kinds[1:2]) - hp.pos(torch.tensor([1]))
    assert torch.allclose(e[0, 0], hp.num_base + hp.num_dir, atol=1e-5)  # the largest number: value 1
    save_checkpoint(tr.state_dict(), str(tmp_path / "h.pt"))
    seqs = tr.sequences(tokens[:4])
    with torch.no_grad():
        assert torch.equal(load_hprime(str(tmp_path / "h.pt"))(seqs), hp.eval()(seqs))
    plain = HPrimeTrainer(task, HPrimeConfig(width=32, heads=2, layers=2, ffn=2), HPrimeTrainConfig(), 0).model
    assert plain.num_value is None and not hasattr(plain, "num_base")  # off: the model is as before


class ScriptedHPrime:
    """A perfect H': predicts the scripted H's next token from the transcript so far."""

    def __init__(self, task):
        self.task = task
        self.kinds = layout(task.question_length, task.answer_length, task.rounds)

    def eval(self):
        return self

    def start(self, n, device="cpu"):
        return {"seq": torch.zeros(n, 0, dtype=torch.long)}

    def step(self, cache, tokens):
        cache["seq"] = torch.cat([cache["seq"], tokens], 1)
        seq = cache["seq"].numpy()
        p = seq.shape[1]  # position of the token to predict
        t = self.task
        ql, al = t.question_length, t.answer_length
        out = torch.full((len(seq), t.nvocab), -1e9)
        for i, s in enumerate(seq):
            q = s[1:1 + ql]
            gen, asked, ans, r = t.human(q), [], None, 0
            try:
                sub = next(gen)
                while True:
                    asked.append(sub)
                    start = 1 + ql + r * (ql + al) + ql
                    if start + al > p:
                        break
                    sub = gen.send(s[start:start + al])
                    r += 1
            except StopIteration as stop:
                ans = stop.value
            if self.kinds[p] == SUB_Q:
                rr, j = divmod(p - 1 - ql, ql + al)
                tok = asked[rr][j] if rr < len(asked) else 0  # rounds H does not need are blank
            elif self.kinds[p] == MAIN_A:
                tok = ans[p - (len(self.kinds) - al)]
            else:
                tok = 0
            out[i, int(tok)] = 0.0
        return out


class OracleX:
    """X replaced by the look-up oracle (answers every question truthfully)."""

    def __init__(self, task, batch):
        self.task, self.batch = task, batch

    def eval(self):
        return self

    def encode(self, f, m):
        return torch.arange(len(f))[:, None]  # the "memory" of each context is its index

    def generate(self, mem, f, m, q, greedy=True, generator=None, rank=0):
        self.sampled = getattr(self, "sampled", 0) + (not greedy)
        self.greedy = getattr(self, "greedy", 0) + greedy
        self.runner_up = getattr(self, "runner_up", 0) + (rank > 0)
        B, Q, ql = q.shape
        self.questions = getattr(self, "questions", 0) + B * Q
        ctx = np.repeat(mem[:, 0].numpy(), Q)  # rows of any contexts (amplify levels > 1) too
        return torch.as_tensor(self.answers(ctx, q.numpy().reshape(-1, ql))).view(B, Q, -1)

    def answers(self, ctx, q):
        return self.task.answer(self.batch.db, ctx, q)


class BlankX(OracleX):
    """An X that knows nothing: every answer is all-0 (malformed, so H answers "unknown")."""

    def answers(self, ctx, q):
        return np.zeros((len(q), self.task.answer_length), dtype=np.int64)


@pytest.mark.parametrize("name", ["permutation", "union_find"])
def test_amplify_hprime_with_perfect_hprime_and_oracle_x_is_ground_truth(name):
    task = tiny_task() if name == "permutation" else make_task(name, nchars=4, length=1)
    b = task.generate(4, task.max_size, 5, n_questions=6)
    tr = amplify_hprime(task, ScriptedHPrime(task), OracleX(task, b), b.facts, b.fact_mask, b.questions,
                        b.db, np.random.default_rng(0))
    assert np.array_equal(tr.answers, b.answers.reshape(24, -1))
    assert (tr.asked > 0).all()


def test_amplify_hprime_reports_the_probability_of_its_answers():
    """`scores`: H''s log-probability of each final answer it decoded; a scripted H' (all its
    mass on H's token) is sure of every answer."""
    task = make_task("union_find", nchars=4, length=1)
    b = task.generate(4, task.max_size, 5, n_questions=6)
    scores: dict = {}
    tr = amplify_hprime(task, ScriptedHPrime(task), OracleX(task, b), b.facts, b.fact_mask, b.questions,
                        b.db, np.random.default_rng(0), levels=2, scores=scores)
    assert scores["answer_logp"].shape == (len(tr),) and np.allclose(scores["answer_logp"], 0.0)


@pytest.mark.parametrize("name", ["permutation", "union_find", "shortest_path"])
def test_amplify_levels_with_perfect_hprime_and_oracle_x_is_ground_truth(name):
    params = {"log_iters": 5} if name == "permutation" else {}  # exponents that need X at level 3 too
    task = make_task(name, nchars=4, length=1, **params)
    b = task.generate(4, task.max_size, 5, n_questions=6)
    for levels in (2, 3):
        x = OracleX(task, b)
        tr = amplify_hprime(task, ScriptedHPrime(task), x, b.facts, b.fact_mask, b.questions,
                            b.db, np.random.default_rng(0), levels=levels)
        assert np.array_equal(tr.answers, b.answers.reshape(24, -1)), levels
        assert x.questions > 0  # X answered at the leaves


def test_amplify_levels_reach_one_class_deeper_per_level_without_x():
    """With an X that knows nothing, Amplify^{H} is right exactly where H's tree reaches the oracle:
    sigma^n with n < 4 needs only primitives (bits2); each level adds one bit of the exponent."""
    task = make_task("permutation", nchars=8, length=1, log_iters=5)
    b = task.generate(16, task.max_size, 3, n_questions=8)
    bits = b.classes.reshape(-1) + 2  # class k is bit-length k + 2
    for levels in (1, 2, 3, 4):
        tr = amplify_hprime(task, ScriptedHPrime(task), BlankX(task, b), b.facts, b.fact_mask, b.questions,
                            b.db, np.random.default_rng(0), levels=levels)
        right = (tr.answers == b.answers.reshape(len(bits), -1)).all(-1)
        assert np.array_equal(right, bits <= levels + 1), levels
    with pytest.raises(ValueError, match="at least 1"):
        amplify_hprime(task, ScriptedHPrime(task), BlankX(task, b), b.facts, b.fact_mask, b.questions,
                       b.db, np.random.default_rng(0), levels=0)


def test_repeated_subquestions_get_a_fresh_sample_only_when_asked_for():
    """`repeats`: shortest path's `step a b` is asked twice; with "sample" the repeat goes to the
    sampler (a different candidate), with "greedy" to the same greedy answerer."""
    subq = np.zeros((3, 4, 2), dtype=np.int64)
    subq[:, 0] = [[1, 2], [1, 2], [3, 4]]
    assert repeated(subq, 1, np.array([[1, 2], [2, 1], [0, 0]])).tolist() == [True, False, False]
    task = make_task("shortest_path", nchars=4, length=1)
    b = task.generate(8, 4, 3, n_questions=4)
    calls = {"greedy": 0, "sampled": 0}

    def greedy(ctx, q):
        calls["greedy"] += len(q)
        return task.answer(b.db, ctx, q)

    def sampled(ctx, q):
        calls["sampled"] += len(q)
        return task.answer(b.db, ctx, q)

    B, Q = b.questions.shape[:2]
    ctx, qs = np.repeat(np.arange(B), Q), b.questions.reshape(B * Q, -1)
    oracle = task.oracle(b, np.random.default_rng(0))
    tr = amplify_h(task, ctx, qs, greedy, oracle, resample=sampled)
    # exactly the non-primitive subquestions that repeat an earlier one of the same transcript
    n_rep = sum(int((repeated(tr.subquestions, r, tr.subquestions[:, r])
                     & ~task.is_primitive(tr.subquestions[:, r])).sum()) for r in range(task.rounds))
    assert calls["sampled"] == n_rep > 0  # `step a b` is asked again when X's first guess is checked
    assert np.array_equal(tr.answers, b.answers.reshape(B * Q, -1))  # the oracle is right both times
    calls.update(greedy=0, sampled=0)
    amplify_h(task, ctx, qs, greedy, oracle)
    assert calls["sampled"] == 0 and calls["greedy"] > 0


@pytest.mark.parametrize("levels", [1, 2])
@pytest.mark.parametrize("repeats", ["greedy", "sample", "second", "all"])
def test_amplify_hprime_samples_repeated_subquestions_only_when_asked(repeats, levels):
    """greedy: X never samples; sample: only the repeats; second: the repeats get X's runner-up,
    nothing sampled; all: every answer, never greedy. At depth 2 the leaves' repeats likewise."""
    task = make_task("shortest_path", nchars=4, length=1)
    b = task.generate(4, task.max_size, 5, n_questions=6)
    x = OracleX(task, b)
    tr = amplify_hprime(task, ScriptedHPrime(task), x, b.facts, b.fact_mask, b.questions, b.db,
                        np.random.default_rng(0), repeats=repeats, levels=levels)
    assert np.array_equal(tr.answers, b.answers.reshape(24, -1))
    assert (getattr(x, "sampled", 0) > 0) == (repeats in ("sample", "all"))
    assert (getattr(x, "greedy", 0) > 0) == (repeats != "all")
    assert (getattr(x, "runner_up", 0) > 0) == (repeats == "second")


def test_generate_rank_gives_the_runner_up_first_token():
    """`rank=1`: the first answer token is X's second most likely, the rest greedy after it; so a
    repeated `parent x` under `repeats: second` is never X's first guess again."""
    task = make_task("union_find", nchars=8, length=1)
    b = task.generate(3, 8, 2, n_questions=5)
    torch.manual_seed(0)
    x = XModel.for_task(task, SMALL_X).eval()
    f, m, q = (torch.as_tensor(a).long() for a in (b.facts, b.fact_mask, b.questions))
    mem = x.encode(f, m.bool())
    first, second = x.generate(mem, f, m.bool(), q), x.generate(mem, f, m.bool(), q, rank=1)
    logp0 = x.decode(mem, f, m.bool(), q, torch.zeros_like(first))[:, :, 0]
    assert torch.equal(second[..., 0], logp0.topk(2, -1).indices[..., 1])
    assert (second[..., 0] != first[..., 0]).all()
    rest = x.decode(mem, f, m.bool(), q, second)[:, :, 1:].argmax(-1)  # greedy after the runner-up
    assert torch.equal(second[..., 1:], rest)


@pytest.mark.parametrize("levels", [1, 2])
@pytest.mark.parametrize("repeats", ["greedy", "sample", "second", "all"])
def test_amplify_h_with_x_decodes_as_repeats_says(repeats, levels, monkeypatch):
    """Amplify^H(X) (the decompose stage's transcripts; at depth 2 H in H' place): X's answers
    greedy, a repeat sampled or X's runner-up (at depth 2 the leaves' repeats, as Amplify^{H'}),
    or every answer sampled; the oracle's answers are right either way."""
    import amplification.amplify as amp

    task = make_task("shortest_path", nchars=4, length=1)
    b = task.generate(4, task.max_size, 5, n_questions=6)
    seen, ranks = [], []

    class FakeAnswerer:
        def __init__(self, x, facts, mask, device):
            pass

        def __call__(self, ctx, q, greedy=True, generator=None, rank=0):
            seen.append(greedy)
            ranks.append(rank)
            return task.answer(b.db, np.asarray(ctx), np.asarray(q))

    monkeypatch.setattr(amp, "XAnswerer", FakeAnswerer)
    B, Q = b.questions.shape[:2]
    tr = amp.amplify_h_with_x(task, None, b.facts, b.fact_mask, np.repeat(np.arange(B), Q),
                              b.questions.reshape(B * Q, -1), b.db, np.random.default_rng(0), repeats=repeats,
                              levels=levels)
    assert np.array_equal(tr.answers, b.answers.reshape(B * Q, -1))
    assert (False in seen) == (repeats in ("sample", "all")) and (True in seen) == (repeats != "all")
    assert (1 in ranks) == (repeats == "second")


def knows_nothing(task):
    """An XAnswerer stand-in for an X that knows nothing: every answer all-0 (malformed)."""
    class KnowsNothing:
        def __init__(self, x, facts, mask, device):
            pass

        def __call__(self, ctx, q, greedy=True, generator=None):
            return np.zeros((len(q), task.answer_length), dtype=np.int64)

    return KnowsNothing


def test_amplify_h_with_x_levels_match_amplify_hprime_levels(monkeypatch):
    """Amplify^H(X) at L levels (the diagnostics' H in H' place) is right exactly where
    Amplify^{H'}(X) with a perfect H' is, for an X that knows nothing: bit-lengths up to L + 1."""
    import amplification.amplify as amp

    task = make_task("permutation", nchars=8, length=1, log_iters=5)
    b = task.generate(16, task.max_size, 3, n_questions=8)

    monkeypatch.setattr(amp, "XAnswerer", knows_nothing(task))
    B, Q = b.questions.shape[:2]
    bits = b.classes.reshape(-1) + 2
    for levels in (1, 2, 3):
        tr = amp.amplify_h_with_x(task, None, b.facts, b.fact_mask, np.repeat(np.arange(B), Q),
                                  b.questions.reshape(B * Q, -1), b.db, np.random.default_rng(0), levels=levels)
        right = (tr.answers == b.answers.reshape(B * Q, -1)).all(-1)
        assert np.array_equal(right, bits <= levels + 1), levels


def test_deep_transcripts_take_their_sub_answers_from_amplify_one_level_down(monkeypatch):
    """The decompose stage's `amplify.deep_transcripts`: in the chosen contexts H's complex
    subquestions go to Amplify^{H'}(X) of depth L - 1 (here over an X that knows nothing), so
    those transcripts are right exactly where a tree of depth L is (bit-lengths up to L + 1); the
    other contexts keep X's answers (right only where H needs no X: bit-length 2)."""
    import amplification.amplify as amp

    task = make_task("permutation", nchars=8, length=1, log_iters=5)
    b = task.generate(16, task.max_size, 3, n_questions=8)

    monkeypatch.setattr(amp, "XAnswerer", knows_nothing(task))
    B, Q = b.questions.shape[:2]
    ctx, bits = np.repeat(np.arange(B), Q), b.classes.reshape(-1) + 2
    deep_ctx = np.arange(B) % 2 == 1
    for levels in (2, 3):
        deep = amp.hprime_answerer(task, ScriptedHPrime(task), BlankX(task, b), b.facts, b.fact_mask, b.db,
                                   np.random.default_rng(0), levels=levels - 1)
        tr = amp.amplify_h_with_x(task, None, b.facts, b.fact_mask, ctx, b.questions.reshape(B * Q, -1), b.db,
                                  np.random.default_rng(0), deep=deep, deep_ctx=deep_ctx)
        right = (tr.answers == b.answers.reshape(B * Q, -1)).all(-1)
        d = deep_ctx[ctx]
        assert np.array_equal(right[d], bits[d] <= levels + 1), levels
        assert np.array_equal(right[~d], bits[~d] <= 2), levels
        assert (bits[d] > 2).any() and (bits[d] <= levels + 1).any()  # (both kinds of rows occur)


def test_a_deep_answerer_that_answers_wrongly_is_what_h_hears():
    """A fake deep answerer that always names the wrong element: the routing is by context, row
    by row; in its contexts H hears exactly its answers, the other contexts stay right."""
    from amplification.amplify import _split

    task = make_task("permutation", nchars=8, length=1, log_iters=3)
    b = task.generate(8, task.max_size, 4, n_questions=6)
    B, Q = b.questions.shape[:2]
    ctx, qs = np.repeat(np.arange(B), Q), b.questions.reshape(B * Q, -1)
    right = lambda c, q: task.answer(b.db, np.asarray(c), np.asarray(q))  # noqa: E731

    def wrong(c, q):
        a = right(c, q).copy()
        idx, _ = task.decode_names(a[:, :task.length])
        a[:, :task.length] = task.encode_names((idx + 1) % task.nchars ** task.length)
        return a

    mask = np.arange(B) < 3
    ask = _split(mask, wrong, right)
    c = np.array([0, 5, 2, 7, 1])
    q = b.questions[c, 0]
    out, m = ask(c, q), mask[c]
    assert np.array_equal(out[~m], right(c, q)[~m])
    assert not (out[m] == right(c, q)[m]).all(-1).any()
    tr = amplify_h(task, ctx, qs, ask, task.oracle(b, np.random.default_rng(0)))
    assert (tr.answers == b.answers.reshape(B * Q, -1)).all(-1)[~mask[ctx]].all()
    heard = 0
    for r in range(task.rounds):
        sq = tr.subquestions[:, r]
        complex_ = sq.any(-1) & ~task.is_primitive(sq) & mask[ctx]
        heard += complex_.sum()
        assert np.array_equal(tr.subanswers[complex_, r], wrong(ctx[complex_], sq[complex_]))
    assert heard > 0


def test_lr_schedule_warms_up_then_decays_to_its_floor():
    from amplification.train import lr_at

    flat = DistillConfig(lr=1e-3, warmup=4)
    assert [lr_at(flat, k) for k in (0, 1, 3, 100)] == pytest.approx([2.5e-4, 5e-4, 1e-3, 1e-3])
    cfg = DistillConfig(lr=1e-3, warmup=0, decay_steps=100, lr_min=0.1)
    lrs = [lr_at(cfg, k) for k in range(150)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[50] == pytest.approx(0.55e-3)
    assert lrs[100:] == pytest.approx([1e-4] * 50)  # the floor after the decay
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    both = DistillConfig(lr=1e-3, warmup=10, decay_steps=100, lr_min=0.0)
    assert lr_at(both, 4) == pytest.approx(0.5e-3 * (0.5 + 0.5 * np.cos(np.pi * 0.04)))
    assert lr_at(both, 100) == 0.0


def test_a_distiller_follows_the_schedule_across_a_resume(tmp_path):
    """The decay counts the run's global step, so a distiller resumed from a checkpoint (the next
    iteration) continues the same schedule."""
    task = tiny_task()
    b = task.generate(32, 4, 0)
    data = ContextData(b.facts, b.fact_mask, b.questions, b.answers, np.ones(b.questions.shape[:2], bool))
    cfg = DistillConfig(batch_contexts=8, lr=3e-3, decay_steps=6, lr_min=0.2)
    a = Distiller(task, SMALL_X, cfg, seed=1)
    a.train(data, 3)
    save_checkpoint(a.state_dict(), str(tmp_path / "a.pt"))
    r = Distiller(task, SMALL_X, cfg, seed=1)
    r.load_state_dict(load_checkpoint(str(tmp_path / "a.pt")))
    r.train(data, 4)
    assert r.opt.param_groups[0]["lr"] == pytest.approx(3e-3 * 0.2)  # step 7 of a 6-step decay


def test_checkpoint_resume_is_bit_identical(tmp_path):
    task = tiny_task()
    b = task.generate(64, 4, 0)
    data = ContextData(b.facts, b.fact_mask, b.questions, b.answers, np.ones(b.questions.shape[:2], bool))
    cfg = DistillConfig(batch_contexts=8, ema_horizon=3, lr=3e-3)
    a = Distiller(task, SMALL_X, cfg, seed=7)
    a.train(data, 5)
    save_checkpoint(a.state_dict(), str(tmp_path / "mid.pt"))
    a.train(data, 6)
    b2 = Distiller(task, SMALL_X, cfg, seed=99)  # a different seed: everything must come from the file
    b2.load_state_dict(load_checkpoint(str(tmp_path / "mid.pt")))
    b2.train(data, 6)
    for (k, p), q in zip(a.model.state_dict().items(), b2.model.state_dict().values()):
        assert torch.equal(p, q), k
    for p, q in zip(a.teacher.model.state_dict().values(), b2.teacher.model.state_dict().values()):
        assert torch.equal(p, q)
    assert a.step == b2.step == 11


def test_distillation_learns_a_tiny_task():
    """Supervised distillation on tiny permutations gets well above chance quickly."""
    task = tiny_task()
    b = task.generate(256, 4, 0)
    data = ContextData(b.facts, b.fact_mask, b.questions, b.answers, np.ones(b.questions.shape[:2], bool))
    d = Distiller(task, SMALL_X, DistillConfig(batch_contexts=16, lr=3e-3, ema_horizon=20), seed=0)
    d.train(data, 300)
    test = task.generate(64, 4, 1)
    got = XAnswerer(d.teacher.model, test.facts, test.fact_mask)(np.repeat(np.arange(64), 4), test.questions.reshape(256, -1))
    acc = (got == test.answers.reshape(256, -1)).all(-1).mean()
    assert acc > 0.6, acc  # chance is 1/4


def test_hprime_rename_maps_each_transcripts_names_by_its_own_permutation():
    """Names map one to one within a row, every other token is kept, rows get different
    permutations; a task whose H is not checked for it is refused with the option's name."""
    task = make_task("union_find", nchars=8, length=1)
    tokens = amplify_h_batch(task, task.generate(16, 8, 0, n_questions=2)).tokens()
    tr = HPrimeTrainer(task, HPrimeConfig(width=32, heads=2, layers=2, ffn=2), HPrimeTrainConfig(batch=8, rename=True), 0)
    seqs = tr.sequences(tokens)
    out = tr.renamed(seqs)
    base, n = task._char_base, task.nchars
    is_name = (seqs >= base) & (seqs < base + n)
    assert (out[~is_name] == seqs[~is_name]).all() and ((out[is_name] >= base) & (out[is_name] < base + n)).all()
    maps = []
    for row_in, row_out in zip(seqs, out):
        pairs = {(int(a), int(b)) for a, b in zip(row_in, row_out) if base <= a < base + n}
        assert len({a for a, _ in pairs}) == len(pairs) == len({b for _, b in pairs})  # a bijection
        maps.append(frozenset(pairs))
    assert len(set(maps)) > len(maps) // 2
    before = [p.detach().clone() for p in tr.model.parameters()]
    tr.train(tokens, 3)  # trains on renamed batches
    assert any((a != b.detach()).any() for a, b in zip(before, tr.model.parameters()))
    with pytest.raises(ValueError, match="hprime_train.rename: task wildcard"):
        HPrimeTrainer(make_task("wildcard", nchars=2, length=3), HPrimeConfig(width=32, heads=2, layers=2, ffn=2),
                      HPrimeTrainConfig(rename=True), 0)
    with pytest.raises(ValueError, match="hprime_train.rename must be"):
        HPrimeTrainConfig(rename="yes")


def test_hprime_counterfactual_swaps_a_share_of_each_batch_for_hs_replayed_copies():
    """The copies are H's transcripts for shifted depths (replayed, so every subquestion is H's),
    H' trains on them, and a task without counterfactual answers or a share outside [0, 1] is
    refused with the option's name."""
    task = make_task("union_find", nchars=8, length=1)
    tokens = amplify_h_batch(task, task.generate(16, 8, 0, n_questions=4)).tokens()
    tr = HPrimeTrainer(task, HPrimeConfig(width=32, heads=2, layers=2, ffn=2),
                       HPrimeTrainConfig(batch=16, counterfactual=0.5), 0)
    copies = tr.counterfactuals(tokens)
    assert copies.shape == tokens.shape and (copies != tokens).any(1).mean() > 0.2
    again = amplify_h(task, np.arange(len(tokens)), tokens[:, :task.question_length],
                      lambda r, q: np.zeros((len(q), task.answer_length), np.int64))  # H's questions stay H's
    assert again.subquestions[:, 0].tolist() == copies[:, task.question_length:2 * task.question_length].tolist()
    before = [p.detach().clone() for p in tr.model.parameters()]
    tr.train(tokens, 3)
    assert any((a != b.detach()).any() for a, b in zip(before, tr.model.parameters()))
    with pytest.raises(ValueError, match="hprime_train.counterfactual: task wildcard"):
        HPrimeTrainer(make_task("wildcard", nchars=2, length=3), HPrimeConfig(width=32, heads=2, layers=2, ffn=2),
                      HPrimeTrainConfig(counterfactual=0.5), 0)
    for bad in (1.5, -0.1, True):
        with pytest.raises(ValueError, match="hprime_train.counterfactual must be in"):
            HPrimeTrainConfig(counterfactual=bad)
