"""The repository: CRLF in scripts, locks and recipes, git's settings, foreign binaries among built zips."""

from __future__ import annotations

import os
import re
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from ..binaries.binfmt import iter_files, sniff, sniff_bytes
from ..target import Target
from .findings import SHOWN, Finding, Severity

# The doctor asks git about the repository; a large one may take a while to answer.
_GIT_TIMEOUT = 30.0
_MAX_BYTES_READ = 4 * 1024 * 1024  # a line-ending check reads no more of one file
_MAX_WALK_FILES = 50_000
_SKIP_DIRS = frozenset(
    {".git", ".hg", ".venv", "venv", "node_modules", "__pycache__", ".tox", ".nox", "dist", "build"}
)


# ---------------------------------------------------------------------------------------------------
# Line endings


LineKind = Literal["script", "lock", "recipe"]
_SCRIPT_SUFFIXES = frozenset({".sh", ".bash", ".zsh", ".ksh", ".bats"})
_LOCK_NAMES = frozenset({"Pipfile.lock", "poetry.lock", "uv.lock", "pdm.lock"})
_LOCK_PATTERN = re.compile(r"(.*\.lock(\.json|\.hcl)?|(requirements|constraints)[\w.-]*\.(txt|in))$")


def line_kind(relative: str, path: Path) -> LineKind | None:
    """Which files CRLF breaks or disturbs: shell and shebang scripts, lock files, recipes and TOML."""
    name = relative.rsplit("/", 1)[-1]
    suffix = Path(name).suffix.lower()
    if suffix in _SCRIPT_SUFFIXES:
        return "script"
    if name in _LOCK_NAMES or _LOCK_PATTERN.fullmatch(name):
        return "lock"
    if suffix == ".toml":
        return "recipe"
    if not suffix and _starts_with_shebang(path):
        return "script"
    return None


def _starts_with_shebang(path: Path) -> bool:
    try:
        with path.open("rb") as stream:
            return stream.read(2) == b"#!"
    except OSError:
        return False


def has_crlf(path: Path) -> bool:
    try:
        with path.open("rb") as stream:
            return b"\r\n" in stream.read(_MAX_BYTES_READ)
    except OSError:
        return False


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, timeout=_GIT_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode("utf-8", "surrogateescape") if done.returncode == 0 else None


def _repository_files(repo: Path) -> tuple[Path, list[str], bool]:
    """(root, relative posix paths, whether root is a git work tree). Git's list skips ignored files."""
    top = _git(repo, "rev-parse", "--show-toplevel")
    if top and top.strip():
        root = Path(top.strip())
        listed = _git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard") or ""
        return root, sorted({name for name in listed.split("\0") if name}), True
    return repo, list(_walk(repo)), False


def _walk(root: Path) -> Iterator[str]:
    count = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            count += 1
            if count > _MAX_WALK_FILES:
                return
            yield (Path(folder) / name).relative_to(root).as_posix()


_KIND_TEXT: dict[LineKind, tuple[Severity, str, str]] = {
    "script": (
        "error",
        "script",
        "Linux reads the \\r as part of each line, so they fail in CI, in containers and on Lambda with "
        "`/bin/bash^M: bad interpreter` or `$'\\r': command not found`",
    ),
    "lock": (
        "warning",
        "lock file",
        "layerforge reads them fine, but their bytes differ between Windows and Linux checkouts: a cache "
        "or CI step keyed on the file's hash misses, and every line shows as changed in a diff",
    ),
    "recipe": (
        "warning",
        "recipe or TOML file",
        "layerforge reads them fine, but every line shows as changed in a diff with an LF copy, and tools "
        "that hash the file disagree across machines",
    ),
}


def gitattributes_pattern(relative: str) -> str:
    """The .gitattributes pattern that covers a file like this one: by suffix, or by its own name."""
    name = relative.rsplit("/", 1)[-1]
    for compound in (".lock.json", ".lock.hcl"):
        if name.endswith(compound):
            return f"*{compound}"
    if re.fullmatch(r"(requirements|constraints)[\w.-]*\.(txt|in)", name):
        return f"{name.split('.')[0].split('-')[0]}*.{name.rsplit('.', 1)[1]}"
    suffix = Path(name).suffix
    return f"*{suffix}" if suffix else f"/{relative}"


def check_line_endings(repo: Path) -> list[Finding]:
    """CRLF in scripts, lock files and recipes; a missing .gitattributes; Git converting on checkout."""
    if not repo.is_dir():
        return [
            Finding(
                "line-endings", "error", f"{repo} is not a folder", "pass --repo with a repository folder"
            )
        ]
    root, files, is_git = _repository_files(repo.resolve())
    crlf: dict[LineKind, list[str]] = {"script": [], "lock": [], "recipe": []}
    checked = 0
    for relative in files:
        path = root / relative
        kind = line_kind(relative, path)
        if kind is None or not path.is_file():
            continue
        checked += 1
        if has_crlf(path):
            crlf[kind].append(relative)
    findings = [_crlf_finding(kind, paths) for kind, paths in crlf.items() if paths]
    if not findings:
        findings.append(
            Finding(
                "line-endings",
                "ok",
                f"no CRLF line endings in {checked} scripts, lock files and recipes under {root}",
            )
        )
    if is_git:
        findings += _git_settings(root)
    else:
        findings.append(
            Finding(
                "gitattributes",
                "info",
                f"{root} is not a Git repository: its files were checked as they are",
                "nothing to do; in a repository, a .gitattributes keeps line endings alike on every machine",
            )
        )
    return findings


def _crlf_finding(kind: LineKind, paths: list[str]) -> Finding:
    severity, noun, why = _KIND_TEXT[kind]
    patterns = list(dict.fromkeys(gitattributes_pattern(path) for path in paths))[:3]
    attributes = ", ".join(f"`{pattern} text eol=lf`" for pattern in patterns)
    shown = ", ".join(paths[:SHOWN]) + (f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else "")
    plural = "s" if len(paths) > 1 else ""
    example = paths[0]
    return Finding(
        "line-endings",
        severity,
        f"{len(paths)} {noun}{plural} with Windows line endings (CRLF): {shown}. {why}",
        f"convert to LF: `sed -i 's/\\r$//' {example}` (or `dos2unix {example}`, or set your editor's line "
        f"endings to LF), add {attributes} to .gitattributes so Git keeps them LF on every machine, then "
        '`git add --renormalize . && git commit -m "Normalize line endings"`',
        tuple(paths),
    )


GITATTRIBUTES_TEMPLATE = (
    "* text=auto eol=lf\n*.sh text eol=lf\n*.ps1 text eol=crlf\n*.zip binary\n*.whl binary\n"
)


def _git_settings(root: Path) -> list[Finding]:
    findings: list[Finding] = []
    if (root / ".gitattributes").is_file():
        findings.append(
            Finding("gitattributes", "ok", f"{root / '.gitattributes'} sets the repository's line endings")
        )
    else:
        findings.append(
            Finding(
                "gitattributes",
                "warning",
                f"the repository at {root} has no .gitattributes, so each clone's line endings depend on "
                "that machine's Git settings (on Windows, Git usually turns LF into CRLF when it checks "
                "files out, and shell scripts then break on Linux)",
                "create .gitattributes at the top of the repository with these lines: "
                + " | ".join(GITATTRIBUTES_TEMPLATE.strip().splitlines())
                + " ; then `git add .gitattributes && git add --renormalize . && git commit -m "
                '"Normalize line endings"`',
            )
        )
    autocrlf = (_git(root, "config", "--get", "core.autocrlf") or "").strip().lower()
    if autocrlf == "true":
        findings.append(
            Finding(
                "autocrlf",
                "warning",
                "Git on this machine turns LF into CRLF when it checks files out (core.autocrlf=true)",
                "`git config --global core.autocrlf input` (Git then converts only CRLF to LF on commit); "
                "a .gitattributes with `* text=auto eol=lf` overrides it for everyone",
            )
        )
    return findings


# ---------------------------------------------------------------------------------------------------
# Built artifacts


_EXTENSIONS_TO_SNIFF = frozenset({".so", ".pyd", ".dll", ".dylib", ".exe", ""})
_WINDOWS_SUFFIXES = frozenset({".pyd", ".dll", ".exe"})
_MAX_PE_OFFSET = 1 << 16


def _worth_sniffing(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return Path(base).suffix.lower() in _EXTENSIONS_TO_SNIFF or ".so." in base


def _foreign_kind(name: str, head_kind: str) -> str | None:
    """'windows', 'macos' or None, by magic bytes first and by the names audit.py also trusts."""
    suffix = Path(name).suffix.lower()
    if head_kind == "pe" or suffix in _WINDOWS_SUFFIXES:
        return "windows"
    if head_kind == "macho" or suffix == ".dylib":
        return "macos"
    return None


def _sniff_stream(stream: IO[bytes]) -> str:
    """binfmt.sniff for a stream (a zip member): PE needs a look at the offset its header points to."""
    head = stream.read(64)
    if head.startswith(b"MZ") and len(head) >= 0x40:
        offset = int.from_bytes(head[0x3C:0x40], "little")
        if 0x40 <= offset < _MAX_PE_OFFSET:
            rest = stream.read(offset + 4 - len(head))
            data = head + rest
            return "pe" if data[offset : offset + 4] == b"PE\0\0" else "other"
        return "other"
    return sniff_bytes(head).kind


@dataclass
class _Foreign:
    windows: list[str] = field(default_factory=list)
    macos: list[str] = field(default_factory=list)
    extension_modules: int = 0  # .pyd/.so among them: imports that fail, not dead weight

    def add(self, name: str, kind: str) -> None:
        (self.windows if kind == "windows" else self.macos).append(name)
        if name.lower().endswith((".pyd", ".so")):
            self.extension_modules += 1


def check_dist(dist: Path, target: Target) -> list[Finding]:
    """Zips and folders in dist/ that hold Windows or macOS binaries, or were zipped by Windows tools."""
    if not dist.is_dir():
        return []
    findings: list[Finding] = []
    artifacts = 0
    for item in sorted(dist.iterdir()):
        if item.name.startswith("."):
            continue  # a build's staging folder
        if item.suffix.lower() == ".zip" and item.is_file():
            artifacts += 1
            findings += _check_zip(item, target)
        elif item.is_dir():
            artifacts += 1
            findings += _report_foreign(item, _scan_folder(item), target)
    if not findings and artifacts:
        findings.append(
            Finding("dist", "ok", f"{artifacts} artifact(s) in {dist} hold no Windows or macOS binaries")
        )
    return findings


def _scan_folder(folder: Path) -> _Foreign:
    found = _Foreign()
    for relative, path in iter_files(folder):
        if _worth_sniffing(relative):
            kind = _foreign_kind(relative, sniff(path).kind)
            if kind:
                found.add(relative, kind)
    return found


def _check_zip(path: Path, target: Target) -> list[Finding]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            found = _Foreign()
            for info in archive.infolist():
                if info.is_dir() or not _worth_sniffing(info.filename):
                    continue
                with archive.open(info) as stream:
                    kind = _foreign_kind(info.filename, _sniff_stream(stream))
                if kind:
                    found.add(info.filename, kind)
    except (zipfile.BadZipFile, OSError, RuntimeError) as error:
        return [
            Finding(
                "dist",
                "error",
                f"{path} is not a readable zip: {error}",
                "rebuild it with `layerforge build`",
            )
        ]
    findings = _report_foreign(path, found, target)
    backslashed = [name for name in names if "\\" in name]
    if backslashed:
        findings.append(
            Finding(
                "dist",
                "error",
                f"{path} was zipped by a Windows tool that writes '\\' in entry names ({backslashed[0]!r}"
                f"{_more(len(backslashed) - 1)}): Lambda unpacks them as single files named with "
                "backslashes, not as folders, so nothing imports",
                "make the zip with `layerforge build` (or `python -m zipfile -c out.zip python/`, or 7-Zip), "
                "never with PowerShell's Compress-Archive from Windows PowerShell 5",
                tuple(backslashed),
            )
        )
    return findings


def _more(count: int) -> str:
    return f" and {count} more" if count > 0 else ""


def _report_foreign(artifact: Path, found: _Foreign, target: Target) -> list[Finding]:
    if not found.windows and not found.macos:
        return []
    parts = [
        f"{len(names)} {label} binar{'y' if len(names) == 1 else 'ies'}"
        for label, names in (("Windows", found.windows), ("macOS", found.macos))
        if names
    ]
    every = found.windows + found.macos
    shown = ", ".join(every[:SHOWN]) + (f" and {len(every) - SHOWN} more" if len(every) > SHOWN else "")
    pip_flags = (
        f"--platform manylinux2014_{target.machine} --only-binary=:all: --python-version "
        f"{target.python_dotted} --implementation cp"
    )
    fix = (
        f"rebuild it with `layerforge build RECIPE --runtime {target.runtime} --arch {target.arch}`, which "
        f"picks Linux wheels on any machine; if you run pip yourself, add `{pip_flags}`"
    )
    if found.extension_modules:
        return [
            Finding(
                "dist",
                "error",
                f"{artifact} holds {' and '.join(parts)} ({shown}): built on Windows or macOS, or from "
                "wheels for them. Lambda runs Linux and cannot load them: the import fails with "
                '"No module named ..."',
                fix,
                tuple(every),
            )
        ]
    return [
        Finding(
            "dist",
            "warning",
            f"{artifact} holds {' and '.join(parts)} ({shown}) that Linux never loads, such as launchers "
            "shipped by pure-Python packages: dead weight rather than a broken import",
            "nothing breaks; to save space, remove them with a `[strip] remove` rule in the recipe",
            tuple(every),
        )
    ]
