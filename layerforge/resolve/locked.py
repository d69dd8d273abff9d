"""What a lock pins for each package: the wheel, its URL and sha256, and where a built one came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST_BUILDER = "host"


@dataclass(frozen=True)
class BuiltFrom:
    """Where a wheel that layerforge built from source came from: the sdist it built and the image, or
    this machine (`image` None) for a pure-Python sdist."""

    sdist: str  # the sdist's URL, without credentials
    sdist_sha256: str
    image: str | None
    source_date_epoch: int
    # What `image` was when it built the wheel: a tag moves, a digest does not. Rebuilds run by digest.
    image_digest: str | None = None

    @property
    def where(self) -> str:
        return f"in {self.image}" if self.image is not None else "on this machine (pure Python)"

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "sdist": self.sdist,
            "sdist_sha256": self.sdist_sha256,
            "source_date_epoch": self.source_date_epoch,
        }
        if self.image is None:
            entry["builder"] = HOST_BUILDER
        else:
            entry["image"] = self.image
        if self.image_digest is not None:
            entry["image_digest"] = self.image_digest
        return entry


@dataclass(frozen=True)
class LocalWheel:
    """A wheel built from source and kept in the wheel cache, offered to pip through --find-links."""

    path: Path
    sha256: str
    built_from: BuiltFrom


@dataclass(frozen=True)
class LockedPackage:
    name: str
    version: str
    wheel: str
    url: str
    sha256: str
    requested: bool = False
    # Set only for a wheel built from source in the build image: never downloaded, found in the cache
    # by its sha256 or built again there.
    built_from: BuiltFrom | None = None

    def as_dict(self) -> dict[str, Any]:
        entry = {
            "name": self.name,
            "version": self.version,
            "wheel": self.wheel,
            "url": self.url,
            "sha256": self.sha256,
            "requested": self.requested,
        }
        if self.built_from is not None:
            entry["built_from"] = self.built_from.as_dict()
        return entry
