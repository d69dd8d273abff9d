"""Pieces checked out while the resolver works, for the wheels the new lock will most likely keep.

A changed recipe (one requirement added, a pin moved) resolves again, and pip keeps one core busy for
seconds while the build waits for its answer. Most of the previous lock's wheels are in the new one, and
their pieces are in the processed-wheel cache: checking them out (a link, an lstat and a hash check per
file: 1.5 s for the sklearn stack's 12,000 files) is work the build would do right after. The head start
does it meanwhile, on the other core, into a folder of the staging area; `assemble` then moves in what it
can use by rename (whole folders, when no other wheel shares them), and what the new lock does not take is
removed with the staging area.

It is only ever a guess made early: a piece is taken only under the key the build itself computes, with
the same check of every file against its manifest as any checkout, so the layer is byte for byte the one
a build without it makes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..piece_cache import FILES, PieceCache, checkout
from .processed import PieceSettings, WheelFile, describe_wheel, early_layout, valid_record
from .slim import RuleMatcher


@dataclass
class HeadStart:
    """Check out the pieces of `wheels()` into `folder`, in a thread of its own; `stop()` ends it."""

    folder: Path
    cache: PieceCache
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _ready: dict[str, Path] = field(default_factory=dict)  # piece key -> its files (processed.early_layout)

    def begin(
        self,
        wheels: Callable[[], Sequence[WheelFile]],
        matcher: RuleMatcher,
        settings: Callable[[], PieceSettings],
        found: Callable[[Mapping[str, Any]], None] = lambda _files: None,
    ) -> None:
        """`wheels` and `settings` are called in the thread: finding the cached wheels hashes them, and the
        settings wait for the interpreter search. `found` is told the manifest's files ({path: [size,
        sha256]}) of each piece whose entry is whole, before it is checked out: what a file of it would
        hold, whether or not the checkout then passes."""

        def run() -> None:
            try:
                self._check_out(wheels(), matcher, settings(), found)
            except Exception:  # a failed guess costs nothing: the build checks out what it needs itself
                return

        self._thread = threading.Thread(target=run, name="layerforge-head-start", daemon=True)
        self._thread.start()

    def _check_out(
        self,
        wheels: Sequence[WheelFile],
        matcher: RuleMatcher,
        settings: PieceSettings,
        found: Callable[[Mapping[str, Any]], None],
    ) -> None:
        # Biggest first: if the resolution ends early, the most work has been done.
        for wheel in sorted(wheels, key=lambda w: -w.path.stat().st_size):
            if self._stop.is_set():
                return
            described = describe_wheel(wheel, matcher, settings)
            manifest = self.cache.manifest(described.key)
            if manifest is None or described.key in self._ready:
                continue
            files = manifest["files"]
            record = valid_record(manifest.get("record"), described, files)
            if record is None:
                continue
            # Before the checkout, not after it (scipy's takes about 0.5 s): the zip child then proves this
            # piece's streams beside it, in the core pip leaves idle, instead of waiting for it.
            found(files)
            target = self.folder / described.key
            entry = self.cache.entry_dir(described.key) / FILES
            if checkout(entry, early_layout(target, described), files):
                self._ready[described.key] = target

    def stop(self) -> dict[str, Path]:
        """Stop after the piece in hand (the build checks out the rest itself, side by side), and return
        the pieces checked out: piece key -> the folder holding its files (processed.early_layout)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return dict(self._ready)
