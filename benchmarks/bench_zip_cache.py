"""The zip of one layer's tree with the compressed-member cache: none, cold (files every stream), warm.

Usage: python benchmarks/bench_zip_cache.py LAYER.zip SCRATCH [--runs 3]

Extracts LAYER.zip into SCRATCH, then per run writes the tree with no cache, with an empty member cache
and with that cache again; prints medians of wall and CPU time and checks every write gave one sha256.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from layerforge.member_cache import MemberCache  # noqa: E402
from layerforge.tree.archive import ZipResult, write_zip  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("layer", type=Path)
    parser.add_argument("scratch", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    tree = options.scratch / "tree"
    shutil.rmtree(options.scratch, ignore_errors=True)
    with zipfile.ZipFile(options.layer) as archive:
        archive.extractall(tree)
    rows: dict[str, list[tuple[float, float, ZipResult]]] = {
        "no cache": [],
        "cold cache": [],
        "warm cache": [],
    }
    for run in range(options.runs):
        cache = MemberCache(options.scratch / f"cache-{run}")
        for label, use in (("no cache", None), ("cold cache", cache), ("warm cache", cache)):
            wall, cpu = time.perf_counter(), time.process_time()
            result = write_zip(tree, options.scratch / "out.zip", cache=use)
            rows[label].append((time.perf_counter() - wall, time.process_time() - cpu, result))
    results = [row[2] for values in rows.values() for row in values]
    print(f"{results[0].entries:,} members, {results[0].unzipped_bytes:,} bytes unzipped")
    print(f"distinct sha256 over all {len(results)} writes: {len({r.sha256 for r in results})}")
    for label, values in rows.items():
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        cached = values[-1][2].cached_members
        print(f"{label}: wall {wall:.2f} s, CPU {cpu:.2f} s, members from the cache {cached}")


if __name__ == "__main__":
    main()
