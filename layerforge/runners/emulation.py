"""Whether this machine's kernel runs binaries of another architecture, so that a local Docker engine can
run an arm64 image on x86_64 (or the reverse) under QEMU.

Docker runs a foreign image's binaries through the kernel's binfmt_misc, which hands them to a registered
QEMU user-mode emulator. Inside a container the emulator's path does not exist, so the registration must
carry the F ("fix binary") flag, which opens the emulator when it is registered: Debian's
qemu-user-static and tonistiigi/binfmt both register with it. A remote engine (Docker Desktop's VM,
DOCKER_HOST on another machine) has binfmt_misc of its own, which this machine cannot read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..target import ARCHES, host_machine
from .docker import IMAGE_ARCHITECTURES

BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")


@dataclass(frozen=True)
class Emulation:
    """Can binaries for `machine` run here, and if not, how to make them."""

    machine: str
    available: bool | None  # None: the engine is not on this machine, so nobody here can tell
    detail: str
    fix: str = ""


def enable_hint(machine: str) -> str:
    """How to make the kernel run `machine` (x86_64 / aarch64) binaries, for containers too."""
    lambda_arch = {m: a for a, m in ARCHES.items()}.get(machine, machine)
    arch = IMAGE_ARCHITECTURES.get(lambda_arch, machine)
    return (
        f"on Debian or Ubuntu: `sudo apt-get install qemu-user-static binfmt-support` then "
        f"`sudo update-binfmts --enable qemu-{machine}`; anywhere with Docker: `docker run --privileged "
        f"--rm tonistiigi/binfmt --install {arch}` (Docker Desktop has it built in)"
    )


def engine_is_local(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    host = env.get("DOCKER_HOST", "")
    return not host or host.startswith("unix://")


def emulation_for(
    machine: str,
    *,
    binfmt_misc: Path = BINFMT_MISC,
    host: str | None = None,
    local_engine: bool | None = None,
) -> Emulation:
    """What this machine can say about running `machine` (x86_64 / aarch64) binaries in a local engine."""
    host = host or host_machine()
    if machine == host:
        return Emulation(machine, True, f"{machine} is this machine's own architecture")
    if not (engine_is_local() if local_engine is None else local_engine):
        return Emulation(
            machine,
            None,
            "the Docker engine is not on this machine, so its emulation cannot be read from here",
            enable_hint(machine),
        )
    entry = binfmt_misc / f"qemu-{machine}"
    try:
        lines = entry.read_text().splitlines()
    except FileNotFoundError:
        if not (binfmt_misc / "status").exists():
            return Emulation(
                machine,
                False,
                f"binfmt_misc is not mounted at {binfmt_misc}, so no {machine} binary can run here",
                f"`sudo mount -t binfmt_misc binfmt_misc {binfmt_misc}`, then " + enable_hint(machine),
            )
        return Emulation(machine, False, f"no emulator for {machine} is registered", enable_hint(machine))
    except OSError as error:
        return Emulation(machine, None, f"could not read {entry}: {error}", enable_hint(machine))
    enabled = bool(lines) and lines[0].strip() == "enabled"
    flags = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("flags:")), "")
    interpreter = next(
        (line.split(" ", 1)[1].strip() for line in lines if line.startswith("interpreter ")), "?"
    )
    if not enabled:
        return Emulation(
            machine,
            False,
            f"the {machine} emulator ({interpreter}) is registered but disabled",
            enable_hint(machine),
        )
    if "F" not in flags:
        return Emulation(
            machine,
            False,
            f"the {machine} emulator ({interpreter}) is registered without the F flag, so it cannot be "
            "found from inside a container",
            "register it with the F flag: install Debian's qemu-user-static (which does), or "
            + enable_hint(machine),
        )
    return Emulation(
        machine, True, f"{machine} binaries run here under emulation ({interpreter}, binfmt_misc)"
    )
