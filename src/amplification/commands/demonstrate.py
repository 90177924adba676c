"""`amplification demonstrate TASK`: serve the local page on which a person acts as H."""
from __future__ import annotations

import os
import sys

from .tasks_cmd import add_task_options, task_from_args


def cmd_demonstrate(args) -> int:
    from ..demonstrate import Demonstrator, load_answerer, make_server
    from ..demonstrations import default_path

    task = task_from_args(args)
    out = args.out or default_path(task.name)
    answerer, desc = load_answerer(args.checkpoint, task)
    demo = Demonstrator(task, out, size=args.size, seed=args.seed, answerer=answerer, answerer_name=desc,
                        note=args.note)
    try:
        server = make_server(demo, args.host, args.port, allow_hosts=args.allow_host or ())
    except OSError as e:
        raise ValueError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"{task.title} {task.params} size {demo.size}: act as H at http://{host}:{server.port}/", file=sys.stderr)
    print(f"answers from {desc}; demonstrations appended to {os.path.abspath(out)}; Ctrl-C stops", file=sys.stderr)
    if server.allow_remote:
        print(f"warning: listening on {args.host}, so clients from other machines are accepted", file=sys.stderr)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("demonstrate", help="serve a local page on which a person acts as H and records transcripts")
    add_task_options(p)
    p.add_argument("--checkpoint", default=None,
                   help="X checkpoint that answers non-primitive subquestions (default: the oracle)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; another address also accepts remote clients)")
    p.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    p.add_argument("--allow-host", action="append", default=None, metavar="NAME",
                   help="also accept this Host header name (repeatable)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the first question (question k uses seed+k); default: random")
    p.add_argument("--note", default=None,
                   help="provenance stored as \"note\" in every record (e.g. who acted as H)")
    p.add_argument("--out", default=None, help="demonstrations file (default data/demonstrations/TASK.jsonl)")
    p.set_defaults(func=cmd_demonstrate)
