"""The demonstration page: its HTTP API (each malformed input gets an error and writes nothing;
other hosts are refused) and, in headless Debian Chromium, a person decomposing a permutation
question exactly as the scripted H would."""
import http.client
import json
import os
import shutil
import socket
import tempfile

import numpy as np
import pytest

from amplification.demonstrate import MAX_BODY, DemoHTTPServer, Demonstrator, load_answerer, make_server, serve_in_thread
from amplification.demonstrations import demonstration_stats, load_demonstrations
from amplification.tasks import make_task
from amplification.textio import parse_answer, parse_question

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PARAMS = dict(nchars=8, length=1, log_iters=4)  # the reduced study's permutation configuration


@pytest.fixture
def task():
    return make_task("permutation", **PARAMS)


@pytest.fixture
def served(task, tmp_path):
    """A server on a free port whose contexts hold 6 of the 8 names (so unknown names exist)."""
    out = str(tmp_path / "demos" / "permutation.jsonl")
    demo = Demonstrator(task, out, size=6, seed=100)
    srv = make_server(demo, "127.0.0.1", 0)
    serve_in_thread(srv)
    yield srv, demo, out
    srv.shutdown()
    srv.server_close()


def request(srv, method, path, body=None, headers=None, raw=None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    hdrs = {"Content-Type": "application/json"} if (body is not None or raw is not None) else {}
    hdrs.update(headers or {})
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=data, headers=hdrs)
    r = conn.getresponse()
    text = r.read().decode()
    conn.close()
    try:
        return r.status, json.loads(text)
    except json.JSONDecodeError:
        return r.status, text


def state(srv, sid=None):
    status, s = request(srv, "GET", "/api/state" + (f"?session={sid}" if sid else ""))
    assert status == 200, s
    return s


def scripted_person(task, question_text, ask):
    """Follow the scripted H on the texts a person sees: `ask(subquestion text) -> answer text`.
    Returns the final answer's text."""
    gen = task.human(parse_question(task, question_text))
    try:
        sub = next(gen)
        while True:
            sub = gen.send(parse_answer(task, ask(task.decode(sub))))
    except StopIteration as stop:
        return task.decode(stop.value)


# ---- HTTP API ------------------------------------------------------------------------------------------
def test_api_decomposition_appends_one_line(served, task):
    srv, demo, out = served
    s = state(srv)
    assert s["count"] == 0 and s["used"] == 0 and s["rounds"] == 3
    assert "facts" not in json.dumps(s) and len(s["names"]) == 6
    sid = s["session"]

    def ask(text):
        status, r = request(srv, "POST", "/api/ask", {"session": sid, "text": text})
        assert status == 200, r
        return r["history"][-1]["answer"]

    final = scripted_person(task, s["question"], ask)
    status, r = request(srv, "POST", "/api/answer", {"session": sid, "text": final})
    assert status == 200, r
    assert r["count"] == 1 and r["agreed"] == 1 and r["last"]["agrees"] and r["used"] == 0
    assert r["question"] != s["question"] or r["seed"] != s["seed"]
    (line,) = open(out).read().splitlines()
    rec = json.loads(line)
    assert rec["source"] == "human" and rec["agrees_with_truth"] and rec["question"] == s["question"]
    assert rec["seed"] == s["seed"] and rec["size"] == 6 and rec["h_answer"] == final
    assert 2 <= len(rec["transcript"]) <= 3
    tr = load_demonstrations(task, out)
    assert tr.asked.tolist() == [len(rec["transcript"])]


def test_round_limit_and_skip(served, task):
    srv, demo, out = served
    s = state(srv)
    x = s["question"].split()[0]
    for _ in range(3):
        status, r = request(srv, "POST", "/api/ask", {"session": s["session"], "text": f"{x} 0 0 0 1"})
        assert status == 200 and r["history"][-1]["by"] == "oracle"
    assert r["can_ask"] is False
    status, r = request(srv, "POST", "/api/ask", {"session": s["session"], "text": f"{x} 0 0 0 1"})
    assert status == 400 and "all R=3 rounds are used" in r["error"]
    status, r = request(srv, "POST", "/api/skip", {"session": s["session"]})
    assert status == 200 and r["used"] == 0 and r["seed"] != s["seed"]
    assert not os.path.exists(out)


@pytest.mark.parametrize("endpoint,text,match", [
    ("/api/ask", "{x} 0 1", "wrong form"),
    ("/api/ask", "0 0 1 0 {x}", "wrong form"),
    ("/api/ask", "{absent} 0 0 1 0", "unknown name"),
    ("/api/ask", "q 0 0 1 0", "unknown word 'q'"),
    ("/api/ask", "{x} 0 0 1 0 " + "0 " * 120, "too long"),
    ("/api/ask", "{x}\u0000 0 0 1 0", "non-printable"),
    ("/api/ask", "", "empty"),
    ("/api/answer", "1", "wrong answer type"),
    ("/api/answer", "{x} {x}", "answer too long"),
    ("/api/answer", "zz", "unknown word"),
])
def test_malformed_input_gets_an_error_and_writes_nothing(served, endpoint, text, match):
    srv, demo, out = served
    s = state(srv)
    x = s["question"].split()[0]
    absent = sorted(set("abcdefgh") - set(s["names"]))[0]
    status, r = request(srv, "POST", endpoint, {"session": s["session"], "text": text.format(x=x, absent=absent)})
    assert status == 400 and match in r["error"], r
    assert "\n" not in r["error"]
    assert not os.path.exists(out)
    assert state(srv, s["session"])["used"] == 0  # nothing asked either


def test_oversized_binary_and_non_json_bodies(served):
    srv, demo, out = served
    sid = state(srv)["session"]
    status, r = request(srv, "POST", "/api/ask", {"session": sid, "text": "a" * (MAX_BODY + 10)})
    assert status == 413 and "too large" in r["error"]
    status, r = request(srv, "POST", "/api/answer", raw=b"\xff\xfe\x00\x01binary\x80")
    assert status == 400 and "binary" in r["error"]
    status, r = request(srv, "POST", "/api/answer", raw=b"{not json")
    assert status == 400 and "JSON" in r["error"]
    status, r = request(srv, "POST", "/api/answer", {"session": sid, "text": 5})
    assert status == 400 and "string" in r["error"]
    status, r = request(srv, "POST", "/api/answer", raw=b"{}", headers={"Content-Type": "text/plain"})
    assert status == 415
    status, r = request(srv, "POST", "/api/answer", {"session": "nope", "text": "a"})
    assert status == 409
    assert not os.path.exists(out)


def test_other_hosts_and_origins_are_refused(served):
    srv, demo, out = served
    for host in ["evil.example", "evil.example:%d" % srv.port, "127.0.0.1.evil.example", "127.0.0.1:1"]:
        status, r = request(srv, "GET", "/", headers={"Host": host})
        assert status == 403 and "refused" in r["error"], host
        status, r = request(srv, "POST", "/api/answer", {"text": "a"}, headers={"Host": host})
        assert status == 403
    for host in ["127.0.0.1:%d" % srv.port, "localhost:%d" % srv.port, "localhost", "[::1]:%d" % srv.port]:
        status, _ = request(srv, "GET", "/", headers={"Host": host})
        assert status == 200, host
    status, r = request(srv, "POST", "/api/skip", {"session": "x"}, headers={"Origin": "http://evil.example"})
    assert status == 403 and "origin" in r["error"]
    assert not os.path.exists(out)


class RemoteClientServer(DemoHTTPServer):
    """Pretends every connection comes from another machine."""

    def get_request(self):
        sock, _ = super().get_request()
        return sock, ("10.1.2.3", 40000)


@pytest.mark.parametrize("allow_remote,expected", [(False, 403), (True, 200)])
def test_remote_clients_refused_unless_host_was_set(task, tmp_path, allow_remote, expected):
    srv = RemoteClientServer(("127.0.0.1", 0), Demonstrator(task, str(tmp_path / "d.jsonl"), seed=1),
                             allow_remote=allow_remote)
    serve_in_thread(srv)
    try:
        status, r = request(srv, "GET", "/api/state")
        assert status == expected, r
    finally:
        srv.shutdown()
        srv.server_close()
    assert make_server(Demonstrator(task, "x.jsonl", seed=1), "127.0.0.1", 0).allow_remote is False


def test_page_escapes_and_has_no_inline_script(served):
    srv, demo, out = served
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("GET", "/")
    r = conn.getresponse()
    page = r.read().decode()
    assert r.status == 200 and "script-src 'self'" in r.getheader("Content-Security-Policy")
    assert "<script>" not in page and 'src="/app.js"' in page
    conn.close()
    from amplification.demonstrate import APP_JS

    assert "innerHTML" not in APP_JS and "textContent" in APP_JS  # values are never parsed as HTML
    raw = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    raw.request("POST", "/api/ask", body=json.dumps({"text": "<img>", "session": state(srv)["session"]}),
                headers={"Content-Type": "application/json"})
    body = raw.getresponse().read()
    assert b"<" not in body and b"\\u003cimg\\u003e" in body
    raw.close()


def test_missing_checkpoint_is_one_line_error(task, tmp_path):
    assert load_answerer(None, task)[0] is None
    with pytest.raises((ValueError, FileNotFoundError)) as e:
        load_answerer(str(tmp_path / "none.pt"), task)
    assert "\n" not in str(e.value)


def test_cli_registers_demonstrate():
    from amplification.cli import build_parser

    args = build_parser().parse_args(["demonstrate", "permutation", "--nchars", "8", "--length", "1",
                                      "--port", "0", "--seed", "3"])
    assert args.host == "127.0.0.1" and args.port == 0 and args.checkpoint is None


def test_answerer_answers_non_primitive_questions(task, tmp_path):
    calls = []

    def fake(batch, ctx, q):  # a model that always says the first name
        calls.append(q.copy())
        return np.full((len(q), task.answer_length), task._char_base)

    demo = Demonstrator(task, str(tmp_path / "d.jsonl"), seed=4, answerer=fake, answerer_name="fake X")
    s = demo.session(None)
    x = demo.state(s)["question"].split()[0]
    r = demo.ask(s.id, f"{x} 0 0 1 1")
    assert r["history"][-1] == {"subquestion": f"{x} 0 0 1 1", "answer": "a", "by": "answerer"}
    r = demo.ask(s.id, f"{x} 0 0 0 1")
    assert r["history"][-1]["by"] == "oracle" and len(calls) == 1


# ---- the browser -------------------------------------------------------------------------------------------
def _browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("Debian chromium/chromium-driver not installed (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--window-size=1000,1100"]:
        opts.add_argument(a)
    profile = tempfile.mkdtemp(prefix="demo-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    try:
        drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    except Exception as e:  # noqa: BLE001
        shutil.rmtree(profile, ignore_errors=True)
        pytest.skip(f"headless chromium did not start: {str(e).splitlines()[0]}")
    drv.set_page_load_timeout(20)
    return drv, profile


def _wait(drv, cond, what):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(drv, 10, poll_frequency=0.05).until(lambda d: cond(d), message=f"waiting for {what}")


def _body(drv, key):
    return drv.find_element("tag name", "body").get_attribute(f"data-{key}")


def _type(drv, input_id, text):
    el = drv.find_element("id", input_id)
    el.clear()
    el.send_keys(text)
    drv.find_element("id", input_id.replace("-text", "-btn")).click()


def test_browser_decomposes_a_permutation_question(served, task):
    srv, demo, out = served
    drv, profile = _browser()
    try:
        drv.get(f"http://127.0.0.1:{srv.port}/")
        _wait(drv, lambda d: _body(d, "ready") == "1", "the page")
        assert "0 demonstrations, 0 agreed with the ground truth" in drv.find_element("id", "counts").text
        question = drv.find_element("id", "question").text
        help_text = drv.find_element("id", "forms").text
        assert "NAME BITS" in help_text

        # malformed input first: an inline error, nothing asked, nothing written
        _type(drv, "ask-text", question.split()[0] + " 0 1")
        _wait(drv, lambda d: d.find_element("id", "ask-error").text, "the inline error")
        assert "wrong form" in drv.find_element("id", "ask-error").text
        assert _body(drv, "used") == "0" and not os.path.exists(out)

        def ask(text):
            n = int(_body(drv, "used"))
            _type(drv, "ask-text", text)
            _wait(drv, lambda d: _body(d, "used") == str(n + 1), f"the answer to {text!r}")
            assert drv.find_element("id", "ask-error").text == ""
            rows = drv.find_elements("css selector", "#history tbody tr")
            assert rows[-1].find_element("css selector", "td.sq").text == text
            return rows[-1].find_element("css selector", "td.sa").text

        final = scripted_person(task, question, ask)
        _type(drv, "answer-text", final)
        _wait(drv, lambda d: _body(d, "count") == "1", "the recorded demonstration")
        assert "1 demonstrations, 1 agreed" in drv.find_element("id", "counts").text
        assert "agreed" in drv.find_element("id", "last").text
        assert drv.find_element("id", "question").text  # a new question is shown
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)
    (line,) = open(out).read().splitlines()
    rec = json.loads(line)
    assert rec["question"] == question and rec["h_answer"] == final
    assert rec["agrees_with_truth"] is True and rec["source"] == "human"
    # exactly the scripted H's transcript for this question
    b = task.generate(1, rec["size"], rec["seed"], n_questions=1)
    from amplification.human import amplify_h_batch

    ref = amplify_h_batch(task, b, rng=0)
    assert [r["subquestion_tokens"] for r in rec["transcript"]] == ref.subquestions[0, : int(ref.asked[0])].tolist()
    assert demonstration_stats(out, "permutation") == (1, 1)


def test_checkpoint_answerer_end_to_end(task, tmp_path):
    """A (tiny, untrained) X checkpoint answers the non-primitive subquestions through the page logic."""
    torch = pytest.importorskip("torch")
    from dataclasses import asdict

    from amplification.hparams import XConfig
    from amplification.xmodel import XModel

    cfg = XConfig(width=16, heads=2, embed=8, enc_layers=1, dec_layers=1)
    model = XModel.for_task(task, cfg)
    sd = {"kind": "x", "task": {"name": task.name, "params": task.params}, "xcfg": asdict(cfg),
          "model": model.state_dict(), "teacher": model.state_dict()}
    path = str(tmp_path / "x.pt")
    torch.save(sd, path)
    answerer, desc = load_answerer(path, task)
    assert "x.pt" in desc
    demo = Demonstrator(task, str(tmp_path / "d.jsonl"), seed=2, answerer=answerer, answerer_name=desc)
    s = demo.session(None)
    x = demo.state(s)["question"].split()[0]
    r = demo.ask(s.id, f"{x} 0 1 0 1")
    assert r["history"][-1]["by"] == "answerer" and r["answerer_short"] == "X"
    a = parse_answer(task, r["history"][-1]["answer"]) if r["history"][-1]["answer"] != "?" else None
    assert a is None or a.shape == (task.answer_length,)
    other = make_task("permutation", nchars=4, length=1, log_iters=4)
    sd["task"] = {"name": other.name, "params": other.params}
    torch.save(sd, path)
    with pytest.raises(ValueError, match="is for permutation"):
        load_answerer(path, task)


SMALL = {"permutation": dict(nchars=4, length=1, log_iters=3), "assignments": dict(nchars=4, length=1),
         "wildcard": dict(nchars=2, length=3), "shortest_path": dict(nchars=4, length=1),
         "union_find": dict(nchars=4, length=1)}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_task_can_be_demonstrated_as_h(name, tmp_path):
    """The page accepts every subquestion the scripted H asks, for every registered task, and
    the recorded transcripts agree with the ground truth and load back."""
    from amplification.tasks import TASKS

    if name not in TASKS:
        pytest.skip(f"{name} not registered")
    task = make_task(name, **SMALL[name])
    out = str(tmp_path / f"{name}.jsonl")
    demo = Demonstrator(task, out, seed=10)
    s = demo.session(None)
    for _ in range(6):
        sid = s.id
        question = demo.state(s)["question"]
        final = scripted_person(task, question, lambda t: demo.ask(sid, t)["history"][-1]["answer"])
        r = demo.answer(sid, final)
        assert r["last"]["agrees"], (question, final, r["last"])
        s = demo.session(sid)
    assert demonstration_stats(out, name) == (6, 6)
    assert len(load_demonstrations(task, out)) == 6
