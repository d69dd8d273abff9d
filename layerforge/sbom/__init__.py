"""The software bill of materials of a layer or function zip, and the license policy that reads it.

Owns: each distribution's license as an SPDX expression (`licenses`), what a layer ships (`inventory`:
distributions from their dist-info, bundled native libraries with their SONAME and sha256), the
CycloneDX 1.6 document written with cyclonedx-python-lib (`document`), and `sbom ZIP` (`from_zip`).

May import: the foundation, `resolve` (the lock's pins), `tree` (the layer tree, reading a zip,
top-level names) and `binaries` (ELF headers for the SONAME).
"""

SBOM_SUFFIX = ".cdx.json"
