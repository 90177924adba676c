"""A stage server: one process that has imported torch once and forks a child for every job.

A study runs ~600 short jobs (0.3 to 10 s each), and every one of them would otherwise start Python
and `import torch` anew: about 1.6-2 s of CPU per job, a third of the default study's time. The
Snakefile starts this server when the study starts (`stage_server: true`) and stops it at the end;
each job's command is then the light client below, which hands its command line, working
directory, environment and stdin/stdout/stderr to the server and waits for the exit status.

    python -m amplification.server --socket /tmp/amp-x/stages.sock     # the server
    python -m amplification.server stage sample --config ...           # a client (any CLI command)

Why a fork per job (and not threads, or one long-lived worker): the child starts from exactly the
state a fresh `python -m amplification.cli` has after its imports, so a stage computes bit-identical
outputs either way (tests/test_server.py checks it), sets its own torch threads, and a crash or a
leak ends with the job. The server never runs a torch operation itself, so no OpenMP pool exists
when it forks. It reaps children without threads (fork in a threaded process is unsafe).

Robustness: a client that cannot reach a server (none started, the socket gone, a refused
connection) runs the command itself, so the server only ever saves time; a signal the client gets
(Snakemake cancelling the job) is passed on to the child; the server exits when its parent
(Snakemake) is gone or on SIGTERM, and removes its socket.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys

ENV = "AMPLIFICATION_SERVER"  # the socket path the clients connect to
_MAX_MSG = 1 << 20  # bytes of one request: the command line and the environment


def _send_line(conn: socket.socket, obj) -> None:
    conn.sendall(json.dumps(obj).encode() + b"\n")


# ---- client -----------------------------------------------------------------------------------------
def client(argv: list[str]) -> int:
    """Run `amplification ARGV` in the server if one answers at $AMPLIFICATION_SERVER, else here."""
    path = os.environ.get(ENV)
    conn = None
    if path:
        try:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(path)
        except OSError:
            conn = None
    if conn is None:  # no server: the plain command, in this process
        from .cli import main

        return main(argv)
    with conn, conn.makefile("rb") as replies:
        msg = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
        socket.send_fds(conn, [msg + b"\n"], [0, 1, 2])
        first = replies.readline()
        if not first:  # the server refused or died before forking: run it here after all
            from .cli import main

            return main(argv)
        pid = json.loads(first)["pid"]

        def forward(sig, _frame):  # Snakemake cancels a job by signalling its shell and this client
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, forward)
        last = replies.readline()
        if not last:
            print("amplification: error: the stage server went away while the job ran", file=sys.stderr)
            return 1
        return int(json.loads(last)["returncode"])


# ---- server -----------------------------------------------------------------------------------------
def _preload() -> None:
    """What every stage imports: paid once here instead of once per job."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import numpy  # noqa: F401
    import torch  # noqa: F401

    from . import amplify, cli, hprime, stages, train, xmodel  # noqa: F401
    from .tasks import make_task  # noqa: F401

    cli.build_parser()  # imports every command module


def _child(conn: socket.socket, listener: socket.socket, others, req: dict, fds: list[int]) -> None:
    """In the forked child: become the job (its fds, directory, environment) and run it."""
    code = 1
    try:
        listener.close()
        for other in others:  # the connections of the other running jobs are not this job's
            other.close()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
            os.close(fd)
        conn.close()
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        from .cli import main

        code = main(list(req["argv"]))
    except SystemExit as e:  # argparse's usage errors
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except BaseException:  # noqa: BLE001 - report it as the plain command would, then exit
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush(), sys.stderr.flush()
        finally:
            os._exit(code & 0xFF)


def serve(path: str, parent: int | None = None, poll: float = 0.05) -> None:
    """Accept jobs at the Unix socket `path` until SIGTERM or until `parent` is gone."""
    _preload()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    listener.listen(64)
    os.replace(path + ".tmp", path)  # clients never see a socket that is not listening yet
    listener.settimeout(poll)
    running: dict[int, socket.socket] = {}  # child pid -> its client's connection
    try:
        while not stop and (parent is None or os.getppid() == parent):
            try:
                conn, _ = listener.accept()
            except (TimeoutError, socket.timeout):
                conn = None
            except InterruptedError:
                conn = None
            if conn is not None:
                conn.settimeout(None)
                try:
                    data, fds, _, _ = socket.recv_fds(conn, _MAX_MSG, 3)
                    while not data.endswith(b"\n"):  # the rest of a long environment
                        more = conn.recv(_MAX_MSG)
                        if not more:
                            raise ConnectionError("short request")
                        data += more
                    req = json.loads(data)
                    if len(fds) != 3:
                        raise ValueError(f"expected 3 file descriptors, got {len(fds)}")
                except (OSError, ValueError, ConnectionError) as e:
                    print(f"amplification server: bad request: {e}", file=sys.stderr)
                    conn.close()
                    continue
                sys.stdout.flush(), sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _child(conn, listener, list(running.values()), req, fds)
                for fd in fds:
                    os.close(fd)
                running[pid] = conn
                try:
                    _send_line(conn, {"pid": pid})
                except OSError:
                    pass
            _reap(running)
    finally:
        listener.close()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        for pid in list(running):  # jobs still running when Snakemake stops us: they end too
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        while running:
            _reap(running, block=True)


def _reap(running: dict, block: bool = False) -> None:
    """Send finished children's exit statuses to their clients."""
    while running:
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            running.clear()
            return
        if pid == 0:
            return
        conn = running.pop(pid, None)
        if conn is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        try:
            _send_line(conn, {"returncode": code if code >= 0 else 128 - code})
        except OSError:
            pass
        conn.close()
        if block:
            return


def main(argv: list[str] | None = None) -> int:
    """`--socket PATH [--parent PID]`: serve; anything else: a client running that CLI command."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or not argv[0].startswith("--socket"):
        return client(argv)
    import argparse

    ap = argparse.ArgumentParser(prog="python -m amplification.server", description=__doc__.split("\n")[0])
    ap.add_argument("--socket", required=True, help="Unix socket path to listen at")
    ap.add_argument("--parent", type=int, help="exit when this process (Snakemake) is gone")
    args = ap.parse_args(argv)
    serve(args.socket, args.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
