"""Rich progress for the build's stages, on stderr, as a BuildEvents listener."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from rich.markup import escape
from rich.progress import Progress, TaskID

from .output import Output

T = TypeVar("T")


class RichEvents:
    def __init__(self, output: Output, progress: Progress | None) -> None:
        self.output = output
        self.progress = progress
        self.task: TaskID | None = None
        self.started = time.monotonic()
        self.stage_name = ""

    def stage(self, name: str, total: int | None = None) -> None:
        self._finish_stage()
        self.stage_name = name
        self.started = time.monotonic()
        if self.progress is not None:
            self.task = self.progress.add_task(name, total=total)

    def advance(self, amount: int) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task, amount)

    # The library's messages are plain text: a bracket in one (`duckdb[all]`) is not rich markup.
    def note(self, message: str) -> None:
        self.output.info(f"[cyan]note:[/] {escape(message)}")

    def warn(self, message: str) -> None:
        self.output.warn(escape(message))

    def close(self) -> None:
        self._finish_stage()

    def _finish_stage(self) -> None:
        if self.stage_name:
            self.output.info(f"[dim]{self.stage_name:>9} done in {time.monotonic() - self.started:.1f} s[/]")
        if self.progress is not None and self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None


def with_progress(output: Output, work: Callable[[RichEvents], T]) -> T:
    """Run one long piece of library work with its stages shown on stderr."""
    with output.progress() as progress:
        events = RichEvents(output, progress)
        result = work(events)
        events.close()
    return result
