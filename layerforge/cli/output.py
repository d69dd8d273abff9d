"""How commands talk: human output on stderr through rich, one JSON object on stdout with --json."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..errors import LayerforgeError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Output:
    """Where a command writes. stdout stays clean for --json; everything human goes to stderr."""

    json_mode: bool = False
    quiet: bool = False
    console: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {message}")

    def error(self, message: str) -> None:
        self.console.print(f"[red]error:[/] {message}", soft_wrap=True)

    def emit_json(self, payload: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        sys.stdout.flush()

    @contextmanager
    def progress(self) -> Iterator[Progress | None]:
        """A rich progress display on stderr, or None when quiet or stderr is not a terminal.

        Off a terminal (CI logs, a pipe) rich draws nothing, but a live display still rebuilds its table
        ten times a second in a thread of its own: 0.3 s of CPU, under the GIL, in a cold sklearn build."""
        if self.quiet or not self.console.is_terminal:
            yield None
            return
        columns = (
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=True) as progress:
            yield progress


def json_option(func: F) -> F:
    return click.option("--json", "json_mode", is_flag=True, help="Print one JSON object on stdout.")(func)


def quiet_option(func: F) -> F:
    return click.option("--quiet", "-q", is_flag=True, help="Print only errors and warnings.")(func)


def fail(output: Output, error: LayerforgeError) -> None:
    """Report a layerforge error in one readable block and exit with its code; never a traceback."""
    # Escaped: a message that quotes TOML (`[[layers]]`, `[strip]`) must not lose its words to markup.
    output.error(escape(str(error)))
    if output.json_mode:
        output.emit_json({"error": error.message, "hint": error.hint, "exit_code": error.exit_code})
    raise SystemExit(error.exit_code)


@contextmanager
def reporting(output: Output) -> Iterator[None]:
    """Turn errors raised inside a command into a message and an exit code.

    A layerforge error is the user's to fix and gets its own code. Anything else is a bug in layerforge:
    it is reported as one, with the traceback only when LAYERFORGE_DEBUG is set.
    """
    try:
        yield
    except LayerforgeError as error:
        fail(output, error)
    except KeyboardInterrupt:
        output.error("interrupted; nothing half-written was left in the output folder")
        raise SystemExit(130) from None
    except (SystemExit, click.exceptions.Exit, click.ClickException):
        raise
    except Exception as error:
        if os.environ.get("LAYERFORGE_DEBUG"):
            output.console.print_exception()
        internal = LayerforgeError(
            f"internal error: {type(error).__name__}: {error}",
            hint="this is a bug in layerforge; rerun with LAYERFORGE_DEBUG=1 for the traceback and report it",
        )
        fail(output, internal)
