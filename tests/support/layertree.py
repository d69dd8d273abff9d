"""A LayerTree written to disk from a mapping of layer paths to contents, for tests of the stages that
run on an unpacked layer (slimming, bytecode, sharing)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from layerforge.tree.unpack import LayerFile, LayerTree


def layer_tree(
    root: Path, files: Mapping[str, bytes | str], distribution: Callable[[str], str] = lambda _rel: "demo"
) -> LayerTree:
    """`files`: path in the layer (`python/...`) -> content; `distribution(path)` names its owner."""
    tree = LayerTree(root)
    for rel, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        owner = distribution(rel)
        tree.files[rel] = LayerFile(rel, len(data), owner, f"{owner}-1.0-py3-none-any.whl")
    return tree
