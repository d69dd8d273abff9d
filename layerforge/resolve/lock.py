"""Resolve a recipe's requirements for a target into a Lock: the exact wheel, URL and sha256 of each.

Resolution is pip's (`install --dry-run --report`), run isolated from the host: no host packages, no
pip configuration, no environment variables of pip's, every platform tag the runtime accepts passed, and
always `--only-binary=:all:`: the resolution never builds anything. A requirement with no wheel for the
target is built by `source_build.py` (in the Lambda build image, or here when the result is pure
Python), which hands the built wheels back here (`built=`) in a folder of their own for pip to take.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from packaging.requirements import Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from .. import __version__
from ..cache import WheelCache, is_sha256
from ..errors import LockError, ResolutionError, TargetError
from ..fsutil import atomic_write_text
from ..target import RUNTIMES, Target
from .index import (
    IndexSdist,
    IndexWheel,
    ProjectFiles,
    fetch_project_files,
    redact_url,
    supports_python,
)
from .local_index import LocalIndex, SharedListings
from .locked import HOST_BUILDER, BuiltFrom, LocalWheel, LockedPackage
from .pip_runner import no_tls_context, run_pip, warm_up

LOCK_SCHEMA_VERSION = 1
DEFAULT_INDEX_URL = "https://pypi.org/simple"
# A Docker image reference as layerforge writes one (registry/repository:tag or @digest), nothing else.
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]{0,254}$")
# The image's content: `repository@sha256:<hex>` as a registry names it, or `sha256:<hex>`, the engine's id
# of an image that no registry holds (built or imported here).
_IMAGE_DIGEST = re.compile(r"^([a-z0-9][a-z0-9._/:-]{0,200}@)?sha256:[0-9a-f]{64}$")
# Years after 2100 are no build date: a bound keeps a hostile number from reaching the container.
_MAX_EPOCH = 4_102_444_800


@dataclass(frozen=True)
class ResolutionNote:
    """Why the resolver took an older release than the newest one on the index."""

    package: str
    chosen: str
    newest: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"package": self.package, "chosen": self.chosen, "newest": self.newest, "reason": self.reason}


@dataclass(frozen=True)
class Lock:
    recipe: str
    runtime: str
    arch: str
    requirements: tuple[str, ...]
    index_url: str
    packages: tuple[LockedPackage, ...]
    notes: tuple[ResolutionNote, ...] = field(default=())
    exclude: tuple[str, ...] = ()
    # What the resolver chose but `exclude` left out, pinned like the rest: not in the layer, but a
    # build may verify against them where the runtime provides them (outside the lock hash).
    left_out: tuple[LockedPackage, ...] = ()

    def answers(
        self, requirements: Sequence[str], exclude: Sequence[str], target: Target, index_url: str
    ) -> bool:
        """True when this lock was resolved from exactly these inputs, so resolving again is not needed."""
        return (
            sorted(self.requirements) == sorted(requirements)
            and sorted(self.exclude) == sorted(exclude)
            and (self.runtime, self.arch) == (target.runtime, target.arch)
            and self.index_url == redact_url(index_url)
        )

    @property
    def lock_hash(self) -> str:
        """Identifies exactly what goes into the layer: the target and each wheel's hash."""
        # A built wheel's provenance counts too; a lock without one hashes as it always did.
        canonical = json.dumps(
            {
                "runtime": self.runtime,
                "arch": self.arch,
                "packages": sorted(
                    [p.name, p.version, p.wheel, p.sha256]
                    # "(host)" can name no image, so a host build never hashes as an image's.
                    + ([p.built_from.sdist_sha256, p.built_from.image or "(host)"] if p.built_from else [])
                    + ([p.built_from.image_digest] if p.built_from and p.built_from.image_digest else [])
                    for p in self.packages
                ),
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema_version": LOCK_SCHEMA_VERSION,
            "layerforge_version": __version__,
            "recipe": self.recipe,
            "runtime": self.runtime,
            "arch": self.arch,
            "requirements": list(self.requirements),
            "exclude": list(self.exclude),
            "index_url": self.index_url,
            "lock_hash": self.lock_hash,
            "packages": [p.as_dict() for p in sorted(self.packages, key=lambda p: p.name)],
            "notes": [n.as_dict() for n in self.notes],
            "left_out": [p.as_dict() for p in sorted(self.left_out, key=lambda p: p.name)],
        }

    def write(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.as_dict(), indent=2, sort_keys=True) + "\n")


# ---- reading a lock: hostile input, validated field by field -------------------------------------------


def read_lock(path: Path) -> Lock:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LockError(
            f"{path}: no such lock file", hint="write one with `layerforge lock RECIPE`"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise LockError(
            f"{path}: not a readable JSON lock ({error})", hint="regenerate it with `layerforge lock RECIPE`"
        ) from None
    except RecursionError:
        raise LockError(
            f"{path}: not a readable JSON lock (nested too deeply)",
            hint="regenerate it with `layerforge lock RECIPE`",
        ) from None
    return lock_from_dict(raw, str(path))


def lock_from_dict(raw: object, source: str) -> Lock:
    def fail(key: str, problem: str) -> LockError:
        return LockError(
            f"{source}: key `{key}`: {problem}", hint="regenerate it with `layerforge lock RECIPE`"
        )

    if not isinstance(raw, dict):
        raise fail("(top)", "expected a JSON object")
    schema = raw.get("schema_version")
    if type(schema) is not int or schema != LOCK_SCHEMA_VERSION:
        raise fail("schema_version", f"expected {LOCK_SCHEMA_VERSION}, got {raw.get('schema_version')!r}")
    text: dict[str, str] = {}
    for key in ("recipe", "runtime", "arch", "index_url"):
        value = raw.get(key)
        if not isinstance(value, str) or not value:
            raise fail(key, "expected a non-empty string")
        text[key] = value
    try:
        machine = Target(text["runtime"], text["arch"]).machine
    except TargetError as error:
        raise LockError(f"{source}: {error.message}", hint=error.hint) from None
    requirements = raw.get("requirements", [])
    if not isinstance(requirements, list) or not all(isinstance(r, str) for r in requirements):
        raise fail("requirements", "expected a list of strings")
    packages_raw = raw.get("packages")
    if not isinstance(packages_raw, list) or not packages_raw:
        raise fail("packages", "expected a non-empty list")
    packages = tuple(
        _package_from_dict(item, index, fail, machine) for index, item in enumerate(packages_raw)
    )
    names = [p.name for p in packages]
    if len(set(names)) != len(names):
        raise fail("packages", "a distribution is listed twice")
    exclude = raw.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(e, str) for e in exclude):
        raise fail("exclude", "expected a list of strings")
    notes = _notes_from(raw.get("notes", []), fail)
    left_out_raw = raw.get("left_out", [])
    if not isinstance(left_out_raw, list):
        raise fail("left_out", "expected a list")
    left_out = tuple(_package_from_dict(item, i, fail, machine) for i, item in enumerate(left_out_raw))
    index_url = redact_url(text["index_url"])  # shown in manifests and --json: never with credentials
    lock = Lock(
        text["recipe"],
        text["runtime"],
        text["arch"],
        tuple(requirements),
        index_url,
        packages,
        notes,
        tuple(exclude),
        left_out,
    )
    recorded = raw.get("lock_hash")
    if recorded is not None and recorded != lock.lock_hash:
        raise fail("lock_hash", "does not match the packages listed: the lock was edited by hand or damaged")
    return lock


def _notes_from(raw: object, fail: Any) -> tuple[ResolutionNote, ...]:
    if not isinstance(raw, list):
        raise fail("notes", "expected a list")
    notes = []
    keys = ("package", "chosen", "newest", "reason")
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in keys):
            raise fail(
                f"notes[{index}]", "expected an object with package, chosen, newest and reason strings"
            )
        notes.append(ResolutionNote(item["package"], item["chosen"], item["newest"], item["reason"]))
    return tuple(notes)


def _package_from_dict(item: object, index: int, fail: Any, machine: str) -> LockedPackage:
    key = f"packages[{index}]"
    if not isinstance(item, dict):
        raise fail(key, "expected an object")
    values: dict[str, str] = {}
    for field_name in ("name", "version", "wheel", "url", "sha256"):
        value = item.get(field_name)
        if not isinstance(value, str) or not value:
            raise fail(f"{key}.{field_name}", "expected a non-empty string")
        values[field_name] = value
    if not is_sha256(values["sha256"]):
        raise fail(f"{key}.sha256", "expected 64 lowercase hex digits")
    wheel = values["wheel"]
    if not wheel.endswith(".whl") or "/" in wheel or "\\" in wheel or wheel.startswith("."):
        raise fail(f"{key}.wheel", f"{wheel!r} is not a wheel file name")
    if _wheel_source_url(values["url"]) is None:
        raise fail(f"{key}.url", "expected an http(s) or file URL")
    built_from = _built_from(item.get("built_from"), f"{key}.built_from", fail)
    name = canonicalize_name(values["name"])
    _check_built_wheel_name(wheel, name, values["version"], built_from, machine, key, fail)
    return LockedPackage(
        name,
        values["version"],
        wheel,
        values["url"],
        values["sha256"],
        bool(item.get("requested", False)),
        built_from,
    )


def _wheel_source_url(text: str) -> SplitResult | None:
    """The URL split, when it is one a lock may name: http(s) with a host, or a file."""
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if parts.scheme == "file" or (parts.scheme in ("http", "https") and bool(parts.hostname)):
        return parts
    return None


def _built_from(raw: object, key: str, fail: Any) -> BuiltFrom | None:
    if raw is None:
        return None  # locks written before source builds existed, and every wheel from an index
    if not isinstance(raw, dict):
        raise fail(key, "expected an object with sdist, sdist_sha256, image and source_date_epoch")
    sdist, digest, image, epoch, builder = (
        raw.get(k) for k in ("sdist", "sdist_sha256", "image", "source_date_epoch", "builder")
    )
    parts = _wheel_source_url(sdist) if isinstance(sdist, str) else None
    if parts is None or parts.username or parts.password or parts.query:
        raise fail(f"{key}.sdist", "expected an http(s) or file URL without credentials")
    if not isinstance(digest, str) or not is_sha256(digest):
        raise fail(f"{key}.sdist_sha256", "expected 64 lowercase hex digits")
    if builder is not None:
        if builder != HOST_BUILDER or image is not None or raw.get("image_digest") is not None:
            raise fail(f"{key}.builder", f'expected "{HOST_BUILDER}", and then no image')
    elif not isinstance(image, str) or not _IMAGE.match(image):
        raise fail(f"{key}.image", "expected a Docker image reference")
    if type(epoch) is not int or not 0 <= epoch <= _MAX_EPOCH:
        raise fail(f"{key}.source_date_epoch", "expected a whole number of seconds since 1970")
    image_digest = raw.get("image_digest")
    if image_digest is not None and (
        not isinstance(image_digest, str) or not _IMAGE_DIGEST.match(image_digest)
    ):
        raise fail(
            f"{key}.image_digest", "expected repository@sha256:<64 hex digits> or sha256:<64 hex digits>"
        )
    return BuiltFrom(str(sdist), digest, image if builder is None else None, epoch, image_digest)


def _check_built_wheel_name(
    wheel: str, name: str, version: str, built_from: BuiltFrom | None, machine: str, key: str, fail: Any
) -> None:
    """A `linux_<arch>` wheel runs only where it was built: accepted only when built in the image."""
    try:
        wheel_name, wheel_version, _, tags = parse_wheel_filename(wheel)
    except (InvalidWheelFilename, ValueError):
        if built_from is not None:
            raise fail(f"{key}.wheel", f"{wheel!r} is not a wheel file name") from None
        return  # an index's wheel: its name is the index's business, and the download checks the bytes
    linux = {t.platform for t in tags if t.platform.startswith("linux_")}
    if built_from is None:
        if linux:
            raise fail(
                f"{key}.wheel",
                f"{wheel} is tagged {', '.join(sorted(linux))}, which only a wheel layerforge built from "
                "source in the Lambda build image may be, and this one has no built_from",
            )
        return
    if wheel_name != name or str(wheel_version) != version:
        raise fail(f"{key}.wheel", f"{wheel} is not a wheel of {name} {version}")
    if linux - {f"linux_{machine}"}:
        raise fail(f"{key}.wheel", f"{wheel} was built for another architecture than {machine}")


# ---- resolving -----------------------------------------------------------------------------------------


def pip_environment(index_url: str) -> dict[str, str]:
    """The environment without pip's own settings: the host's index, mirror and constraints stay out.

    The index comes in the environment, not on the command line: a URL with credentials in argv is
    readable by every user of the machine (`ps`), a process's environment only by its owner.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_INDEX_URL"] = index_url
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONNOUSERSITE"] = "1"
    return env


def pip_command(
    requirements: Sequence[str],
    target: Target,
    report: Path,
    scratch: Path,
    find_links: Path | None = None,
) -> list[str]:
    """pip_arguments as a command line of this interpreter's pip: what the resolution runs, by hand."""
    return [sys.executable, "-m", "pip", *pip_arguments(requirements, target, report, scratch, find_links)]


def pip_arguments(
    requirements: Sequence[str],
    target: Target,
    report: Path,
    scratch: Path,
    find_links: Path | None = None,
) -> list[str]:
    """pip's resolution on the host. `--only-binary=:all:` always: an sdist is never built by it.

    `find_links` is a folder holding only wheels layerforge built in the build image; they are tagged
    `linux_<arch>`, so that platform is accepted too, and `resolve` refuses any other such wheel. The
    index is not here but in pip_environment.
    """
    command = [
        "install",
        "--dry-run",
        "--ignore-installed",
        "--no-input",
        "--quiet",
        "--report",
        str(report),
        "--target",
        str(scratch),
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        target.python_dotted,
        "--abi",
        target.abi,
        "--abi",
        "abi3",
        "--abi",
        "none",
        # Nothing of the user's pip cache is read or written: every resolution sees the index as it is.
        "--no-cache-dir",
    ]
    for platform in target.platforms:
        command += ["--platform", platform]
    if find_links is not None:
        command += ["--find-links", str(find_links), "--platform", f"linux_{target.machine}"]
    # Requirements were parsed as PEP 508 on load, so none can start with "-" and pass as an option.
    return [*command, *requirements]


def resolve(
    recipe_name: str,
    requirements: Sequence[str],
    target: Target,
    *,
    index_url: str = DEFAULT_INDEX_URL,
    exclude: Iterable[str] = (),
    built: Sequence[LocalWheel] = (),
    cache: WheelCache | None = None,
    shared: SharedListings | None = None,
    prefetch: bool = False,
    scratch_in: Path | None = None,
) -> Lock:
    """Resolve with pip. Raises MissingWheel when a requirement has no wheel for the target.

    pip reads an http(s) index through a LocalIndex, which serves wheel metadata from `cache` (a folder of
    the resolution's own when None) or reads it remotely. `prefetch` (a build, which needs the wheels)
    also fetches the wheels pip will most likely take into `cache` while pip resolves. The resolution's
    scratch folder, pip's temporary files included, is made in `scratch_in` (a build's staging folder,
    which the next build sweeps if this one is killed outright), else in the system's.
    """
    warm_up()  # pip imports in its fork server while the local index starts and reads the first pages
    with tempfile.TemporaryDirectory(prefix="resolve-", dir=scratch_in) as scratch:
        wheels = cache if cache is not None else WheelCache(Path(scratch) / "cache")
        if urlsplit(index_url).scheme in ("http", "https"):
            with LocalIndex(index_url, wheels, target, linux_platform=bool(built), shared=shared) as local:
                if prefetch:
                    local.prefetch(requirements)
                return _resolve_with(
                    recipe_name, requirements, target, index_url, exclude, built, Path(scratch), local
                )
        return _resolve_with(
            recipe_name, requirements, target, index_url, exclude, built, Path(scratch), None
        )


def _resolve_with(
    recipe_name: str,
    requirements: Sequence[str],
    target: Target,
    index_url: str,
    exclude: Iterable[str],
    built: Sequence[LocalWheel],
    scratch: Path,
    local: LocalIndex | None,
) -> Lock:
    requested: set[str] = {canonicalize_name(Requirement(r).name) for r in requirements}
    with ThreadPoolExecutor(max_workers=8) as pages:

        def listing(name: str) -> Future[ProjectFiles]:
            if local is not None:
                # The page pip was served, read once: the explanations and pip see the same listing.
                future: Future[ProjectFiles] = Future()
                source = local.listing_future(name)
                source.add_done_callback(lambda done: future.set_result(done.result().project_files(name)))
                return future
            return pages.submit(fetch_project_files, index_url, name)

        # pip keeps one core busy for a second or two; the requested projects' pages, which
        # explain_choices needs afterwards, are read meanwhile.
        prefetched = {name: listing(name) for name in requested}
        report_path = scratch / "report.json"
        links = scratch / "built"
        offered = _find_links(links, built)
        arguments = pip_arguments(
            requirements,
            target,
            report_path,
            scratch / "target",
            find_links=links if built else None,
        )
        pip_tmp = scratch / "tmp"
        pip_tmp.mkdir()
        completed = run_pip(
            arguments, {**_pip_environment_for(local, index_url), "TMPDIR": str(pip_tmp)}, scratch
        )
        if completed.returncode != 0:
            stderr = local.shown(completed.stderr) if local is not None else completed.stderr
            if local is not None and local.failures:
                # The index served pip a wheel that failed its hash check, or none at all: that is the news.
                raise local.failures[0]
            raise _resolution_failure(stderr, target, index_url, prefetched)
        report = json.loads(report_path.read_text(encoding="utf-8"))
        excluded = {canonicalize_name(n) for n in exclude}
        reported = [
            _package_from_report(item, requested, offered, local) for item in report.get("install", [])
        ]
        packages = tuple(package for package in reported if package.name not in excluded)
        left_out = tuple(package for package in reported if package.name in excluded)
        for package in packages:
            if package.name not in prefetched:
                prefetched[package.name] = listing(package.name)
        notes = explain_choices(packages, target, {name: f.result()[0] for name, f in prefetched.items()})
    return Lock(
        recipe_name,
        target.runtime,
        target.arch,
        tuple(requirements),
        redact_url(index_url),  # a lock is committed and shown in --json: never with credentials in it
        tuple(sorted(packages, key=lambda p: p.name)),
        notes,
        tuple(sorted(excluded)),
        tuple(sorted(left_out, key=lambda p: p.name)),
    )


def _pip_environment_for(local: LocalIndex | None, index_url: str) -> dict[str, str]:
    if local is None:
        return pip_environment(index_url)
    env = pip_environment(local.url)
    # pip reads nothing but the local index, over plain http on loopback, yet each of its sessions loads
    # a CA bundle into a TLS context first (truststore's, 55 ms of CPU on the resolution's path). With
    # legacy-certs it builds none, and requests would load its own bundle only for an https connection,
    # which never comes; certificates are checked where the index is read over TLS, in local_index.py.
    env.update(no_tls_context())
    # The local index is on loopback: a proxy set for the machine must not be asked for it.
    for variable in ("NO_PROXY", "no_proxy"):
        hosts = [host for host in env.get(variable, "").split(",") if host]
        env[variable] = ",".join([*hosts, "127.0.0.1", "localhost"])
    return env


def _find_links(folder: Path, built: Sequence[LocalWheel]) -> dict[str, LocalWheel]:
    """Copy the built wheels into a folder of their own (pip must find nothing else there); by file URL."""
    folder.mkdir()
    offered = {}
    for wheel in built:
        copy = folder / wheel.path.name
        shutil.copyfile(wheel.path, copy)
        offered[copy.as_uri()] = wheel
    return offered


def _package_from_report(
    item: Mapping[str, Any],
    requested: set[str],
    built: Mapping[str, LocalWheel],
    local: LocalIndex | None,
) -> LockedPackage:
    info = item["download_info"]
    url: str = info["url"].split("#", 1)[0]
    if local is not None:
        url = local.original_url(url)
    name = canonicalize_name(item["metadata"]["name"])
    wheel = unquote(url.rsplit("/", 1)[-1].split("?", 1)[0])
    made = built.get(url)
    if made is not None:
        # Recorded as the cache's copy (not pip's scratch folder), with the hash layerforge took itself.
        return LockedPackage(
            name,
            item["metadata"]["version"],
            wheel,
            made.path.as_uri(),
            made.sha256,
            requested=name in requested,
            built_from=made.built_from,
        )
    _refuse_unportable(name, wheel)
    hashes = info.get("archive_info", {}).get("hashes", {})
    sha256 = hashes.get("sha256")
    if not sha256:
        raise ResolutionError(
            f"the index gave no sha256 for {redact_url(url)}",
            hint="use an index that publishes hashes (PEP 503 #sha256= fragments)",
        )
    return LockedPackage(name, item["metadata"]["version"], wheel, url, sha256, requested=name in requested)


def _refuse_unportable(name: str, wheel: str) -> None:
    """pip accepts `linux_<arch>` once built wheels are offered: an index's such wheel is still refused."""
    try:
        tags = parse_wheel_filename(wheel)[3]
    except (InvalidWheelFilename, ValueError):
        return
    linux = sorted({t.platform for t in tags if t.platform.startswith("linux_")})
    if linux:
        raise ResolutionError(
            f"pip took {wheel} for {name} from the index: it is tagged {linux[0]}, a wheel built on some "
            "unknown Linux that may not load on Lambda; only wheels layerforge built in the Lambda build "
            "image may be tagged so",
            hint=f"pin a release of {name} that has a manylinux wheel, or remove that wheel from the index",
        )


_NO_MATCH = re.compile(r"No matching distribution found for ([A-Za-z0-9_.\-\[\]]+)")
_NO_VERSION = re.compile(r"Could not find a version that satisfies the requirement ([A-Za-z0-9_.\-\[\]]+)")
# The whole requirement pip could not satisfy, specifier included: "demo>=1.0 (from app)".
_NO_MATCH_SPEC = re.compile(r"No matching distribution found for (\S+)")


class MissingWheel(ResolutionError):
    """No release of a requirement has a wheel for the target; it may still have a source distribution."""

    def __init__(
        self, message: str, *, hint: str | None, requirement: Requirement, sdists: Sequence[IndexSdist]
    ) -> None:
        super().__init__(message, hint=hint)
        self.requirement = requirement
        self.sdists = tuple(sdists)  # the index's listing, read once: a source build chooses from it

    @property
    def has_sdist(self) -> bool:
        return _any_sdist(self.requirement, self.sdists)


def _any_sdist(requirement: Requirement, sdists: Sequence[IndexSdist]) -> bool:
    return any(requirement.specifier.contains(s.version, prereleases=True) for s in sdists)


def _resolution_failure(
    stderr: str, target: Target, index_url: str, prefetched: Mapping[str, Future[ProjectFiles]]
) -> ResolutionError:
    match = _NO_MATCH.search(stderr) or _NO_VERSION.search(stderr)
    if not match:
        tail = "\n".join(line for line in stderr.strip().splitlines()[-6:])
        return ResolutionError(
            f"pip could not resolve the requirements for {target.label}:\n{tail}",
            hint="check the requirement names and versions, and that --index-url answers",
        )
    name = Requirement(match.group(1)).name
    # A requested project's page is being read already; a dependency's is read now.
    page = prefetched.get(canonicalize_name(name))
    wheels, sdists, failure = page.result() if page is not None else fetch_project_files(index_url, name)
    if failure is not None and not failure.startswith("HTTP 404"):
        # pip says "no matching distribution" when the index failed to answer: do not repeat that as fact.
        return ResolutionError(
            f"pip could not resolve {name} for {target.label}: the index at {redact_url(index_url)} "
            f"did not list it ({failure})",
            hint="check --index-url and the network, then rerun; the index may be down or slow",
        )
    requirement = _unsatisfied(stderr, name)
    hint = f"pin a release that has a wheel for {target.abi} manylinux (glibc <= {_glibc(target)})"
    runtimes = runtimes_with_a_wheel(requirement, wheels, target)
    if runtimes:
        others = f" (or {', '.join(runtimes[1:])})" if len(runtimes) > 1 else ""
        hint += f", or choose a runtime it has a wheel for: --runtime {runtimes[0]}{others}"
    if _any_sdist(requirement, sdists):
        hint = (
            f"rerun with --docker to build {name} from source inside the Lambda build image "
            f"(never on the host); or {hint}"
        )
    return MissingWheel(
        f"no release of {name} has a wheel for {describe_target(target)}: {_existing_wheels(wheels)}",
        hint=hint,
        requirement=requirement,
        sdists=sdists,
    )


def runtimes_with_a_wheel(
    requirement: Requirement, wheels: Sequence[IndexWheel], target: Target
) -> list[str]:
    """The other runtimes on the target's architecture that some wheel of the requirement fits, oldest
    first: only a runtime that would really help is worth suggesting."""
    fitting = []
    for runtime in RUNTIMES:
        other = Target(runtime, target.arch)
        python = Version(other.python_dotted + ".0")
        if runtime != target.runtime and any(
            not w.yanked
            and requirement.specifier.contains(w.version, prereleases=True)
            and supports_python(w.requires_python, python)
            and other.accepts(w.tags)
            for w in wheels
        ):
            fitting.append(runtime)
    return fitting


def _unsatisfied(stderr: str, name: str) -> Requirement:
    """The requirement pip could not satisfy, with its specifier when pip printed one."""
    match = _NO_MATCH_SPEC.search(stderr)
    if match:
        try:
            found = Requirement(match.group(1))
        except ValueError:
            found = None
        if found is not None and canonicalize_name(found.name) == canonicalize_name(name):
            return found
    return Requirement(name)


def _glibc(target: Target) -> str:
    return f"{target.glibc[0]}.{target.glibc[1]}"


def describe_target(target: Target) -> str:
    major, minor = target.glibc
    return f"{target.runtime} on {target.arch} ({target.abi}, {target.facts.os}, glibc {major}.{minor})"


def _existing_wheels(wheels: list[IndexWheel], limit: int = 8) -> str:
    if not wheels:
        return "the index lists no wheels for it at all (only sources, or the name is wrong)"
    newest = sorted(wheels, key=lambda w: w.version, reverse=True)
    shown = [w.filename for w in newest[:limit]]
    more = f" and {len(wheels) - limit} more" if len(wheels) > limit else ""
    return "wheels that exist: " + ", ".join(shown) + more


def _why_no_fit(version: Version, wheels: list[IndexWheel], target: Target) -> str:
    """Say in words why no wheel of a release fits: the Python it needs, or the platforms it ships."""
    mine = [w for w in wheels if w.version == version]
    requires = {w.requires_python for w in mine if w.requires_python}
    if requires and not any(supports_python(r, Version(target.python_dotted + ".0")) for r in requires):
        return f"requires Python {', '.join(sorted(requires))}, not {target.python_dotted}"
    for_python = [
        w for w in mine if any(t.interpreter in (target.abi, "py3") or t.abi == "abi3" for t in w.tags)
    ]
    if not for_python:
        return f"has no wheel for {target.abi}"
    platforms = sorted(
        {
            t.platform
            for w in for_python
            for t in w.tags
            if target.machine in t.platform and t.platform.startswith("manylinux")
        }
    )
    if platforms:
        return (
            f"ships for {target.machine} only as {', '.join(platforms[:3])}, newer than "
            f"{describe_target(target)} accepts"
        )
    return f"has no Linux {target.machine} wheel for {target.abi}"


def explain_choices(
    packages: Sequence[LockedPackage], target: Target, listings: Mapping[str, list[IndexWheel]]
) -> tuple[ResolutionNote, ...]:
    """For every package where a newer final release exists, say why the resolver passed over it.

    `listings` holds the index's wheels of each package (an empty list when the page could not be read).
    """
    notes = []
    for package in packages:
        # A wheel built from source was not chosen among the index's wheels: source_build explains it.
        note = None if package.built_from else _explain_one(package, listings.get(package.name, []), target)
        if note:
            notes.append(note)
    return tuple(notes)


def _explain_one(package: LockedPackage, wheels: list[IndexWheel], target: Target) -> ResolutionNote | None:
    chosen = Version(package.version)
    newer = sorted(
        {w.version for w in wheels if w.version > chosen and not w.version.is_prerelease and not w.yanked},
        reverse=True,
    )
    if not newer:
        return None
    newest = newer[0]
    by_version: dict[Version, list[IndexWheel]] = {}
    for wheel in wheels:
        by_version.setdefault(wheel.version, []).append(wheel)
    fitting = [v for v in newer if any(target.accepts(w.tags) for w in by_version.get(v, []))]
    if not fitting:
        # Explain with the newest release that supports this Python at all: "needs glibc 2.28" is the
        # useful answer, where "the newest needs Python 3.12" alone would hide it.
        reasons = [(v, _why_no_fit(v, by_version.get(v, []), target)) for v in newer]
        closest = next(((v, r) for v, r in reasons if not r.startswith("requires Python")), reasons[0])
        reason = f"{package.name} {closest[0]} {closest[1]}"
        if closest[0] != newest:
            reason += f" (and {newest}, the newest, {reasons[0][1]})"
        reason += f"; took {package.version}, the newest release with a wheel that fits"
    else:
        reason = (
            f"{package.name} {fitting[0]} has a wheel for {target.label} but the requirements "
            f"(a version specifier or another package's dependency) hold it at {package.version}"
        )
    return ResolutionNote(package.name, package.version, str(newest), reason)
