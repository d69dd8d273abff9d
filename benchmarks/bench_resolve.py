"""`layerforge lock` as shipped against the same with the local index's replies sent under Nagle's algorithm,
paired, in one run.

Usage: python benchmarks/bench_resolve.py [--recipe sklearn] [--index-url URL] [--pairs 5] [--out DIR]

The local index (layerforge/resolve/local_index.py) answers pip's requests for pages and METADATA one at
a time. Each reply is two writes, headers then body; with Nagle's algorithm on (Python's default for a
StreamRequestHandler), the body waits for pip's delayed ACK of the headers. The baseline turns it back on
in a wrapper that changes that one attribute of the handler class and then runs the same CLI.

One pair is both sides, each `layerforge lock RECIPE` with a warm wheel cache of its own (filled by one
untimed lock first, so neither side downloads) into an empty output folder. The two take turns going
first. Prints each side's times, the median ratio (shipped / baseline) and the CPU time of each side's
processes, and writes everything to OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASELINE = """
import sys
import layerforge.resolve.local_index as local_index

made = local_index._handler_for


def with_nagle(index):
    handler = made(index)
    handler.disable_nagle_algorithm = False
    return handler


local_index._handler_for = with_nagle
from layerforge.cli import main

sys.argv = ["layerforge", *sys.argv[1:]]
main()
"""


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def lock(side: str, recipe: str, index_url: str, cache: Path, out: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one `layerforge lock`, as shipped or as the baseline."""
    shutil.rmtree(out, ignore_errors=True)
    program = ["-m", "layerforge"] if side == "shipped" else ["-c", BASELINE]
    command = [sys.executable, *program, "lock", recipe, "--index-url", index_url]
    command += ["--cache-dir", str(cache), "--out", str(out)]
    cpu = children_cpu()
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started, children_cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="sklearn")
    parser.add_argument("--index-url", default="https://pypi.org/simple")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-resolve-"))
    out.mkdir(parents=True, exist_ok=True)
    sides = ("shipped", "baseline")
    for side in sides:  # fill each side's wheel cache: the pairs time resolution, not downloads
        lock(side, args.recipe, args.index_url, out / f"cache-{side}", out / f"warm-{side}")
    times: dict[str, list[float]] = {side: [] for side in sides}
    cpu: dict[str, list[float]] = {side: [] for side in sides}
    for pair in range(args.pairs):
        for side in sides if pair % 2 == 0 else reversed(sides):
            wall, used = lock(side, args.recipe, args.index_url, out / f"cache-{side}", out / f"lock-{side}")
            times[side].append(wall)
            cpu[side].append(used)
            print(f"pair {pair + 1} {side:8s} {wall:6.2f} s wall {used:6.2f} s CPU", flush=True)
    pairs = zip(times["shipped"], times["baseline"], strict=True)
    ratios = [shipped / baseline for shipped, baseline in pairs]
    summary = {
        "recipe": args.recipe,
        "index_url": args.index_url,
        "times": times,
        "cpu": cpu,
        "ratios": ratios,
        "median_ratio": statistics.median(ratios),
        "median_seconds": {side: statistics.median(values) for side, values in times.items()},
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(
        f"median: shipped {summary['median_seconds']['shipped']:.2f} s, "
        f"baseline (Nagle on) {summary['median_seconds']['baseline']:.2f} s, "
        f"ratio {summary['median_ratio']:.3f} ({out / 'results.json'})"
    )


if __name__ == "__main__":
    main()
