"""File-system helpers that every stage shares: atomic writes, containment checks, names beside a zip."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def audited_open(event: str, args: tuple[object, ...]) -> str | None:
    """The absolute path an audit event opens or lists (`open`, `os.listdir`, `os.scandir`); None for
    other events and for a file descriptor (no new open). The build's open watch and its zip child both
    count their own reads by it, so that the watch can set them apart from the checks' (verify/opens.py)."""
    if event not in ("open", "os.listdir", "os.scandir"):
        return None
    path = args[0] if args[0] is not None else "."
    if isinstance(path, int):
        return None
    try:
        return os.path.abspath(os.fsdecode(path))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def sibling(zip_path: Path, suffix: str) -> Path:
    """`dist/x.zip` -> `dist/x<suffix>`: how a build names the lock, manifest and SBOM beside its zip."""
    return zip_path.with_name(zip_path.stem + suffix)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary name beside the target, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        # mkstemp creates 0600; an output file is as readable as any other the user writes.
        os.chmod(temporary, 0o666 & ~_UMASK)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _read_umask() -> int:
    # os.umask can only be read by setting it: do it once, at import, before any thread runs.
    current = os.umask(0)
    os.umask(current)
    return current


_UMASK = _read_umask()


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
