"""Requirements with no wheel for the target: built from their sdist in the Lambda build image, or, when
the result is pure Python, on this machine.

With --docker every such sdist is built in the image. Without it, an sdist is built here by
`host_build.build_pure_wheel` (its backend runs here; `--no-host-builds` refuses that), and the wheel is
taken only when it is `py3-none-any` with no native code; anything else needs --docker.

The loop: pip resolves on the host (always `--only-binary=:all:`); when a requirement has no wheel for
the target, the newest release that satisfies its specifier and has an sdist on the index is built
(`container_build.build_wheel_in_docker` in the SAM build image of the target's runtime and
architecture, or on the host as above), pinned to that sdist's sha256, with a fixed
SOURCE_DATE_EPOCH. The wheel goes into the content-addressed cache and pip resolves again with it offered
through --find-links, until every requirement resolves or MAX_SOURCE_BUILDS wheels were built (a
dependency of a built package may lack a wheel too).

A lock records such a package with the built wheel's sha256 and `built_from` (the sdist, its sha256, the
image and its digest, or `"builder": "host"`). Building from a lock finds the wheel in the cache by its
sha256, or builds it again where it was built (the image by digest) and refuses it unless it is byte for
byte the wheel the lock pins.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from ..cache import WheelCache, sha256_of
from ..errors import BuildError, LockError, ResolutionError
from ..runners.docker import DockerClient, docker_from_env, ensure_image, image_digest
from ..target import Target
from .container_build import build_image, build_wheel_in_docker
from .host_build import NotPurePython, build_pure_wheel
from .index import IndexSdist, redact_url, supports_python
from .local_index import SharedListings
from .lock import Lock, MissingWheel, ResolutionNote, describe_target, resolve
from .locked import BuiltFrom, LocalWheel, LockedPackage

# 1980-01-01, the oldest time a zip (so a wheel) can hold: the same stamp on every build, here or later.
SOURCE_DATE_EPOCH = 315_532_800
# Each build costs minutes; a chain of sdist-only dependencies longer than this is not a layer to build
# this way, and the bound also ends any loop a misbehaving index could cause.
MAX_SOURCE_BUILDS = 8

DockerClientFactory = Callable[[], DockerClient]


def _quiet(_message: str) -> None:
    return None


@dataclass(frozen=True)
class SourceBuilder:
    """Resolves with source builds in the image when `enabled` (--docker), else with pure-Python builds on
    the host unless `host_builds` is off (--no-host-builds); and provides a lock's built wheels.

    `client_factory` gives the Docker client, asked for only when a build must really run.
    """

    target: Target
    index_url: str
    cache: WheelCache
    enabled: bool
    client_factory: DockerClientFactory | None = None
    note: Callable[[str], None] = _quiet
    image_override: str | None = None  # --build-image
    host_builds: bool = True
    shared_listings: SharedListings | None = None  # pages read once for a project's resolutions
    prefetch_wheels: bool = False  # a build: fetch the likely wheels while pip resolves
    # A build's staging folder: the resolution's and the host builds' scratch go there, so that a build
    # killed outright leaves them where the next build sweeps them. None: the system's temporary folder.
    scratch_in: Path | None = None

    @property
    def image(self) -> str:
        return self.image_override or build_image(self.target)

    # ---- locking -------------------------------------------------------------------------------------

    def resolve(self, recipe_name: str, requirements: Sequence[str], *, exclude: Iterable[str] = ()) -> Lock:
        """lock.resolve, building each requirement that has no wheel (with --docker) and resolving again.

        Bounded: every round builds a release not built before, and at most MAX_SOURCE_BUILDS of them.
        """
        built: list[LocalWheel] = []
        tried: set[tuple[str, Version]] = set()
        client: DockerClient | None = None
        while True:
            try:
                lock = resolve(
                    recipe_name,
                    requirements,
                    self.target,
                    index_url=self.index_url,
                    exclude=exclude,
                    built=built,
                    cache=self.cache,
                    shared=self.shared_listings,
                    prefetch=self.prefetch_wheels,
                    scratch_in=self.scratch_in,
                )
            except MissingWheel as missing:
                if not missing.has_sdist or not (self.enabled or self.host_builds):
                    raise
                sdist = self._next_build(missing, tried)
                tried.add((canonicalize_name(missing.requirement.name), sdist.version))
                if not self.enabled:
                    built.append(self._build_on_host_for_lock(missing, sdist))
                    continue
                client = client if client is not None else self._client()
                built.append(self._build_for_lock(client, missing.requirement.name, sdist))
                continue
            return dataclasses.replace(lock, notes=lock.notes + tuple(self._notes(lock)))

    def _next_build(self, missing: MissingWheel, tried: set[tuple[str, Version]]) -> IndexSdist:
        requirement = missing.requirement
        name = canonicalize_name(requirement.name)
        # The index's page was read to say there is an sdist at all: choose from that reading.
        sdist = pick_sdist(missing.sdists, requirement, self.target)
        if (name, sdist.version) in tried:
            # pip was offered the wheel and still found nothing: building it again cannot help.
            raise ResolutionError(
                f"pip did not take the wheel built from {sdist.filename} for {requirement}: it needs "
                f"another release of {name}, or the built wheel does not fit {describe_target(self.target)}",
                hint=f"pin a release of {name} in the recipe",
            )
        if len(tried) >= MAX_SOURCE_BUILDS:
            done = ", ".join(sorted(f"{n} {v}" for n, v in tried))
            raise ResolutionError(
                f"{requirement} has no wheel for {self.target.label} either, after {len(tried)} builds from "
                f"source ({done}); layerforge stops at {MAX_SOURCE_BUILDS}",
                hint="pin releases that have manylinux wheels for some of them, or build the layer in an "
                "image of your own",
            )
        return sdist

    def _build_for_lock(self, client: DockerClient, name: str, sdist: IndexSdist) -> LocalWheel:
        project = canonicalize_name(name)
        self.note(
            f"{project} {sdist.version} has no wheel for {self.target.label}: building it from "
            f"{sdist.filename} in {self.image} (never on the host)"
        )
        # Pinned before the build, and the build runs by that digest: the lock names what really ran,
        # even if the tag moves meanwhile.
        ensure_image(client, self.image, self.target, self.note)
        digest = image_digest(client, self.image)
        built_from = BuiltFrom(redact_url(sdist.url), _sha256(sdist), self.image, SOURCE_DATE_EPOCH, digest)
        return self._store(client, project, str(sdist.version), built_from)

    def _build_on_host_for_lock(self, missing: MissingWheel, sdist: IndexSdist) -> LocalWheel:
        project = canonicalize_name(missing.requirement.name)
        self.note(
            f"{project} {sdist.version} has no wheel for {self.target.label}: building {sdist.filename} "
            "on this machine; taken only if it is pure Python (its build backend runs here; "
            "--no-host-builds refuses that)"
        )
        built_from = BuiltFrom(redact_url(sdist.url), _sha256(sdist), None, SOURCE_DATE_EPOCH)
        try:
            return self._store(None, project, str(sdist.version), built_from)
        except NotPurePython as refused:
            raise MissingWheel(
                f"{missing.message}; its sdist {sdist.filename} did not build a pure-Python wheel on this "
                f"machine: {refused.message}",
                hint=missing.hint,
                requirement=missing.requirement,
                sdists=missing.sdists,
            ) from None

    def _store(
        self, client: DockerClient | None, name: str, version: str, built_from: BuiltFrom
    ) -> LocalWheel:
        with tempfile.TemporaryDirectory(prefix="built-", dir=self.scratch_in) as out:
            wheel = self._build(client, name, version, built_from, self.index_url, Path(out))
            sha256, path = self.cache.store(wheel)
        # The lock records it by file URL, which a relative --cache-dir cannot give.
        return LocalWheel(path.absolute(), sha256, built_from)

    def _notes(self, lock: Lock) -> list[ResolutionNote]:
        return [
            ResolutionNote(
                p.name,
                p.version,
                p.version,
                f"{p.name} {p.version} has no wheel for {self.target.label}: built from source "
                f"({p.built_from.sdist.rsplit('/', 1)[-1]}) {p.built_from.where}",
            )
            for p in lock.packages
            if p.built_from is not None
        ]

    # ---- building from a lock ------------------------------------------------------------------------

    def provide(self, lock: Lock) -> None:
        """Make sure every built wheel of a lock read from a file is in the cache, by its sha256.

        A missing one is built again where the lock says it was built (the image only with --docker, this
        machine only for a pure-Python wheel and without --no-host-builds) and must match the lock byte
        for byte. Other packages are left to the download, which takes nothing (an http(s) URL or a `file:`
        one from a local mirror) whose sha256 differs from the lock's.
        """
        # The lock keeps its index without credentials: the user's --index-url, when it is that index.
        index = self.index_url if redact_url(self.index_url) == lock.index_url else lock.index_url
        client: DockerClient | None = None
        for package in lock.packages:
            built_from = package.built_from
            if built_from is None or self.cache.lookup(package.sha256, package.wheel) is not None:
                continue
            self._check_rebuildable(package, built_from)
            if built_from.image is not None and client is None:
                client = self._client()
            self._rebuild(client, package, built_from, index)

    def _check_rebuildable(self, package: LockedPackage, built_from: BuiltFrom) -> None:
        if built_from.image is None:
            if not self.host_builds:
                raise LockError(
                    f"{package.name} {package.version} was built on the host from its pure-Python sdist "
                    f"({package.wheel}), is not in the wheel cache {self.cache.root}, and host builds are "
                    "refused (--no-host-builds)",
                    hint="allow host builds for this one build, or restore the wheel cache",
                )
            return
        if not self.enabled:
            raise LockError(
                f"{package.name} {package.version} was built from source ({package.wheel}) and is not in "
                f"the wheel cache {self.cache.root}",
                hint=f"pass --docker to build it again from {built_from.sdist} in {built_from.image} "
                "(never on the host); it must come out with the sha256 the lock pins",
            )
        if built_from.image != self.image:
            # The image runs with the network and this machine's engine: only the one layerforge uses.
            raise LockError(
                f"the lock says {package.name} {package.version} was built in {built_from.image}; layerforge "
                f"builds {self.target.label} only in {self.image}",
                hint="lock again with `layerforge lock RECIPE --docker`",
            )

    def _rebuild(
        self, client: DockerClient | None, package: LockedPackage, built_from: BuiltFrom, index: str
    ) -> None:
        self.note(
            f"{package.wheel} is not in the wheel cache: building {package.name} {package.version} again "
            f"from {built_from.sdist.rsplit('/', 1)[-1]} {built_from.where}"
        )
        if built_from.image is not None and built_from.image_digest is None:
            self.note(
                f"the lock pins no digest of {built_from.image} (it was written before layerforge recorded "
                "one): building in what the tag names today; the wheel must still match the lock's sha256"
            )
        with tempfile.TemporaryDirectory(prefix="rebuilt-", dir=self.scratch_in) as out:
            wheel = self._build(client, package.name, package.version, built_from, index, Path(out))
            sha256 = sha256_of(wheel)
            if sha256 != package.sha256 or wheel.name != package.wheel:
                again = "--docker --refresh" if built_from.image is not None else "--refresh"
                raise BuildError(
                    f"{package.name} {package.version} built again from {built_from.sdist} "
                    f"{built_from.where} gave {wheel.name} with sha256 {sha256}, not the lock's "
                    f"{package.wheel} with sha256 {package.sha256}: the build is not reproducible, so "
                    "the lock cannot be rebuilt exactly (nothing was kept)",
                    hint=f"resolve and build it anew with `layerforge build RECIPE {again}` "
                    "(without --lock) and review the new lock; or keep the wheel cache between builds",
                )
            self.cache.store(wheel)

    # ---- one build -----------------------------------------------------------------------------------

    def _build(
        self,
        client: DockerClient | None,
        name: str,
        version: str,
        built_from: BuiltFrom,
        index: str,
        out: Path,
    ) -> Path:
        """Where built_from says: on the host (no image), else in the image (by digest when pinned)."""
        if built_from.image is None:
            wheel = build_pure_wheel(
                name,
                version,
                built_from.sdist_sha256,
                index_url=index,
                dest=out,
                source_date_epoch=built_from.source_date_epoch,
                scratch_in=self.scratch_in,
            )
        else:
            assert client is not None  # every caller asks for one before building in an image
            wheel = self._build_in_image(client, name, version, built_from, index, out)
        check_built_wheel(wheel.name, name, version, self.target, built_from.where)
        return wheel

    def _build_in_image(
        self, client: DockerClient, name: str, version: str, built_from: BuiltFrom, index: str, out: Path
    ) -> Path:
        return build_wheel_in_docker(
            f"{name}=={version}",
            self.target,
            out,
            index_url=index,
            client=client,
            # A rebuild runs in the very image the lock pins, whatever its tag points at today.
            image=built_from.image_digest or built_from.image,
            note=self.note,
            sdist_sha256=built_from.sdist_sha256,
            source_date_epoch=built_from.source_date_epoch,
        )

    def _client(self) -> DockerClient:
        return (self.client_factory or docker_from_env)()


def _sha256(sdist: IndexSdist) -> str:
    if sdist.sha256 is None:  # pick_sdist refuses these; kept for the type checker
        raise ResolutionError(f"the index gave no sha256 for {sdist.filename}")
    return sdist.sha256


def pick_sdist(sdists: Sequence[IndexSdist], requirement: Requirement, target: Target) -> IndexSdist:
    """Of the index's sdists of a project, the one of the newest release that satisfies the requirement
    and the target's Python, not yanked. `.tar.gz` (the standard form, PEP 625) wins over a `.zip` of the
    same release."""
    name = canonicalize_name(requirement.name)
    python = Version(target.python_dotted + ".0")
    fitting = [s for s in sdists if not s.yanked and supports_python(s.requires_python, python)]
    versions = list(requirement.specifier.filter({s.version for s in fitting}))
    if not versions:
        raise ResolutionError(
            f"no release of {name} that satisfies {requirement} has a source distribution for Python "
            f"{target.python_dotted} on the index either",
            hint=f"pin a release of {name} that has a wheel for {target.label}",
        )
    newest = max(versions)
    release = [s for s in fitting if s.version == newest]
    chosen = min(release, key=lambda s: (not s.filename.endswith(".tar.gz"), s.filename))
    if chosen.sha256 is None:
        raise ResolutionError(
            f"the index gave no sha256 for {chosen.filename}: layerforge builds only an sdist it can pin",
            hint="use an index that publishes hashes (PEP 503 #sha256= fragments)",
        )
    return chosen


def built_wheel_tags(target: Target) -> frozenset[Tag]:
    """What a wheel built in the target's image may be tagged: the runtime's tags, and `linux_<arch>`."""
    platforms = [f"linux_{target.machine}"]
    version = target.python_version
    linux = [*cpython_tags(version, abis=[target.abi], platforms=platforms)]
    linux += compatible_tags(version, interpreter=target.abi, platforms=platforms)
    return target.tag_set | frozenset(linux)


def check_built_wheel(filename: str, name: str, version: str, target: Target, where: str) -> None:
    """A build's output is checked like any download: it must be the wheel that was asked for."""
    try:
        wheel_name, wheel_version, _, tags = parse_wheel_filename(filename)
    except (InvalidWheelFilename, ValueError):
        wheel_name, wheel_version, tags = None, None, frozenset()
    if wheel_name != canonicalize_name(name) or wheel_version != Version(version):
        raise BuildError(
            f"the build of {name} {version} {where} gave {filename!r}, not a wheel of {name} {version}",
            hint="the sdist may build another project; pin a release of it that has a wheel",
        )
    if tags.isdisjoint(built_wheel_tags(target)):
        raise BuildError(
            f"the build of {name} {version} {where} gave {filename}, which {target.label} cannot use",
            hint=f"check that the image is the {target.runtime} build image for {target.arch}",
        )
