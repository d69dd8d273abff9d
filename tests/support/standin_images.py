"""Stand-ins for the AWS Lambda images, built here from Debian packages, for tests against a real engine.

    python -m tests.support.standin_images            # build what is missing, print "<role> <image>"
    python -m tests.support.standin_images --names    # only print the names (no engine needed)
    python -m tests.support.standin_images --rebuild --role runtime-arm64

The Lambda images cannot be pulled where the tests run, and must not be impersonated: every stand-in is
named `layerforge-test/...`, never `public.ecr.aws/...`, and says what it is in a label. Each is Debian
bookworm's CPython 3.11 laid out where layerforge's container code expects the Lambda images' python:

    /var/lang/bin/python3.11 -> /usr/bin/python3.11      (the entrypoint layerforge gives the container)
    /var/task, /var/runtime                              (working directory, LAMBDA_RUNTIME_DIR)
    /usr/lib/locale/en_US.utf8 -> C.utf8                 (LANG=en_US.UTF-8, as Lambda sets it)

Nothing in an image needs a user of its own (the containers run as 993:990) or a writable root.

The root filesystem comes from mmdebstrap (variant `essential`, plus the role's packages, without docs or
man pages; foreign architectures run under qemu-user binfmt emulation) from the Debian mirror this
machine's apt sources name. It is loaded with `docker load` from an image archive written here rather
than `docker import`: the engine Debian 12 ships (20.10) records its own architecture on an imported
image whatever `--platform` says, and layerforge checks the architecture of the image before using it.

An image's tag ends in a digest of its recipe (packages, hook, config), so a changed recipe builds a new
image, and an existing one is only inspected: a run with every image present takes well under a second.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"  # its python3.11 is the runtime's CPython minor version
PYTHON = "python3.11"
FALLBACK_MIRROR = "http://deb.debian.org/debian"
LABEL = "io.layerforge.role"  # the label layerforge.docker_backend puts on its containers
RECIPE_LABEL = "io.layerforge.standin.recipe"
# Bump when the way an image is made changes in a way the recipe below does not show.
RECIPE_FORMAT = 1
# Docker's names for the two Lambda architectures, and the kernel's.
DOCKER_ARCH = {"x86_64": "amd64", "arm64": "arm64"}
DEBIAN_ARCH = {"x86_64": "amd64", "arm64": "arm64"}
MACHINE = {"x86_64": "x86_64", "arm64": "aarch64"}
# The first bytes of an aarch64 ELF executable, as a binfmt_misc entry for it has them as its magic.
AARCH64_ELF_MAGIC = "7f454c460201010000000000000000000200b700"
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
# mmdebstrap's hooks for a merged /usr without the usrmerge package (which would pull in all of perl).
MERGED_USR_HOOKS = Path("/usr/share/mmdebstrap/hooks/merged-usr")
BUILD_TIMEOUT = 1800.0
ENGINE_TIMEOUT = 20.0

# Everything the images have in common: no documentation, no translations.
DPKG_OPTIONS = (
    "force-unsafe-io",  # a throwaway tree: no fsync per file
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/lintian/*",
)

# Runs on the host with the new root as $1, after the packages are installed.
LAMBDA_LAYOUT_HOOK = f"""\
set -e
root="$1"
mkdir -p "$root/var/lang/bin" "$root/var/lang/lib" "$root/var/task" "$root/var/runtime"
ln -s /usr/bin/{PYTHON} "$root/var/lang/bin/{PYTHON}"
ln -s {PYTHON} "$root/var/lang/bin/python3"
ln -s C.utf8 "$root/usr/lib/locale/en_US.utf8"
rm -f "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
rm -rf "$root"/var/log/apt "$root"/var/log/dpkg.log "$root"/var/log/alternatives.log
"""
# The SAM build image has pip next to its python; layerforge runs `python -m pip`, so this is a courtesy.
PIP_HOOK = """\
ln -s /usr/bin/pip3 "$1/var/lang/bin/pip"
ln -s /usr/bin/pip3 "$1/var/lang/bin/pip3"
"""

# The Lambda python images' environment, less what only their Runtime Interface Emulator reads.
IMAGE_ENV = (
    "PATH=/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
    "LANG=en_US.UTF-8",
    "LAMBDA_TASK_ROOT=/var/task",
    "LAMBDA_RUNTIME_DIR=/var/runtime",
)


@dataclass(frozen=True)
class Recipe:
    """One stand-in image: what goes in it and what it is called."""

    role: str
    repository: str
    arch: str  # x86_64 or arm64, as layerforge's Target spells it
    packages: tuple[str, ...]
    hook: str
    purpose: str
    dpkg_options: tuple[str, ...] = ()  # beyond DPKG_OPTIONS

    @property
    def all_dpkg_options(self) -> tuple[str, ...]:
        return DPKG_OPTIONS + self.dpkg_options

    def definition(self) -> dict[str, object]:
        """Everything that decides the image's content; its digest is the tag's suffix."""
        return {
            "format": RECIPE_FORMAT,
            "suite": SUITE,
            "variant": "essential",
            "merged_usr_hooks": True,
            "architecture": DEBIAN_ARCH[self.arch],
            "packages": sorted(self.packages),
            "dpkg_options": list(self.all_dpkg_options),
            "hook": self.hook,
            "env": list(IMAGE_ENV),
            "cmd": [f"/var/lang/bin/{PYTHON}"],
            "workdir": "/var/task",
            "role_label": self.role_label,
        }

    @property
    def digest(self) -> str:
        text = json.dumps(self.definition(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def role_label(self) -> str:
        return f"standin-{self.role}"

    @property
    def image(self) -> str:
        return f"{self.repository}:{PYTHON}-{self.arch}-{self.digest[:12]}"


# Besides Python, the system libraries every Lambda runtime has and manylinux wheels link against
# (Amazon Linux's glibc, libgcc, libstdc++ and zlib): scipy's and pandas' extensions need libstdc++.
RUNTIME_PACKAGES = (PYTHON, "libstdc++6", "libgcc-s1", "zlib1g")
BUILD_PACKAGES = (
    PYTHON,
    f"{PYTHON}-dev",  # Python.h and libpython, for C extensions
    f"{PYTHON}-venv",  # venv and ensurepip
    "python3-pip",
    "python3-setuptools",  # builds without the network: pip wheel --no-build-isolation
    "python3-wheel",
    "gcc",
    "libc6-dev",
    "ca-certificates",  # pip reaching an https index
)

# 57 MB nothing builds an extension with: gcc's LTO dumper and the static libpython (extensions link to
# no libpython at all).
BUILD_DPKG_OPTIONS = (
    "path-exclude=/usr/bin/*-lto-dump-*",
    "path-exclude=/usr/lib/python3.11/config-3.11-*/libpython3.11*.a",
    "path-exclude=/usr/lib/*-linux-gnu/libpython3.11*.a",
)

RECIPES: dict[str, Recipe] = {
    recipe.role: recipe
    for recipe in (
        Recipe(
            "runtime-x86_64",
            "layerforge-test/runtime",
            "x86_64",
            RUNTIME_PACKAGES,
            LAMBDA_LAYOUT_HOOK,
            "verifying x86_64 layers (stands in for public.ecr.aws/lambda/python:3.11)",
        ),
        Recipe(
            "runtime-arm64",
            "layerforge-test/runtime",
            "arm64",
            RUNTIME_PACKAGES,
            LAMBDA_LAYOUT_HOOK,
            "verifying arm64 layers under emulation (stands in for public.ecr.aws/lambda/python:3.11)",
        ),
        Recipe(
            "build-x86_64",
            "layerforge-test/build",
            "x86_64",
            BUILD_PACKAGES,
            LAMBDA_LAYOUT_HOOK + PIP_HOOK,
            "building sdists with C extensions (stands in for public.ecr.aws/sam/build-python3.11)",
            BUILD_DPKG_OPTIONS,
        ),
    )
}


class SetupError(Exception):
    """Something this machine lacks; the message says what and how to get it."""


def say(message: str) -> None:
    print(f"standin-images: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------
# The Debian mirror this machine's apt uses


def _one_line_sources(text: str) -> Iterator[tuple[list[str], list[str], list[str]]]:
    """(uris, suites, components) of each `deb` line of a sources.list file."""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        line = re.sub(r"\[[^\]]*\]", " ", line)  # options such as [signed-by=...]
        words = line.split()
        if len(words) >= 3:
            yield [words[1]], [words[2]], words[3:]


def _deb822_sources(text: str) -> Iterator[tuple[list[str], list[str], list[str]]]:
    """(uris, suites, components) of each enabled `deb` paragraph of a .sources file."""
    for paragraph in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for raw in paragraph.splitlines():
            if raw.startswith("#"):
                continue
            if raw[:1] in (" ", "\t") and key:
                fields[key] += " " + raw.strip()
            elif ":" in raw:
                key, _, value = raw.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        yield (
            fields.get("uris", "").split(),
            fields.get("suites", "").split(),
            fields.get("components", "").split(),
        )


def host_mirror(suite: str = SUITE, etc: Path = Path("/etc/apt")) -> str:
    """The first http(s) mirror the host's apt sources list with `suite main`, else deb.debian.org."""
    files: list[tuple[Path, bool]] = [(etc / "sources.list", False)]
    parts = etc / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix in (".list", ".sources"):
                files.append((path, path.suffix == ".sources"))
    for path, deb822 in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for uris, suites, components in (_deb822_sources if deb822 else _one_line_sources)(text):
            if suite in suites and "main" in components:
                for uri in uris:
                    if uri.startswith(("http://", "https://")):
                        return uri.rstrip("/")
    return FALLBACK_MIRROR


# ---------------------------------------------------------------------------------------------------
# The engine and the host's tools


def _docker(*args: str, timeout: float = ENGINE_TIMEOUT) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["docker", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise SetupError(
            f"`docker {' '.join(args)}` did not return within {timeout:.0f} s: the engine is not answering",
        ) from error


def check_engine() -> str:
    """The engine's version; SetupError when there is no docker CLI or no engine answers."""
    if shutil.which("docker") is None:
        raise SetupError(
            "the docker CLI is not on PATH: install docker.io "
            "(`.ci/docker-setup.sh` does it as root on Debian)"
        )
    result = _docker("version", "--format", "{{.Server.Version}}")
    if result.returncode != 0 or not result.stdout.strip():
        said = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        raise SetupError(
            f"no Docker engine answers at {where}: {said}\n"
            "  start one (`.ci/docker-setup.sh` starts dockerd as root; or `sudo systemctl start docker`), "
            "or set DOCKER_HOST"
        )
    return result.stdout.strip()


def check_builder(recipes: Iterable[Recipe]) -> None:
    """SetupError unless mmdebstrap is here and every foreign architecture can run under emulation."""
    missing = [tool for tool in ("mmdebstrap",) if shutil.which(tool) is None]
    foreign = {r.arch for r in recipes if MACHINE[r.arch] != platform.machine()}
    if foreign and shutil.which("arch-test") is None:
        missing.append("arch-test")
    if missing:
        raise SetupError(
            f"{' and '.join(missing)} not found: the stand-in images are built from Debian packages with "
            "mmdebstrap; install `mmdebstrap arch-test qemu-user-static binfmt-support` "
            "(`.ci/docker-setup.sh` does it as root on Debian)"
        )
    for arch in sorted(foreign):
        if arch == "arm64" and not aarch64_binfmt():
            raise SetupError(
                "no binfmt_misc handler runs aarch64 programs here, so the arm64 image cannot be built: "
                "install qemu-user-static and binfmt-support, mount binfmt_misc and enable it "
                "(`mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable "
                "qemu-aarch64`; `.ci/docker-setup.sh` does all of it)"
            )


def aarch64_binfmt() -> bool:
    """Whether an enabled binfmt_misc entry claims aarch64 ELF executables."""
    if not BINFMT_DIR.is_dir():
        return False
    for entry in BINFMT_DIR.iterdir():
        if entry.name in ("register", "status"):
            continue
        try:
            text = entry.read_text()
        except OSError:
            continue
        if text.startswith("enabled") and f"magic {AARCH64_ELF_MAGIC}" in text:
            return True
    return False


def present(recipes: Sequence[Recipe]) -> set[str]:
    """Roles whose image is already here for the right architecture, with the recipe's label."""
    found: set[str] = set()
    for recipe in recipes:
        result = _docker(
            "image",
            "inspect",
            "--format",
            '{{.Architecture}} {{index .Config.Labels "' + RECIPE_LABEL + '"}}',
            recipe.image,
        )
        if result.returncode == 0 and result.stdout.split() == [DOCKER_ARCH[recipe.arch], recipe.digest]:
            found.add(recipe.role)
    return found


# ---------------------------------------------------------------------------------------------------
# Building


def mmdebstrap_command(recipe: Recipe, output: Path, mirror: str) -> list[str]:
    command = [
        "mmdebstrap",
        "--variant=essential",
        f"--architectures={DEBIAN_ARCH[recipe.arch]}",
        f"--include={','.join(recipe.packages)}",
        *(f"--dpkgopt={option}" for option in recipe.all_dpkg_options),
        f"--customize-hook={recipe.hook}",
    ]
    if MERGED_USR_HOOKS.is_dir():
        command.insert(2, f"--hook-dir={MERGED_USR_HOOKS}")
    return [*command, SUITE, str(output), mirror]


def image_config(recipe: Recipe, diff_id: str, command: Sequence[str]) -> dict[str, object]:
    """The image's config as `docker load` reads it: the architecture is the recipe's, not the host's."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "architecture": DOCKER_ARCH[recipe.arch],
        "os": "linux",
        "created": now,
        "config": {
            "Env": list(IMAGE_ENV),
            "Cmd": [f"/var/lang/bin/{PYTHON}"],
            "WorkingDir": "/var/task",
            "Labels": {
                LABEL: recipe.role_label,
                RECIPE_LABEL: recipe.digest,
                "io.layerforge.standin.purpose": recipe.purpose,
                "io.layerforge.standin.suite": SUITE,
            },
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [
            {
                "created": now,
                "created_by": " ".join([*command[:-3], SUITE, "-", "<mirror>"])[:4000],
                "comment": "layerforge test stand-in, built by tests/support/standin_images.py",
            }
        ],
    }


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_image(recipe: Recipe, rootfs: Path, command: Sequence[str]) -> None:
    """`docker load` a one-layer image archive (the docker save format) made from the root tarball."""
    layer_hex = _sha256_file(rootfs)
    config = json.dumps(image_config(recipe, f"sha256:{layer_hex}", command), sort_keys=True).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [recipe.image], "Layers": [f"{layer_hex}/layer.tar"]}]
    ).encode()
    loader = subprocess.Popen(
        ["docker", "load"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert loader.stdin is not None
    try:
        with tarfile.open(fileobj=loader.stdin, mode="w|") as archive:
            info = tarfile.TarInfo(f"{layer_hex}/layer.tar")
            info.size = rootfs.stat().st_size
            with rootfs.open("rb") as stream:
                archive.addfile(info, stream)
            for name, data in ((config_name, config), ("manifest.json", manifest)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    except BrokenPipeError:
        pass  # docker load gave up; its message is read below
    out, err = loader.communicate(timeout=BUILD_TIMEOUT)
    if loader.returncode != 0:
        raise SetupError(
            f"docker load of {recipe.image} failed: {(err or out).decode(errors='replace').strip()}"
        )


def build(recipe: Recipe, mirror: str) -> float:
    """Build and load one image; the seconds it took."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="layerforge-standin-") as scratch:
        rootfs = Path(scratch) / "rootfs.tar"
        log = Path(scratch) / "mmdebstrap.log"
        command = mmdebstrap_command(recipe, rootfs, mirror)
        say(f"building {recipe.image} ({recipe.role}) from {mirror} {SUITE}")
        with log.open("wb") as stream:
            try:
                result = subprocess.run(
                    command, stdout=stream, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT, check=False
                )
            except subprocess.TimeoutExpired as error:
                raise SetupError(
                    f"mmdebstrap for {recipe.role} ran longer than {BUILD_TIMEOUT:.0f} s"
                ) from error
        if result.returncode != 0 or not rootfs.is_file():
            tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-25:])
            raise SetupError(
                f"mmdebstrap could not build the root of {recipe.role} (exit {result.returncode}):\n{tail}\n"
                f"  command: {' '.join(command)}"
            )
        load_image(recipe, rootfs, command)
    seconds = time.monotonic() - started
    size = _docker("image", "inspect", "--format", "{{.Size}}", recipe.image).stdout.strip()
    megabytes = int(size) / 1e6 if size.isdigit() else 0.0
    say(f"built {recipe.image} in {seconds:.1f} s ({megabytes:.1f} MB)")
    return seconds


def remove_outdated(recipe: Recipe) -> None:
    """Remove earlier builds of the role (its label, another tag, or untagged by a rebuild); nothing else."""
    role = f"label={LABEL}={recipe.role_label}"
    listed = _docker("image", "ls", "--filter", role, "--format", "{{.Repository}}:{{.Tag}}")
    names = [n for n in listed.stdout.split() if n != recipe.image and n.startswith(recipe.repository + ":")]
    dangling = _docker("image", "ls", "--quiet", "--filter", role, "--filter", "dangling=true")
    for name in [*names, *dangling.stdout.split()]:
        if _docker("image", "rm", name).returncode == 0:
            say(f"removed the outdated {name}")


def ensure(recipes: Sequence[Recipe], *, rebuild: bool = False, mirror: str | None = None) -> None:
    """Build every image of `recipes` that is missing (all of them with rebuild)."""
    check_engine()
    here = set() if rebuild else present(recipes)
    todo = [r for r in recipes if r.role not in here]
    if not todo:
        return
    check_builder(todo)
    chosen = mirror or host_mirror()
    for recipe in todo:
        build(recipe, chosen)
        remove_outdated(recipe)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.standin_images",
        description="Build the test stand-ins for the Lambda images (missing ones only) and print "
        "'<role> <image>' per image.",
    )
    parser.add_argument(
        "--role", action="append", choices=sorted(RECIPES), help="only this role (repeatable; default: all)"
    )
    parser.add_argument("--rebuild", action="store_true", help="build again even when the image is here")
    parser.add_argument("--names", action="store_true", help="print the names only: no engine, no build")
    parser.add_argument(
        "--mirror", help="Debian mirror [default: the host's apt sources, else deb.debian.org]"
    )
    args = parser.parse_args(argv)
    recipes = [RECIPES[role] for role in (args.role or RECIPES)]
    if not args.names:
        try:
            ensure(recipes, rebuild=args.rebuild, mirror=args.mirror)
        except SetupError as error:
            say(f"error: {error}")
            return 1
    for recipe in recipes:
        print(f"{recipe.role} {recipe.image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
