"""The CycloneDX 1.6 JSON document of an inventory, written by cyclonedx-python-lib, byte for byte stable.

Stable: the serial number is derived from the zip's sha256, every bom-ref from what it names, and the
only time in it is SOURCE_DATE_EPOCH when that is set. The same lock gives the same zip, so the same bytes.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import DisjunctiveLicense, License, LicenseExpression
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from .. import __version__
from ..errors import InputError
from .inventory import Distribution, Inventory, NativeLibrary

# A fixed namespace: the serial number of a zip's SBOM is uuid5(this, its sha256).
_NAMESPACE = uuid.UUID("6f4b1c3e-9a51-5d2e-8a35-1c0de1a7e2f0")


def serial_number(zip_sha256: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"sha256:{zip_sha256}")


def source_date() -> datetime | None:
    """SOURCE_DATE_EPOCH as a UTC time, None when unset (the document then carries no timestamp)."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return None
    try:
        return datetime.fromtimestamp(int(value), tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise InputError(
            f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds", hint="unset it, or give an integer"
        ) from None


def purl(distribution: Distribution) -> PackageURL:
    return PackageURL(type="pypi", name=distribution.key, version=distribution.version)


def _sha256(content: str) -> HashType:
    return HashType(alg=HashAlgorithm.SHA_256, content=content)


def _licenses(distribution: Distribution) -> list[License]:
    info = distribution.license
    if info.expression is not None:
        return [LicenseExpression(info.expression)]
    if info.text:
        return [DisjunctiveLicense(name=info.text)]
    return []


def _distribution(distribution: Distribution) -> Component:
    info = distribution.license
    properties = [
        Property(name="layerforge:license-status", value=info.status),
        Property(name="layerforge:license-source", value=info.source),
        Property(name="layerforge:dist-info", value=distribution.dist_info),
    ]
    if info.text and info.expression is not None:
        properties.append(Property(name="layerforge:license-text", value=info.text))
    if distribution.wheel:
        properties.append(Property(name="layerforge:wheel", value=distribution.wheel))
    locator = purl(distribution)
    return Component(
        type=ComponentType.LIBRARY,
        name=distribution.name,
        version=distribution.version,
        purl=locator,
        bom_ref=locator.to_string(),
        hashes=[_sha256(distribution.sha256)] if distribution.sha256 else [],
        licenses=_licenses(distribution),
        properties=properties,
    )


def _library(library: NativeLibrary) -> Component:
    properties = [Property(name="layerforge:path", value=library.path)]
    if library.soname:
        properties.append(Property(name="layerforge:soname", value=library.soname))
    return Component(
        type=ComponentType.LIBRARY,
        name=library.file_name,
        bom_ref=f"file:{library.path}",
        hashes=[_sha256(library.sha256)],
        properties=properties,
    )


def _unattributed(name: str) -> Component:
    return Component(
        type=ComponentType.LIBRARY,
        name=name,
        bom_ref=f"top-level:{name}",
        properties=[Property(name="layerforge:metadata", value="absent: no dist-info names this package")],
    )


def build_document(inventory: Inventory, *, name: str, zip_sha256: str, kind: str = "layer") -> str:
    """The SBOM as JSON text: the zip as the root component, then every distribution, its bundled
    libraries as its dependencies, and any top-level package no metadata claims."""
    root = Component(
        type=ComponentType.APPLICATION,
        name=name,
        bom_ref=f"zip:{name}",
        hashes=[_sha256(zip_sha256)],
        properties=[Property(name="layerforge:kind", value=kind)],
    )
    bom = Bom(serial_number=serial_number(zip_sha256))
    bom.metadata.timestamp = source_date()  # type: ignore[assignment]  # None leaves it out
    bom.metadata.component = root
    bom.metadata.tools.components.add(
        Component(type=ComponentType.APPLICATION, name="layerforge", version=__version__)
    )
    by_key = {d.key: _distribution(d) for d in inventory.distributions}
    bom.components.update(by_key.values())
    bundled: dict[str, list[Component]] = {}
    loose: list[Component] = []
    for library in inventory.libraries:
        component = _library(library)
        bom.components.add(component)
        if library.owner in by_key:
            bundled.setdefault(library.owner, []).append(component)
        else:
            loose.append(component)
    extras = [_unattributed(name) for name in inventory.unattributed]
    bom.components.update(extras)
    bom.register_dependency(root, [*by_key.values(), *loose, *extras])
    for key, component in by_key.items():
        bom.register_dependency(component, bundled.get(key, []))
    return str(JsonV1Dot6(bom).output_as_string(indent=2)) + "\n"
