"""pip's fork server. Run by pip_runner.py as `python -s -c <this file's text> PRELOAD_JSON`, not imported.

It imports what `pip install` needs, sets pip's User-Agent and freezes what all that made (gc.freeze),
then forks one child per request and answers when each child ends.
Requests come on stdin, one JSON object per line: {"id", "args", "env", "cwd", "stdout", "stderr"}. The
child runs pip's own entry point with exactly that environment, folder and arguments, its output in the
two files. Answers go to stdout, one JSON line per finished child: {"id", "status"}, where status is the
exit code or minus the signal that killed it (os.waitstatus_to_exitcode). On end of input the server
waits for its children and exits.

One process does everything, with no thread: fork is safe only in a process that has one.
"""

import functools
import gc
import json
import os
import select
import sys
import tempfile
import traceback
from typing import Any


def main() -> None:
    for name in json.loads(sys.argv[1]):
        __import__(name)
    _user_agent_once()
    # What the import made is never collected: a child's first collections would otherwise write to the
    # header of every object pip's modules made, and the kernel copy each page they sit on (gc.freeze's
    # own purpose).
    gc.freeze()
    running: dict[int, int] = {}  # pid -> request id
    pending = b""
    reading = True
    while reading or running:
        # Children are reaped by polling: a SIGCHLD handler would interrupt the child's own code after fork.
        ready, _, _ = select.select([0] if reading else [], [], [], 0.02 if running else None)
        if ready:
            chunk = os.read(0, 1 << 16)
            if not chunk:
                reading = False
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    child(request)
                running[pid] = request["id"]
        while running:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            answer = {"id": running.pop(pid), "status": os.waitstatus_to_exitcode(status)}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()


def _user_agent_once() -> None:
    """pip works its User-Agent out once per process and runs `lsb_release -a` and `rustc --version` to do
    it: 0.19 s at the start of every resolution, before the server answers its first request. pip only
    ever sends it to layerforge's local index on 127.0.0.1 (or to no server: a file index), which reads
    none of it, so it is set here to what says so, and every child inherits it."""
    try:
        import pip  # noqa: PLC0415
        from pip._internal.network import session  # noqa: PLC0415
    except Exception:  # a pip without it: each child works its own out, as before
        return
    agent = f"pip/{pip.__version__} (layerforge's local index)"
    # PipSession.__init__ calls the module's user_agent(): one that answers at once, cached as pip's is.
    session.user_agent = functools.lru_cache(maxsize=None)(lambda: agent)


def child(request: dict[str, Any]) -> None:
    code = 1
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # the requests are the server's, not pip's
        os.close(null)
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            opened = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(opened, fd)
            os.close(opened)
        os.environ.clear()
        os.environ.update(request["env"])
        # tempfile keeps the folder it found first; the request's TMPDIR is the one pip must use.
        tempfile.tempdir = None
        os.chdir(request["cwd"])
        sys.argv = [os.path.join(os.path.dirname(sys.executable), "pip"), *request["args"]]
        # Imported by main() already (the preload); here only so that the name is bound.
        from pip._internal.cli.main import main as pip_main  # noqa: PLC0415

        code = pip_main(request["args"])
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)


if __name__ == "__main__":
    main()
