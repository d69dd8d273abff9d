"""The layer's zip from a warm member cache, this checkout against another commit, in alternating pairs.

Usage: python benchmarks/bench_zip_ab.py --zip LAYER.zip --base REF [--pairs 8] [--out DIR]

What an incremental build's zip child does once the tree is final, alone: each run is a fresh process that
calls `write_zip_apart` on the layer's tree (LAYER.zip unpacked once) with a member cache that an untimed
first zip filled, its files' digests proved first as a build's checkouts prove them, so that the child
starts, proves and copies the cached streams, writes the zip and exits. Large members are proved inside
the zip here, where a build proves them ahead (`ZipChild.prepare`); both sides alike. Each side runs with
this interpreter and its checkout first on sys.path; the base is REF checked out in a git worktree under
OUT. Prints the wall time and the CPU of the process and its zip child for each run, the ratio of each
pair (this checkout / base) and their medians. The two sides' zips must be byte for byte the same.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from bench_ab import REPO, SIDES, sides  # this folder is on sys.path: run as a script

# Run in a fresh interpreter per side and run: the digests proved, then the timed zip.
_RUN = """
import json, os, resource, sys, time
from pathlib import Path
from layerforge.cache import note_sha256, sha256_of
from layerforge.tree.zip_apart import write_zip_apart
tree, destination, cache = map(Path, sys.argv[1:4])
for folder, _, names in os.walk(tree):
    for name in names:
        path = os.path.join(folder, name)
        note_sha256(os.lstat(path), sha256_of(path))
before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
started = time.perf_counter()
result, _ = write_zip_apart(tree, destination, cache_dir=cache, jobs=2)
seconds = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = sum(b.ru_utime - a.ru_utime + b.ru_stime - a.ru_stime for a, b in zip(before, after))
print(json.dumps({"seconds": seconds, "cpu": cpu, "sha256": result.sha256, "cached": result.cached_members}))
"""


def run(checkout: Path, tree: Path, destination: Path, cache: Path) -> dict[str, float | str]:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    command = [sys.executable, "-c", _RUN, str(tree), str(destination), str(cache)]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False, cwd=tree.parent)
    if completed.returncode != 0:
        sys.exit(f"{checkout}: the zip failed:\n{completed.stderr[-3000:]}")
    result: dict[str, float | str] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, required=True, help="a layer zip, whose tree is zipped again")
    parser.add_argument("--base", required=True, help="the commit to compare with (any git ref)")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None)
    options = parser.parse_args()
    out = options.out or Path(tempfile.mkdtemp(prefix="layerforge-zip-ab-"))
    out.mkdir(parents=True, exist_ok=True)
    checkouts = sides(out, options.base)
    tree = out / "tree"
    if not tree.exists():
        with zipfile.ZipFile(options.zip) as archive:
            archive.extractall(tree)
    cache = out / "cache"
    print("filling the member cache (untimed) ...", file=sys.stderr)
    run(REPO, tree, out / "fill.zip", cache)
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    cpus: dict[str, list[float]] = {side: [] for side in SIDES}
    for pair in range(options.pairs):
        order = SIDES if pair % 2 == 0 else SIDES[::-1]
        results = {side: run(checkouts[side], tree, out / f"{side}.zip", cache) for side in order}
        if results["base"]["sha256"] != results["this"]["sha256"]:
            sys.exit(f"pair {pair + 1}: the zips differ: {results}")
        for side in SIDES:
            times[side].append(float(results[side]["seconds"]))
            cpus[side].append(float(results[side]["cpu"]))
        print(
            f"pair {pair + 1}: base {times['base'][-1]:.3f} s ({cpus['base'][-1]:.3f} CPU-s), "
            f"this {times['this'][-1]:.3f} s ({cpus['this'][-1]:.3f} CPU-s)",
            file=sys.stderr,
        )
    wall = [t / b for b, t in zip(times["base"], times["this"], strict=True)]
    cpu = [t / b for b, t in zip(cpus["base"], cpus["this"], strict=True)]
    print("| measure | base (median) | this (median) | ratio per pair, median |\n|---|---:|---:|---:|")
    print(
        f"| wall (s) | {statistics.median(times['base']):.3f} | {statistics.median(times['this']):.3f} "
        f"| {statistics.median(wall):.3f} |"
    )
    print(
        f"| CPU, process and zip child (s) | {statistics.median(cpus['base']):.3f} | "
        f"{statistics.median(cpus['this']):.3f} | {statistics.median(cpu):.3f} |"
    )
    recorded = {"base": options.base, "seconds": times, "cpu": cpus, "ratios": {"wall": wall, "cpu": cpu}}
    (out / "results.json").write_text(json.dumps(recorded))
    print(f"results in {out / 'results.json'}")


if __name__ == "__main__":
    main()
