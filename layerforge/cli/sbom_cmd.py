"""`layerforge sbom ZIP`."""

from __future__ import annotations

from pathlib import Path

import click

from ..fsutil import atomic_write_text, sibling
from ..recipe import PolicyConfig, load_recipe
from ..resolve.lock import read_lock
from ..resolve.locked import LockedPackage
from ..sbom import SBOM_SUFFIX
from ..sbom.from_zip import ZipSbom, sbom_for_zip
from ..sbom.licenses import enforce
from . import main
from .options import lock_option
from .output import Output, json_option, quiet_option, reporting


@main.command("sbom")
@click.argument("zip_path", metavar="ZIP", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--output",
    "-o",
    "sbom_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Where to write the SBOM [default: <zip stem>{SBOM_SUFFIX} beside the zip].",
)
@lock_option(
    "The lock the zip was built from: its wheels' sha256 go into the SBOM "
    "[default: <zip stem>.lock.json beside the zip, when there is one]."
)
@click.option("--recipe", "recipe_spec", default=None, help="Apply this recipe's [policy] to the licenses.")
@click.option(
    "--strict-licenses", is_flag=True, help="An unrecognised license is an error (exit 1), not a warning."
)
@json_option
@quiet_option
def sbom_command(
    zip_path: Path,
    sbom_path: Path | None,
    lock_path: Path | None,
    recipe_spec: str | None,
    strict_licenses: bool,
    json_mode: bool,
    quiet: bool,
) -> None:
    """Write a CycloneDX 1.6 SBOM of any layer or function ZIP from the dist-info it carries."""
    output = Output(json_mode=json_mode, quiet=quiet)
    with reporting(output):
        policy = load_recipe(recipe_spec).policy if recipe_spec else PolicyConfig()
        result = sbom_for_zip(zip_path, locked=_locked(zip_path, lock_path))
        destination = sbom_path or sibling(zip_path, SBOM_SUFFIX)
        _describe(output, result)
        # Written whatever the policy says: the document is as true of a refused zip as of any other.
        atomic_write_text(destination, result.document)
        output.info(f"[green]wrote[/] {destination}")
        warnings = enforce(result.inventory.licenses(), policy, strict=strict_licenses)
        for warning in warnings:
            output.warn(warning)
        if json_mode:
            output.emit_json(result.summary() | {"sbom": str(destination), "warnings": warnings})


def _locked(zip_path: Path, lock_path: Path | None) -> tuple[LockedPackage, ...]:
    beside = sibling(zip_path, ".lock.json")
    path = lock_path or (beside if beside.is_file() else None)
    if path is None:
        return ()
    return read_lock(path).packages


def _describe(output: Output, result: ZipSbom) -> None:
    inventory = result.inventory
    libraries = [f"{lib.path} (SONAME {lib.soname or 'none'})" for lib in inventory.libraries]
    if not result.has_metadata:
        output.warn(
            f"{result.zip_path.name}: no distribution metadata is left (no *.dist-info/METADATA): names, "
            "versions and licenses cannot be known, and none are invented"
        )
        output.info(f"top-level packages found: {', '.join(inventory.top_level) or 'none'}")
        output.info(f"native libraries found: {', '.join(libraries) or 'none'}")
        return
    hashed = sum(1 for d in inventory.distributions if d.sha256)
    output.info(
        f"{len(inventory.distributions)} distributions ({hashed} with the lock's wheel sha256), "
        f"{len(inventory.libraries)} bundled native libraries"
    )
    if inventory.unattributed:
        output.warn(f"top-level packages no dist-info names: {', '.join(inventory.unattributed)}")
