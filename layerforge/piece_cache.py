"""The processed-wheel cache: what one wheel becomes after unpacking, its own strip rules, the
symbol-table cuts and bytecode, filed under everything that decides those bytes (tree/processed.py
composes the key).

`<root>/pieces/<aa>/<key>/` holds `tree/` (the files, at their layer paths) and `MANIFEST.json` (the
key, and the size and sha256 of every file in `tree/`). An entry is made in a temporary folder beside
(`pieces/.tmp-<host>-<pid>-<random>.piece`) and renamed into place whole, so a build killed while
writing leaves a temporary folder that no lookup reads and `cache prune` sweeps once its owner is dead.

An entry is trusted only after the build checked it out: every file is hard-linked (or copied) into the
build's staging folder, and the build's own links are hashed against the manifest. What a build checked
out cannot change under it: entries are never written after the rename, and a prune only unlinks names.
The files are read-only, and nothing in a build writes a file in place: stripping and bytecode replace
files by rename, and only in an entry being made.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .cache import is_sha256, known_sha256, note_sha256, sha256_of, touch
from .member_cache import TEMP_PREFIX
from .staging import host_label

KIND = "pieces"
FORMAT = 1
MANIFEST = "MANIFEST.json"
FILES = "tree"
TEMP_SUFFIX = ".piece"
FAMILIES = ".families"


class PieceCache:
    def __init__(self, root: Path) -> None:
        self.folder = root / KIND

    def entry_dir(self, key: str) -> Path:
        return self.folder / key[:2] / key

    def temporary(self) -> Path | None:
        """A new folder to make an entry in; None when the cache cannot be written (only costs speed)."""
        prefix = f"{TEMP_PREFIX}{host_label()}-{os.getpid()}-"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            return Path(tempfile.mkdtemp(dir=self.folder, prefix=prefix, suffix=TEMP_SUFFIX))
        except OSError:
            return None

    def manifest(self, key: str) -> dict[str, Any] | None:
        """The entry's manifest when it names this key and this format; not yet its files' check."""
        path = self.entry_dir(key) / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("key") != key:
            return None
        if not isinstance(data.get("files"), dict):
            return None
        touch(path)
        return data

    def install(self, temporary: Path, key: str, record: dict[str, Any]) -> None:
        """Write the manifest last, then rename the whole folder into place. Another build that filed the
        same key first wins; ours is dropped (both are the same bytes)."""
        files = temporary / FILES
        listed: dict[str, tuple[int, str]] = {}
        for path in sorted(_walk(files)):
            found = (files / path).stat()
            digest = sha256_of(files / path)
            if (files / path).stat().st_size != found.st_size:
                raise OSError(f"{files / path} changed while the piece was filed")
            listed[path] = (found.st_size, digest)
            # The build's tree links these very files (checked out before the filing): known by digest now.
            note_sha256(found, digest)
            _read_only(files / path)
        manifest = {"format": FORMAT, "key": key, "files": listed, "record": record}
        manifest["bytes"] = sum(int(size) for size, _ in listed.values())
        (temporary / MANIFEST).write_text(json.dumps(manifest, sort_keys=True), encoding="utf-8")
        destination = self.entry_dir(key)
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.rename(temporary, destination)
        except OSError:
            remove_tree(temporary)

    def join_family(self, family: str, key: str) -> None:
        """Note that `key` is of `family` (same wheel, settings and code, other rules), so that a piece made
        for other rules can take what this one made of the files both keep. A marker file, under a folder
        whose name starts with "." (no shard, no entry: `cache prune` leaves it to its pieces)."""
        with contextlib.suppress(OSError):
            folder = self.folder / FAMILIES / family
            folder.mkdir(parents=True, exist_ok=True)
            (folder / key).touch()

    def family(self, family: str) -> list[str]:
        """The keys noted for `family`, newest first; a marker whose piece is gone is removed."""
        folder = self.folder / FAMILIES / family
        try:
            markers = sorted(folder.iterdir(), key=lambda p: -p.stat().st_mtime)
        except OSError:
            return []
        keys = []
        for marker in markers:
            if (self.entry_dir(marker.name) / MANIFEST).is_file():
                keys.append(marker.name)
            else:
                marker.unlink(missing_ok=True)
        return keys

    def discard(self, key: str) -> None:
        """Remove a damaged entry: renamed away first, so no other build starts reading it half removed."""
        entry = self.entry_dir(key)
        aside = self.folder / f"{TEMP_PREFIX}{host_label()}-{os.getpid()}-discard-{key[:16]}{TEMP_SUFFIX}"
        try:
            os.rename(entry, aside)
        except OSError:
            return
        remove_tree(aside)


def checkout(
    source: Path, target_for: Callable[[str], str], files: dict[str, Any], *, check: bool = True
) -> bool:
    """Link (or copy) every listed file of `source` to `target_for(path)` and check the build's own copies
    against their listed size and sha256. False when anything is missing, extra or different.
    `check=False` for an entry this build has just made.

    One thread: the callers check pieces out side by side. A piece holds thousands of small files, so
    each costs one link, one lstat and one unbuffered read, on plain strings (pathlib's parsing cost more
    than the hashing), and each folder is made once. Handing each file to a pool thread cost twice the
    work itself (the sklearn stack's 12,000 files: 5.4 s against 1.8 s, one thread each).
    """
    try:
        present = set(_walk(source))
    except OSError:
        return False
    if present != set(files):
        return False

    def put(path: str, origin: str, target: str) -> bool:
        return link_or_copy(origin, target) and (not check or matches(target, files[path]))

    return place(files, os.fspath(source), target_for, put)


def place(
    files: Iterable[str], source: str, target_for: Callable[[str], str], put: Callable[[str, str, str], bool]
) -> bool:
    """`put(path, source/path, target_for(path))` for each path in order, each folder made once; False
    as soon as one put fails."""
    made: set[str] = set()
    for path in sorted(files):
        target = target_for(path)
        parent = os.path.dirname(target)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        if not put(path, os.path.join(source, path), target):
            return False
    return True


def matches(target: str, expected: Any) -> bool:
    """The file at `target` is a regular file of the listed [size, sha256]."""
    if not (isinstance(expected, list) and len(expected) == 2 and is_sha256(str(expected[1]))):
        return False
    try:
        found = os.lstat(target)
    except OSError:
        return False
    if not stat.S_ISREG(found.st_mode) or found.st_size != expected[0]:
        return False
    if known_sha256(found) == expected[1]:
        return True
    if sha256_of(target) != str(expected[1]):
        return False
    # The tree's later readers (the zip, the verification cache) need not hash it again.
    note_sha256(found, str(expected[1]))
    return True


def link_or_copy(source: str | Path, target: str | Path) -> bool:
    """A hard link where the file system allows, a copy otherwise; False when the source is gone."""
    try:
        os.link(source, target)
    except (FileNotFoundError, FileExistsError):  # never a copy over a file that is there: it may be linked
        return False
    except OSError:
        try:
            shutil.copyfile(source, target)
            shutil.copymode(source, target)
        except FileNotFoundError:
            return False
    return True


def remove_tree(folder: Path) -> None:
    # The files are read-only, the folders are not: rmtree unlinks them all the same.
    with contextlib.suppress(OSError):
        shutil.rmtree(folder)


def _walk(top: Path) -> list[str]:
    """Relative posix paths of the regular files under `top` (a link or anything else is listed too, and
    then fails its check)."""
    found = []
    for folder, _, names in os.walk(top):
        relative = Path(folder).relative_to(top)
        found += [(relative / name).as_posix() for name in names]
    return found


def _read_only(path: Path) -> None:
    # A build that tried to write a linked file in place would fail instead of corrupting the entry (root
    # is not stopped by modes: the manifest's hashes still catch it at the next checkout).
    os.chmod(path, (path.stat().st_mode & 0o555) | 0o444)


def entry_bytes(entry: Path) -> int:
    """An entry's size for `cache info` and `cache prune`: its manifest says, else its files are walked."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        value = json.loads((entry / MANIFEST).read_text(encoding="utf-8")).get("bytes")
        if isinstance(value, int):
            return value
    total = 0
    for folder, _, names in os.walk(entry):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def code_fingerprint(modules: list[Path]) -> str:
    """The source of the modules that make a piece: a development build whose version did not change
    does not reuse pieces an older code made."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(module.name.encode() + b"\0" + module.read_bytes() + b"\0")
    return digest.hexdigest()
