"""The Lambda runtimes layerforge builds for, as one data table, and the wheel tags each accepts."""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from packaging.tags import Tag, compatible_tags, cpython_tags

from .errors import TargetError

# What the Lambda Python runtime puts on sys.path besides the standard library, import name to
# distribution (its versions vary by region and date: a function that needs a given boto3 packages it).
RUNTIME_PROVIDED: Mapping[str, str] = {
    "boto3": "boto3",
    "botocore": "botocore",
    "s3transfer": "s3transfer",
    "jmespath": "jmespath",
    "dateutil": "python-dateutil",
    "urllib3": "urllib3",
    "six": "six",
    "awslambdaric": "awslambdaric",
    "bootstrap": "awslambdaric",
}

# The distributions each managed runtime ships that a layer may leave out (`exclude_runtime_provided`):
# the AWS SDK for Python and the distributions it needs to import. Source: the Lambda developer guide,
# "Building Lambda functions with Python" (https://docs.aws.amazon.com/lambda/latest/dg/lambda-python.html,
# "SDK versions included in the runtime": every Python runtime includes boto3 and botocore, their versions
# varying by region and date), and boto3's and botocore's own install requirements: s3transfer and jmespath,
# python-dateutil (which needs six) and urllib3. The runtime's folders come after /opt's on sys.path, so a
# layer's copy wins when it ships one. awslambdaric, the runtime interface client, is the runtime's own code
# and not something a layer ships. Not checked here against a live image: the tests cannot pull one.
# Derived from RUNTIME_PROVIDED so that the two tables cannot drift; every runtime ships the same set
# (RUNTIME_PROVIDED_DISTRIBUTIONS, below RUNTIMES).
_SDK_CLOSURE = frozenset(RUNTIME_PROVIDED.values()) - {"awslambdaric"}


@dataclass(frozen=True)
class RuntimeFacts:
    """What AWS documents for one managed Python runtime."""

    name: str
    python: tuple[int, int]
    os: str
    glibc: tuple[int, int]


# The one table of runtime facts. Amazon Linux 2 ships glibc 2.26, Amazon Linux 2023 glibc 2.34.
RUNTIMES: dict[str, RuntimeFacts] = {
    facts.name: facts
    for facts in (
        RuntimeFacts("python3.9", (3, 9), "Amazon Linux 2", (2, 26)),
        RuntimeFacts("python3.10", (3, 10), "Amazon Linux 2", (2, 26)),
        RuntimeFacts("python3.11", (3, 11), "Amazon Linux 2", (2, 26)),
        RuntimeFacts("python3.12", (3, 12), "Amazon Linux 2023", (2, 34)),
        RuntimeFacts("python3.13", (3, 13), "Amazon Linux 2023", (2, 34)),
        RuntimeFacts("python3.14", (3, 14), "Amazon Linux 2023", (2, 34)),
    )
}

RUNTIME_PROVIDED_DISTRIBUTIONS: Mapping[str, frozenset[str]] = {runtime: _SDK_CLOSURE for runtime in RUNTIMES}

# Lambda's architecture names against the machine names that wheel tags and ELF headers use.
ARCHES: dict[str, str] = {"x86_64": "x86_64", "arm64": "aarch64"}

DEFAULT_RUNTIME = "python3.11"
DEFAULT_ARCH = "x86_64"

# The legacy manylinux aliases and the glibc each stands for (PEP 600).
_LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
_LEGACY_ARCHES = {
    "manylinux2014": ("x86_64", "aarch64"),
    "manylinux2010": ("x86_64",),
    "manylinux1": ("x86_64",),
}
_OLDEST_GLIBC_MINOR = {"x86_64": 5, "aarch64": 17}


@dataclass(frozen=True)
class Target:
    """One Lambda runtime on one architecture."""

    runtime: str = DEFAULT_RUNTIME
    arch: str = DEFAULT_ARCH

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise TargetError(
                f"unknown runtime {self.runtime!r}",
                hint=f"choose one of: {', '.join(RUNTIMES)}",
            )
        if self.arch not in ARCHES:
            raise TargetError(
                f"unknown architecture {self.arch!r}",
                hint=f"choose one of: {', '.join(ARCHES)}",
            )

    @property
    def facts(self) -> RuntimeFacts:
        return RUNTIMES[self.runtime]

    @property
    def runtime_provided(self) -> frozenset[str]:
        """Canonical names of the distributions this runtime ships on sys.path after the layers."""
        return RUNTIME_PROVIDED_DISTRIBUTIONS[self.runtime]

    @property
    def python_version(self) -> tuple[int, int]:
        return self.facts.python

    @property
    def python_dotted(self) -> str:
        return f"{self.python_version[0]}.{self.python_version[1]}"

    @property
    def abi(self) -> str:
        major, minor = self.python_version
        return f"cp{major}{minor}"

    @property
    def glibc(self) -> tuple[int, int]:
        return self.facts.glibc

    @property
    def machine(self) -> str:
        """The machine name used in wheel tags, `uname -m` and ELF headers (x86_64, aarch64)."""
        return ARCHES[self.arch]

    @property
    def site_packages(self) -> str:
        """The layer's second sys.path entry (after `python/`): python/lib/python3.X/site-packages."""
        return f"python/lib/python{self.python_dotted}/site-packages"

    @property
    def label(self) -> str:
        return f"{self.runtime}-{self.arch}"

    @cached_property
    def platforms(self) -> tuple[str, ...]:
        """Every platform tag the runtime accepts, best first.

        pip expands `manylinux2014` downward but never a `manylinux_X_Y` tag, so each one is listed.
        """
        major, newest_minor = self.glibc
        tags: list[str] = []
        for minor in range(newest_minor, _OLDEST_GLIBC_MINOR[self.machine] - 1, -1):
            tags.append(f"manylinux_{major}_{minor}_{self.machine}")
            legacy = _LEGACY_MANYLINUX.get((major, minor))
            if legacy and self.machine in _LEGACY_ARCHES[legacy]:
                tags.append(f"{legacy}_{self.machine}")
        return tuple(tags)

    @cached_property
    def tags(self) -> tuple[Tag, ...]:
        """Every wheel tag the runtime accepts, most specific first (as pip orders them)."""
        version = self.python_version
        platforms = list(self.platforms)
        ordered = list(cpython_tags(version, abis=[self.abi], platforms=platforms))
        ordered += list(compatible_tags(version, interpreter=self.abi, platforms=platforms))
        seen: dict[Tag, None] = dict.fromkeys(ordered)
        return tuple(seen)

    @cached_property
    def tag_set(self) -> frozenset[Tag]:
        return frozenset(self.tags)

    def marker_environment(self) -> dict[str, str]:
        """PEP 508 marker values of the runtime, those known without running it: enough for a guess at
        what a resolver will ask for next, never for deciding what goes in a layer."""
        full = self.python_dotted + ".0"
        return {
            "python_version": self.python_dotted,
            "python_full_version": full,
            "implementation_version": full,
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
            "platform_system": "Linux",
            "sys_platform": "linux",
            "os_name": "posix",
            "platform_machine": self.machine,
            "extra": "",
        }

    def accepts(self, wheel_tags: frozenset[Tag]) -> bool:
        return not wheel_tags.isdisjoint(self.tag_set)


def machine_name(machine: str) -> str:
    """A platform.machine() as wheel tags and ELF spell it: Windows says AMD64 (or x64), macOS arm64."""
    lowered = machine.lower()
    return {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}.get(lowered, lowered)


def host_machine() -> str:
    return machine_name(platform.machine())
