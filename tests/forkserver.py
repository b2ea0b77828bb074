"""A fork server that starts the tests' ``dismax`` processes without importing torch each time.

A real ``dismax`` process spends ~1.2 s of CPU importing torch, scikit-learn and the package
before it does anything; the suite starts ~60 of them (``run_dismax``, the README's shell blocks,
the sharding jobs). This server imports all of that once per pytest worker and then forks one
process per command. Each command still runs in a process of its own — own pid, exit code,
stdin/stdout/stderr, working directory, environment, signals — which is what those tests need a
real process for.

How a command reaches it: :func:`install` writes a ``dismax`` shim into a folder it puts first
on ``PATH`` and sets ``DISMAX_TEST_FORKSERVER``. The shim (stdlib only, started with ``-S``,
~20 ms) sends its argv, working directory, environment and its file descriptors 0, 1, 2 over a
Unix socket; the server forks a handler, which forks the command, reports the command's pid (the
shim forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 to it), waits, and reports the
wait status, which the shim turns into its own exit (a command killed by signal N kills the shim
with N). If the shim dies (SIGKILL, a test's timeout), the handler kills the command.

When a fresh interpreter is the point, the shim ``exec``s the real ``python -m dismax_cli``
instead: when the server is not running, and when the command's environment differs from the
server's in anything read while an interpreter or its libraries start (``PYTHON*``, ``LD_*``,
``OMP_*`` except ``OMP_NUM_THREADS``, ``KMP_*``, ``MKL_*``, ``GOMP_*``, ``MALLOC_*``, ``CUDA_*``).
``OMP_NUM_THREADS`` (or, where neither sets it, torch's default) is applied with
``torch.set_num_threads`` (the server never runs a parallel region, so the forked command starts
its thread pool as a fresh process would). Tests that check
what a fresh interpreter imports run ``python -c`` themselves and never come here.
``DISMAX_TEST_FORK=0`` switches the server off for a whole session (every command a real
process: the way to check that the server changes no outcome).
"""

from __future__ import annotations

import atexit
import io
import json
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

ENABLE_VARIABLE = "DISMAX_TEST_FORK"
SOCKET_VARIABLE = "DISMAX_TEST_FORKSERVER"
#: Environment variables read when an interpreter or its native libraries start.
_START_PREFIXES = ("PYTHON", "LD_", "OMP_", "KMP_", "MKL_", "GOMP_", "MALLOC_", "CUDA_")
_FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")

_SHIM = '''#!{python} -S
"""dismax for the tests: run by the fork server of tests/forkserver.py, else the real command."""
import json, os, signal, socket, sys

REAL = [{python!r}, "-m", "dismax_cli"]


def real():
    os.execv(REAL[0], REAL + sys.argv[1:])


path = os.environ.get({socket_variable!r})
if not path:
    real()
conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    conn.connect(path)
except OSError:
    real()
payload = json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}})
data = payload.encode()
socket.send_fds(conn, [len(data).to_bytes(8, "big") + data], [0, 1, 2])
replies = conn.makefile("rb")
line = replies.readline().split()
if not line or line[0] != b"pid":
    real()
pid = int(line[1])


def forward(signum, frame):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


for name in {forwarded!r}:
    signal.signal(getattr(signal, name), forward)
line = replies.readline().split()
if not line or line[0] != b"status":
    sys.exit(1)
code = os.waitstatus_to_exitcode(int(line[1]))
if code < 0:
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
'''


def _start_signature(env: dict[str, str]) -> list[tuple[str, str]]:
    """The variables of ``env`` that an interpreter start reads (``OMP_NUM_THREADS`` aside)."""
    return sorted(
        (key, value)
        for key, value in env.items()
        if key.startswith(_START_PREFIXES) and key != "OMP_NUM_THREADS"
    )


_LIBRARIES = ("torch", "torchvision", "sklearn.metrics", "scipy.optimize", "matplotlib")
# What a command still imported after the package's modules were loaded (found by diffing
# sys.modules around in-process train, benchmark, score and calibrate commands): Typer's
# parser imports its pydantic adapters on the first parse, the digits source imports
# sklearn.datasets, torch.save its serialization config. Measured: a forked one-epoch
# ``dismax train --dataset "digits[0-5]"`` took 0.66 s with these left to the child, 0.23 s
# with them preloaded (3 runs each, 1 thread).
_LAZY_IMPORTS = (
    "typer._adapters",
    "typer._click.decorators",
    "pydantic",
    "sklearn.datasets",
    "rich._emoji_codes",
    "torch.utils.serialization",
    "zoneinfo",
)


def _preload() -> None:
    """Import what the commands import: the package's modules and their libraries.

    ``matplotlib.pyplot`` is not among them (the package never imports it).
    """
    import importlib
    import pkgutil

    import dismax_cli

    for name in (*_LIBRARIES, *_LAZY_IMPORTS):
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    for module in pkgutil.walk_packages(dismax_cli.__path__, "dismax_cli."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)


def _text_stream(fd: int, mode: str, errors: str, line_buffering: bool) -> io.TextIOWrapper:
    """A text stream on ``fd`` as the interpreter makes one at start (``PYTHONUNBUFFERED``)."""
    raw = io.FileIO(fd, mode, closefd=False)
    buffered: io.BufferedIOBase = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
    return io.TextIOWrapper(
        buffered, encoding=sys.__stdout__.encoding, errors=errors, line_buffering=line_buffering,
        write_through=mode == "w" and bool(os.environ.get("PYTHONUNBUFFERED")),
    )  # fmt: skip


def _reopen_stdio() -> None:
    """New ``sys.stdin/stdout/stderr`` on fds 0, 1, 2, buffered as a fresh interpreter's are."""
    errors = sys.__stdout__.errors
    sys.stdin = sys.__stdin__ = _text_stream(0, "r", errors, False)
    sys.stdout = sys.__stdout__ = _text_stream(1, "w", errors, os.isatty(1))
    sys.stderr = sys.__stderr__ = _text_stream(2, "w", "backslashreplace", True)


def _run_command(request: dict, fds: list[int]) -> None:
    """In the forked command: take over the shim's fds, cwd and env, run ``main``, exit."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    _reopen_stdio()
    import random

    import numpy as np
    import torch

    torch.set_num_threads(request["threads"])
    random.seed()  # a fresh interpreter seeds these from the OS, not from its parent
    np.random.seed()  # noqa: NPY002 - the legacy global state is what a fresh process reseeds
    from dismax_cli.cli.app import main

    sys.argv = [request["prog"], *request["argv"]]
    code: int = 0
    try:
        main()
    except SystemExit as stop:
        if stop.code is None:
            code = 0
        elif isinstance(stop.code, int):
            code = stop.code
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        traceback.print_exc()
        code = -signal.SIGINT
    except BaseException:  # noqa: BLE001 - as the interpreter does for an uncaught exception
        traceback.print_exc()
        code = 1
    threading._shutdown()  # type: ignore[attr-defined]  # wait for non-daemon threads
    import atexit as exits

    exits._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 120  # what the interpreter exits with when the final flush fails
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code & 0xFF)


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    size = int.from_bytes(data[:8], "big")
    data = data[8:]
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the shim closed the connection")
        data += chunk
    return json.loads(data), list(fds)


def _threads(env: dict[str, str], default: int | None) -> int | None:
    """The thread count a fresh interpreter would use under ``env``; None: it cannot be told.

    ``default`` is torch's default of the server, None when the server had ``OMP_NUM_THREADS``
    set (then a command without it needs a fresh interpreter to find its default).
    """
    text = env.get("OMP_NUM_THREADS")
    if text is None:
        return default
    return int(text) if text.strip().isdigit() and int(text) > 0 else None


def _handle(conn: socket.socket, server: dict) -> None:
    """In a forked handler: run one command in a grandchild and report its pid and status."""
    request, fds = _receive(conn)
    threads = _threads(request["env"], server["default_threads"])
    env = {k: v for k, v in request["env"].items() if server["set_by_imports"].get(k) != v}
    if len(fds) != 3 or _start_signature(env) != server["signature"] or not threads:
        conn.sendall(b"fallback\n")
        return
    request.update(prog=server["prog"], threads=threads)
    pid = os.fork()
    if pid == 0:
        conn.close()
        try:
            _run_command(request, fds)
        except BaseException:  # noqa: BLE001 - a fault of this server, not of the command
            traceback.print_exc()
        finally:
            os._exit(1)
    for fd in fds:
        os.close(fd)
    conn.sendall(b"pid %d\n" % pid)
    with open(server["log"], "a", encoding="utf-8") as log:
        log.write(json.dumps(request["argv"]) + "\n")
    done = os.pidfd_open(pid)
    while True:
        ready, _, _ = select.select([conn, done], [], [])
        if done in ready:
            break
        if not conn.recv(1):  # the shim is gone (killed): so is its command
            os.kill(pid, signal.SIGKILL)
            break
    _, status = os.waitpid(pid, 0)
    try:
        conn.sendall(b"status %d\n" % status)
    except OSError:
        pass


def serve(path: str, prog: str) -> None:
    """Listen on ``path`` until stdin closes (the pytest worker that started us is gone)."""
    server: dict = {"prog": prog, "log": str(Path(path).with_name(_LOG))}
    started = dict(os.environ)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)  # shims that connect now wait in the backlog until the imports are done
    print("listening", flush=True)
    _preload()
    import torch

    server["default_threads"] = None if "OMP_NUM_THREADS" in os.environ else torch.get_num_threads()
    # The imports set some of these variables themselves (scikit-learn: KMP_DUPLICATE_LIB_OK,
    # KMP_INIT_AT_FORK); a command's environment may hold them (its pytest worker imported
    # scikit-learn too) or not: either way it starts as the server did.
    server["set_by_imports"] = {k: v for k, v in os.environ.items() if started.get(k) != v}
    server["signature"] = _start_signature(started)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # handlers are reaped by the kernel
    while True:
        ready, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1):
            return
        if listener in ready:
            conn, _ = listener.accept()
            if os.fork() == 0:
                listener.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                try:
                    _handle(conn, server)
                finally:
                    os._exit(0)
            conn.close()


def install() -> Path | None:
    """Start this worker's server and put its ``dismax`` shim first on ``PATH``; return the shim.

    Returns None (and changes nothing) when ``DISMAX_TEST_FORK=0``. Idempotent.
    """
    if os.environ.get(ENABLE_VARIABLE, "1").strip() == "0":
        return None
    if _STATE:
        return _STATE["shim"]
    home = Path(tempfile.mkdtemp(prefix="dismax-fork-"))
    sock = home / "server.sock"
    real = Path(sys.executable).with_name("dismax")
    prog = str(real) if real.exists() else "dismax"
    # sys.path[0] is this folder while forkserver is imported, then the console script's folder
    # (what a ``dismax`` process has there); the environment stays the worker's.
    code = (
        "import sys; sys.path[0] = sys.argv[3]; import forkserver; "
        "sys.path[0] = sys.argv[4]; forkserver.serve(sys.argv[1], sys.argv[2])"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", code, str(sock), prog, str(Path(__file__).parent),
         str(Path(prog).parent if os.sep in prog else Path(sys.executable).parent)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    if server.stdout is None or server.stdout.readline().strip() != b"listening":
        server.kill()
        return None
    shim = home / "bin" / "dismax"
    shim.parent.mkdir()
    shim.write_text(
        _SHIM.format(python=sys.executable, socket_variable=SOCKET_VARIABLE, forwarded=_FORWARDED)
    )
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.environ[SOCKET_VARIABLE] = str(sock)
    os.environ["PATH"] = f"{shim.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    _STATE.update(shim=shim, server=server, home=home)
    atexit.register(_stop)
    return shim


_STATE: dict[str, object] = {}
_LOG = "served.jsonl"


def served() -> list[list[str]]:
    """The argv of every command this process's server has forked so far (oldest first)."""
    home = _STATE.get("home")
    log = Path(str(home)) / _LOG if home else None
    if log is None or not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def _stop() -> None:
    server = _STATE.get("server")
    if isinstance(server, subprocess.Popen):
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    home = _STATE.get("home")
    if isinstance(home, Path):
        import shutil

        shutil.rmtree(home, ignore_errors=True)


__all__ = ["ENABLE_VARIABLE", "SOCKET_VARIABLE", "install", "serve", "served"]
