"""Where `layerforge` starts: the console script and `python -m layerforge` both run `run()`.

A command that resolves (build, lock) waits for pip, and pip's fork server takes 0.2 CPU-seconds to import
pip before it can answer. It is started here, before the CLI imports click, rich and the command's
library (0.2 s), so that the two imports overlap from the first moment: started once click had resolved
the command, the server was still importing 0.15 to 0.25 s after the build had asked for its resolution.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

# The commands that run pip; a command's help runs nothing. A wrong guess costs only a server started and
# killed at exit.
RUNS_PIP = frozenset({"build", "lock"})
HELP_OPTIONS = ("-h", "--help")  # the CLI's own (cli/__init__.py)


def runs_pip(arguments: Sequence[str]) -> bool:
    return bool(arguments) and arguments[0] in RUNS_PIP and not set(HELP_OPTIONS).intersection(arguments)


def run() -> None:
    if runs_pip(sys.argv[1:]):
        from .resolve.pip_runner import warm_up  # noqa: PLC0415

        warm_up()
    from .cli import main  # noqa: PLC0415

    main()
