"""`layerforge sbom ZIP`: the SBOM of any layer or function zip, built here, elsewhere, or by hand."""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..cache import sha256_of
from ..errors import InputError
from ..resolve.locked import LockedPackage
from ..tree.layerzip import extract_layer
from ..tree.unpack import LAYER_PREFIX
from .document import build_document
from .inventory import Inventory, read_inventory


@dataclass(frozen=True)
class ZipSbom:
    zip_path: Path
    sha256: str
    inventory: Inventory
    document: str  # the CycloneDX JSON text

    @property
    def has_metadata(self) -> bool:
        return bool(self.inventory.distributions)

    def summary(self) -> dict[str, object]:
        inventory = self.inventory
        return {
            "zip": str(self.zip_path),
            "sha256": self.sha256,
            "distributions": [
                {
                    "name": d.name,
                    "version": d.version,
                    "license": d.license.expression,
                    "license_status": d.license.status,
                    "sha256": d.sha256,
                }
                for d in inventory.distributions
            ],
            "native_libraries": [
                {"path": lib.path, "soname": lib.soname, "sha256": lib.sha256, "owner": lib.owner}
                for lib in inventory.libraries
            ],
            "top_level": list(inventory.top_level),
            "without_metadata": list(inventory.unattributed),
        }


def sbom_for_zip(zip_path: Path, *, locked: Sequence[LockedPackage] = (), kind: str = "layer") -> ZipSbom:
    """Unpack the zip safely (as `verify ZIP` does), read what it ships, and write nothing."""
    if not zip_path.is_file():
        raise InputError(f"{zip_path}: no such file", hint="pass the path of a layer or function zip")
    with tempfile.TemporaryDirectory(prefix="layerforge-sbom-") as scratch:
        layer = _is_layer(zip_path)
        kind = kind if layer else "function"
        tree = extract_layer(zip_path, Path(scratch) / "layer", prefix="" if layer else LAYER_PREFIX + "/")
        inventory = read_inventory(tree.root, tree.files, locked=locked)
        digest = sha256_of(zip_path)
        document = build_document(inventory, name=zip_path.name, zip_sha256=digest, kind=kind)
    return ZipSbom(zip_path, digest, inventory, document)


def _is_layer(zip_path: Path) -> bool:
    try:
        with zipfile.ZipFile(zip_path) as archive:
            return any(name.startswith(LAYER_PREFIX + "/") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError) as error:
        raise InputError(
            f"{zip_path}: not a readable zip ({error})", hint="pass a layer or function zip"
        ) from None
