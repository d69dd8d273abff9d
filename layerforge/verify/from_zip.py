"""`layerforge verify ZIP`: the audit and the import check of any layer zip, built here or elsewhere."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..binaries.audit import AuditReport, audit_tree
from ..recipe import Recipe
from ..runners.interpreters import find_interpreter
from ..target import DEFAULT_ARCH, DEFAULT_RUNTIME, Target
from ..tree.layerzip import distribution_names, extract_layer
from ..tree.sharing import load_proof, missing_copies
from ..tree.toplevel import modules_to_verify
from .local import VerifyReport, verify_layer
from .optional import optional_policy


@dataclass(frozen=True)
class ZipVerification:
    zip_path: Path
    target: Target
    audit: AuditReport
    verify: VerifyReport
    modules: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.audit.errors and self.verify.ok

    def as_dict(self) -> dict[str, object]:
        return {
            "zip": str(self.zip_path),
            "runtime": self.target.runtime,
            "arch": self.target.arch,
            "ok": self.ok,
            "verified": self.verify.verified,
            "audit": self.audit.as_dict(),
            "verification": self.verify.as_dict(),
        }


def target_for(zip_path: Path, runtime: str | None, arch: str | None) -> Target:
    """The target named on the command line, else the one in the build manifest beside the zip."""
    manifest = zip_path.with_name(zip_path.name.removesuffix(".zip") + ".manifest.json")
    recorded: dict[str, object] = {}
    if manifest.is_file():
        try:
            loaded = json.loads(manifest.read_text(encoding="utf-8"))
            recorded = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            recorded = {}
    chosen_runtime = runtime or str(recorded.get("runtime") or DEFAULT_RUNTIME)
    chosen_arch = arch or str(recorded.get("arch") or DEFAULT_ARCH)
    return Target(chosen_runtime, chosen_arch)


def verify_zip(
    zip_path: Path, target: Target, *, recipe: Recipe | None = None, python: Path | None = None
) -> ZipVerification:
    with tempfile.TemporaryDirectory(prefix="layerforge-verify-zip-") as scratch:
        tree = extract_layer(zip_path, Path(scratch) / "layer")
        audit = audit_tree(tree.root, target, tree.origins())
        config = recipe.verify if recipe else None
        # What the recipe shares must be loaded first, as in `build`: those modules open the check.
        shared = missing_copies(tree, recipe.strip.shared_libraries) if recipe else ()
        ordered, others = load_proof(tree, shared).order(modules_to_verify(tree, config))
        modules = tuple(ordered)
        interpreter = find_interpreter(target, explicit=python)
        optional = optional_policy(tree, target, mandatory=config.imports if config else ())
        for group in others:
            alone = verify_layer(tree.root, target, modules=group, distributions=(), interpreter=interpreter)
            alone.skipping_optional(optional).raise_for_failures()
        report = verify_layer(
            tree.root,
            target,
            modules=modules,
            distributions=distribution_names(tree),
            smoke=config.smoke if config else None,
            interpreter=interpreter,
        ).skipping_optional(optional)
    return ZipVerification(zip_path, target, audit, report, modules)
