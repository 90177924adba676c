"""The demonstration page: a person acts as H on a local web page, and each completed transcript
is appended to data/demonstrations/<task>.jsonl in the scripted-H export format.

The person sees a top-level question (never the facts), a help with the task's question forms and
the names in play, and the (subquestion, answer) rows so far. They type one subquestion per
round, at most R, each checked (`textio.parse_question`: words, form, names) before anything is
answered; primitive subquestions are answered by the look-up oracle, the others by the answerer
(X from a checkpoint, or the oracle when no checkpoint is given). A final answer is checked
(`textio.parse_answer`: words and answer type), compared with the ground truth, appended
atomically (`demonstrations.append_demonstration`) and a new question starts. Nothing is written
on an error; the error comes back as JSON and is shown next to the input.

Server: the standard library's ThreadingHTTPServer, no extra dependency. Security:

- bound to 127.0.0.1 by default; clients from other addresses are refused (403) unless --host
  names a non-loopback address;
- the Host header must be 127.0.0.1, localhost or [::1] (optionally with the port), or a host
  given with --allow-host / --host: anything else is refused (403), which defeats DNS rebinding;
- POST bodies: JSON only (Content-Type application/json, which a cross-site form cannot send),
  at most MAX_BODY bytes (413), UTF-8 (binary is refused), Origin, when sent, must be allowed;
- nothing typed is ever put into HTML: the one server-rendered value (the task title) is
  HTML-escaped, the page shows API values with textContent only, and JSON responses escape
  <, > and & as \\u003c etc., with X-Content-Type-Options: nosniff and a strict
  Content-Security-Policy (scripts and styles only from this origin, no inline code).

API (all JSON):
  GET  /api/state[?session=ID]   the session's state (a new session with a new question if ID is unknown)
  POST /api/ask    {session, text}  ask the next subquestion
  POST /api/answer {session, text}  submit the final answer: writes one line, starts a new question
  POST /api/skip   {session}        a new question without writing anything
"""
from __future__ import annotations

import datetime as _dt
import html
import ipaddress
import json
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import numpy as np

from .demonstrations import append_demonstration, demonstration_record, demonstration_stats
from .tasks.base import Batch, Task
from .textio import ParseError, context_names, parse_answer, parse_question, record_names, word_labels

MAX_BODY = 4096  # bytes of a POST body
MAX_SESSIONS = 64  # open sessions kept (oldest dropped)
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}

BatchAnswerer = Callable[[Batch, np.ndarray, np.ndarray], np.ndarray]  # (batch, ctx [N], q [N, ql]) -> [N, al]


class DemoError(Exception):
    """An error to show next to an input: (HTTP status, one-line message)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def load_answerer(checkpoint: str | None, task: Task) -> tuple[BatchAnswerer | None, str]:
    """(answerer, description) for --checkpoint; (None, ...) means the oracle answers.

    The learning core provides `amplification.xmodel.load_checkpoint_answerer(path, task)`; it is
    imported lazily so that the page works without torch when no checkpoint is given."""
    if not checkpoint:
        return None, "the oracle (no --checkpoint given): every answer is the ground truth"
    try:
        from .xmodel import load_checkpoint_answerer
    except ImportError as e:
        raise ValueError(f"cannot answer from a checkpoint: amplification.xmodel.load_checkpoint_answerer "
                         f"is not available ({e})") from None
    try:  # best effort: refuse a checkpoint of another task or size
        from .checkpoint import task_of
        from .train import load_checkpoint

        other = task_of(load_checkpoint(checkpoint))
        if other.name != task.name or other.params != task.params:
            raise ValueError(f"checkpoint {checkpoint} is for {other.name} {other.params}, "
                             f"not {task.name} {task.params}")
    except ImportError:
        pass
    return load_checkpoint_answerer(checkpoint, task), f"X from checkpoint {checkpoint} (primitive questions: the oracle)"


@dataclass
class Session:
    id: str
    seed: int
    batch: Batch
    rng: np.random.Generator
    subquestions: list = field(default_factory=list)
    subanswers: list = field(default_factory=list)
    primitive: list = field(default_factory=list)
    names: set = field(default_factory=set)


class Demonstrator:
    """The page's logic, independent of HTTP (and tested without it)."""

    def __init__(self, task: Task, out: str, size: int | None = None, seed: int | None = None,
                 answerer: BatchAnswerer | None = None, answerer_name: str = "the oracle",
                 note: str | None = None):
        self.task = task
        self.out = out
        self.size = task.check_size(size if size is not None else task.max_size)
        self.next_seed = int(seed) if seed is not None else secrets.randbelow(2**31)
        self.answerer = answerer
        self.answerer_name = answerer_name
        self.note = note  # provenance written into every record, e.g. who or what acted as H
        self.sessions: OrderedDict[str, Session] = OrderedDict()
        self.lock = threading.RLock()
        self.last: dict[str, dict] = {}
        self._last_batch = None  # keeps the batch the answerer saw alive (its cache keys on id())

    # ---- sessions -------------------------------------------------------------------------------
    def _new_question(self, sid: str) -> Session:
        seed = self.next_seed
        self.next_seed += 1
        batch = self.task.generate(1, self.size, seed, n_questions=1)
        s = Session(sid, seed, batch, np.random.default_rng(seed))
        s.names = set(context_names(self.task, batch, 0))
        self.sessions[sid] = s
        self.sessions.move_to_end(sid)
        while len(self.sessions) > MAX_SESSIONS:
            old, _ = self.sessions.popitem(last=False)
            self.last.pop(old, None)
        return s

    def session(self, sid: str | None, create: bool = True) -> Session:
        with self.lock:
            if isinstance(sid, str) and sid in self.sessions:
                self.sessions.move_to_end(sid)
                return self.sessions[sid]
            if not create:
                raise DemoError("unknown or expired session; reload the page", 409)
            return self._new_question(secrets.token_hex(8))

    # ---- state ----------------------------------------------------------------------------------
    def state(self, s: Session) -> dict:
        t = self.task
        count, agreed = demonstration_stats(self.out, t.name)
        rows = [{"subquestion": t.decode(q), "answer": t.decode(a), "by": "oracle" if p else "answerer"}
                for q, a, p in zip(s.subquestions, s.subanswers, s.primitive)]
        return {
            "session": s.id,
            "task": t.name,
            "title": t.title,
            "params": t.params,
            "size": int(s.batch.size),
            "seed": s.seed,
            "question": t.decode(s.batch.questions[0, 0]),
            "rounds": t.rounds,
            "used": len(rows),
            "can_ask": len(rows) < t.rounds,
            "history": rows,
            "forms": list(t.question_forms),
            "names": sorted(s.names),
            "words": word_labels(t),
            "answerer": self.answerer_name,
            "answerer_short": "oracle (as X)" if self.answerer is None else "X",
            "count": count,
            "agreed": agreed,
            "out": self.out,
            "last": self.last.get(s.id),
        }

    # ---- actions ----------------------------------------------------------------------------------
    def ask(self, sid, text) -> dict:
        with self.lock:
            s = self.session(sid, create=False)
            t = self.task
            if len(s.subquestions) >= t.rounds:
                raise DemoError(f"all R={t.rounds} rounds are used: submit a final answer")
            q = parse_question(t, _text(text), s.batch, 0, s.names)
            ctx = np.zeros(1, dtype=np.int64)
            prim = bool(t.is_primitive(q[None])[0])
            if prim or self.answerer is None:
                a = t.answer(s.batch.db, ctx, q[None], s.rng)[0]
            else:
                self._last_batch = s.batch
                a = np.asarray(self.answerer(s.batch, ctx, q[None]), dtype=np.int64).reshape(-1)
                if a.shape[0] != t.answer_length:
                    raise DemoError(f"the answerer returned {a.shape[0]} tokens, expected {t.answer_length}", 500)
                a = np.where((a >= 0) & (a < t.nvocab), a, 0)
            s.subquestions.append(q)
            s.subanswers.append(a)
            s.primitive.append(prim)
            s.names.update(record_names(t, a))
            return self.state(s)

    def answer(self, sid, text) -> dict:
        with self.lock:
            s = self.session(sid, create=False)
            t = self.task
            truth = s.batch.answers[0, 0]
            h = parse_answer(t, _text(text), truth)
            now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
            extra = {"note": self.note} if self.note else {}
            rec = demonstration_record(t, s.batch, s.seed, s.subquestions, s.subanswers, h,
                                       source="human", answerer=self.answerer_name, time=now, **extra)
            append_demonstration(self.out, rec)  # the only write; raises before anything changes
            self.last[s.id] = {"question": rec["question"], "h_answer": rec["h_answer"],
                               "truth": rec["answer"], "agrees": rec["agrees_with_truth"],
                               "asked": len(rec["transcript"])}
            s = self._new_question(s.id)
            return self.state(s)

    def skip(self, sid) -> dict:
        with self.lock:
            s = self.session(sid, create=False)
            self.last.pop(s.id, None)
            return self.state(self._new_question(s.id))


def _text(value) -> str:
    if not isinstance(value, str):
        raise DemoError("'text' must be a string")
    return value


# ---- HTTP -------------------------------------------------------------------------------------------
def _json_bytes(obj) -> bytes:
    s = json.dumps(obj)
    # no HTML-significant characters in any response, even if a browser were to sniff it as HTML
    s = s.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    return s.encode("utf-8")


def _split_host(value: str) -> tuple[str, int | None]:
    """'host[:port]' or '[v6][:port]' -> (host, port or None); raises ValueError."""
    u = urlsplit("//" + value)
    return (u.hostname or "").lower(), u.port


class DemoHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr, demo: Demonstrator, allow_remote: bool = False, allow_hosts=()):
        self.demo = demo
        self.allow_remote = allow_remote
        super().__init__(addr, DemoHandler)
        self.allowed_hosts = set(LOOPBACK_NAMES) | {h.lower().strip("[]") for h in allow_hosts}
        bound = str(addr[0]).lower()
        if bound not in ("", "0.0.0.0", "::"):
            self.allowed_hosts.add(bound)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def host_ok(self, value: str | None) -> bool:
        if not value:
            return False
        try:
            host, port = _split_host(value.strip())
        except ValueError:
            return False
        return host in self.allowed_hosts and port in (None, self.port)


class DemoHandler(BaseHTTPRequestHandler):
    server: DemoHTTPServer
    server_version = "amplification-demonstrate"

    def version_string(self) -> str:
        return self.server_version
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: one line per request is noise on the terminal
        pass

    # ---- responses ----
    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.send_header("Content-Security-Policy",
                         "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                         "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj) -> None:
        self._send(status, _json_bytes(obj), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    # ---- checks ----
    def _refused(self) -> bool:
        srv = self.server
        if not srv.allow_remote:
            try:
                local = ipaddress.ip_address(self.client_address[0].split("%")[0]).is_loopback
            except ValueError:
                local = False
            if not local:
                self.close_connection = True
                self._error(403, "refused: only local clients may use this page")
                return True
        if not srv.host_ok(self.headers.get("Host")):
            self.close_connection = True
            self._error(403, f"refused: host {self.headers.get('Host')!r} is not allowed")
            return True
        return False

    def _body(self):
        """The POST body as a JSON object, or None after an error response."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._error(411, "send a Content-Length, not a chunked body")
            return None
        try:
            n = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            self._error(411, "a Content-Length is required")
            return None
        if n < 0 or n > MAX_BODY:
            self.close_connection = True
            if 0 < n <= 64 * MAX_BODY:  # drain a moderately large body so the client reads the reply
                self.rfile.read(n)
            self._error(413, f"input too large: {n} bytes, at most {MAX_BODY}")
            return None
        raw = self.rfile.read(n)
        origin = self.headers.get("Origin")
        if origin is not None:
            u = urlsplit(origin)
            if u.scheme != "http" or not self.server.host_ok(u.netloc):
                self._error(403, f"refused: origin {origin!r} is not allowed")
                return None
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            self._error(415, "send JSON (Content-Type: application/json)")
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._error(400, "binary input: the request is not UTF-8 text")
            return None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            self._error(400, "the request is not valid JSON")
            return None
        if not isinstance(obj, dict):
            self._error(400, "the request must be a JSON object")
            return None
        return obj

    # ---- routes ----
    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        if self._refused():
            return
        url = urlsplit(self.path)
        demo = self.server.demo
        if url.path in ("/", "/index.html"):
            page = PAGE.replace("{title}", html.escape(f"{demo.task.title}: act as H"))
            self._send(200, page.encode("utf-8"), "text/html; charset=utf-8")
        elif url.path == "/app.js":
            self._send(200, APP_JS.encode("utf-8"), "text/javascript; charset=utf-8")
        elif url.path == "/app.css":
            self._send(200, APP_CSS.encode("utf-8"), "text/css; charset=utf-8")
        elif url.path == "/api/state":
            sid = parse_qs(url.query).get("session", [None])[0]
            self._run(lambda: demo.state(demo.session(sid)))
        else:
            self._error(404, "not found")

    def do_POST(self):
        if self._refused():
            return
        path = urlsplit(self.path).path
        routes = {"/api/ask", "/api/answer", "/api/skip"}
        if path not in routes:
            self.close_connection = True
            self._error(404, "not found")
            return
        body = self._body()
        if body is None:
            return
        demo = self.server.demo
        sid = body.get("session")
        if path == "/api/ask":
            self._run(lambda: demo.ask(sid, body.get("text")))
        elif path == "/api/answer":
            self._run(lambda: demo.answer(sid, body.get("text")))
        else:
            self._run(lambda: demo.skip(sid))

    def _run(self, fn) -> None:
        try:
            self._json(200, fn())
        except ParseError as e:
            self._error(400, str(e))
        except DemoError as e:
            self._error(e.status, str(e))
        except Exception as e:  # noqa: BLE001 - one line to the page, never a traceback
            msg = str(e).splitlines()[0] if str(e) else ""
            self._error(500, f"server error: {type(e).__name__}: {msg}")


def make_server(demo: Demonstrator, host: str = "127.0.0.1", port: int = 8765, allow_hosts=()) -> DemoHTTPServer:
    """A server for `demo`; local clients only unless `host` is not a loopback address."""
    try:
        allow_remote = not ipaddress.ip_address(host).is_loopback
    except ValueError:
        allow_remote = host.lower() != "localhost"
    return DemoHTTPServer((host, port), demo, allow_remote=allow_remote, allow_hosts=allow_hosts)


def serve_in_thread(server: DemoHTTPServer) -> threading.Thread:
    th = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="demonstrate", daemon=True)
    th.start()
    return th


# ---- the page -------------------------------------------------------------------------------------------
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head>
<body>
<header>
  <h1 id="title">{title}</h1>
  <div id="counts" class="counts">&nbsp;</div>
</header>
<main>
<section class="card">
  <div class="label">Question <span id="qmeta" class="meta"></span></div>
  <div id="question" class="question">&hellip;</div>
  <div class="meta">You do not see the facts. Ask subquestions, one per round, then answer.
    Answers come from <span id="answerer"></span>.</div>
</section>
<section class="card">
  <div class="label">Rounds <span id="round" class="meta"></span></div>
  <table id="history"><thead><tr><th>#</th><th>subquestion</th><th>answer</th><th>answered by</th></tr></thead>
  <tbody></tbody></table>
  <form id="ask-form" autocomplete="off">
    <input id="ask-text" name="ask" maxlength="200" placeholder="next subquestion, e.g. the question itself" spellcheck="false">
    <button id="ask-btn" type="submit">Ask</button>
  </form>
  <div id="ask-error" class="error" role="alert"></div>
</section>
<section class="card">
  <div class="label">Final answer</div>
  <form id="answer-form" autocomplete="off">
    <input id="answer-text" name="answer" maxlength="200" placeholder="your answer, or ? for unknown" spellcheck="false">
    <button id="answer-btn" type="submit">Submit</button>
    <button id="skip-btn" type="button" class="secondary">Skip question</button>
  </form>
  <div id="answer-error" class="error" role="alert"></div>
  <div id="last" class="last"></div>
</section>
<section class="card help">
  <div class="label">Help</div>
  <div>Question forms:</div>
  <ul id="forms"></ul>
  <div>Names in play: <code id="names"></code></div>
  <div>Other words: <code id="words"></code></div>
  <div class="meta">Type words separated by spaces, as questions are shown. <span id="params"></span></div>
</section>
</main>
</body>
</html>
"""

APP_JS = r"""'use strict';
let session = null;
let busy = false;
const $ = (id) => document.getElementById(id);

function setText(id, text) { $(id).textContent = text; }

function render(s) {
  session = s.session;
  setText('question', s.question);
  setText('qmeta', 'size ' + s.size + ', seed ' + s.seed);
  setText('answerer', s.answerer);
  setText('round', s.used + ' of ' + s.rounds + ' used' + (s.can_ask ? '' : ': submit a final answer'));
  setText('counts', s.count + ' demonstrations, ' + s.agreed + ' agreed with the ground truth');
  setText('names', s.names.join(' '));
  setText('words', s.words.join(' '));
  setText('params', 'Task parameters: ' + JSON.stringify(s.params) + '. Round limit R = ' + s.rounds + '.');
  const forms = $('forms');
  forms.replaceChildren(...s.forms.map((f) => { const li = document.createElement('li'); li.textContent = f; return li; }));
  const body = $('history').querySelector('tbody');
  body.replaceChildren(...s.history.map((h, i) => {
    const tr = document.createElement('tr');
    const by = h.by === 'oracle' ? 'look-up oracle (primitive)' : s.answerer_short;
    for (const [cls, v] of [['n', String(i + 1)], ['sq', h.subquestion], ['sa', h.answer], ['by', by]]) {
      const td = document.createElement('td'); td.className = cls; td.textContent = v; tr.appendChild(td);
    }
    return tr;
  }));
  $('ask-text').disabled = !s.can_ask;
  $('ask-btn').disabled = !s.can_ask;
  const last = $('last');
  if (s.last) {
    last.textContent = 'Recorded: ' + s.last.question + ' -> ' + s.last.h_answer + ' (' + s.last.asked +
      ' subquestions); ground truth ' + s.last.truth + (s.last.agrees ? ': agreed.' : ': did not agree.');
    last.className = 'last ' + (s.last.agrees ? 'ok' : 'bad');
  } else {
    last.textContent = ''; last.className = 'last';
  }
  document.body.dataset.session = s.session;
  document.body.dataset.used = String(s.used);
  document.body.dataset.count = String(s.count);
}

async function call(method, url, payload) {
  const opts = { method, headers: {} };
  if (payload !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(payload);
  }
  const r = await fetch(url, opts);
  let data;
  try { data = await r.json(); } catch (e) { data = { error: 'bad response from the server (' + r.status + ')' }; }
  if (!r.ok && !data.error) data.error = 'error ' + r.status;
  return data;
}

async function act(url, inputId, errorId, withText) {
  if (busy) return;
  busy = true;
  setText('ask-error', ''); setText('answer-error', '');
  try {
    const payload = { session };
    if (withText) payload.text = $(inputId).value;
    const data = await call('POST', url, payload);
    if (data.error) {
      setText(errorId, data.error);
      $(errorId).dataset.seq = String(Number($(errorId).dataset.seq || 0) + 1);
    } else {
      if (withText) $(inputId).value = '';
      render(data);
      if (inputId) $(data.can_ask ? 'ask-text' : 'answer-text').focus();
    }
  } catch (e) {
    setText(errorId, 'cannot reach the server: ' + e);
  } finally {
    busy = false;
    document.body.dataset.busy = '0';
  }
}

window.addEventListener('DOMContentLoaded', async () => {
  $('ask-form').addEventListener('submit', (e) => { e.preventDefault(); document.body.dataset.busy = '1'; act('/api/ask', 'ask-text', 'ask-error', true); });
  $('answer-form').addEventListener('submit', (e) => { e.preventDefault(); document.body.dataset.busy = '1'; act('/api/answer', 'answer-text', 'answer-error', true); });
  $('skip-btn').addEventListener('click', () => { document.body.dataset.busy = '1'; act('/api/skip', null, 'answer-error', false); });
  const data = await call('GET', '/api/state');
  if (data.error) setText('ask-error', data.error); else render(data);
  document.body.dataset.ready = '1';
  $('ask-text').focus();
});
"""

APP_CSS = """
:root { --fg: #1d2330; --muted: #667085; --line: #d9dee7; --accent: #2f5bd3; --bad: #b42318; --ok: #067647; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: #f5f7fa; }
header { display: flex; justify-content: space-between; align-items: baseline; padding: 14px 24px;
         background: #fff; border-bottom: 1px solid var(--line); }
h1 { font-size: 19px; margin: 0; }
.counts { color: var(--muted); }
main { max-width: 860px; margin: 18px auto; padding: 0 16px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px; margin-bottom: 14px; }
.label { font-weight: 600; margin-bottom: 6px; }
.meta { color: var(--muted); font-weight: 400; font-size: 13px; }
.question { font: 600 26px/1.3 ui-monospace, "DejaVu Sans Mono", monospace; letter-spacing: 1px; margin: 4px 0 8px; }
table { border-collapse: collapse; width: 100%; margin-bottom: 10px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); }
th { color: var(--muted); font-weight: 500; font-size: 13px; }
td.sq, td.sa { font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
td.by { color: var(--muted); font-size: 13px; }
form { display: flex; gap: 8px; }
input { flex: 1; font: 16px ui-monospace, "DejaVu Sans Mono", monospace; padding: 7px 10px; border: 1px solid var(--line); border-radius: 6px; }
input:disabled { background: #f0f2f5; }
button { font: inherit; padding: 7px 16px; border: 0; border-radius: 6px; background: var(--accent); color: #fff; cursor: pointer; }
button:disabled { background: #9aa9d6; cursor: default; }
button.secondary { background: #e7eaf0; color: var(--fg); }
.error { color: var(--bad); min-height: 1.4em; margin-top: 6px; font-size: 14px; }
.last { margin-top: 4px; font-size: 14px; }
.last.ok { color: var(--ok); } .last.bad { color: var(--bad); }
.help ul { margin: 4px 0 8px 20px; padding: 0; }
code { font: 14px ui-monospace, "DejaVu Sans Mono", monospace; background: #f0f2f5; padding: 1px 5px; border-radius: 4px; }
"""
