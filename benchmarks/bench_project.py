"""`layerforge build --project` against the same cells built one by one, paired, in one run.

Usage: python benchmarks/bench_project.py [--out DIR] [--index-url URL] [--pairs 3]

The project: two bundled recipes (`requests`, `pydantic`) x two runtimes (python3.11, python3.12) x
x86_64, four cells, all resolved and downloaded from --index-url (PyPI by default), every one verified.

One pair is:
  - singles: `layerforge build RECIPE --runtime R` for each cell, one after another, each with an empty
    wheel cache of its own and an empty output folder (what four separate runs on a clean machine pay);
  - project: `layerforge build --project` with one empty wheel cache and an empty output folder.
The two take turns going first from pair to pair, so a slow spell of the machine falls on both alike.
Prints the medians and the ratio (project / singles), the CPU time (user + system) each side's processes
used (the work done, whatever else the machine runs), the load average before each pair, and writes
everything, with the project build's per-cell stage times (where the time goes), to OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECIPES = ("requests", "pydantic")
RUNTIMES = ("python3.11", "python3.12")
PROJECT = """\
[[layers]]
recipe = "requests"
runtimes = ["python3.11", "python3.12"]
archs = ["x86_64"]

[[layers]]
recipe = "pydantic"
runtimes = ["python3.11", "python3.12"]
archs = ["x86_64"]
"""


def layerforge(*args: str) -> list[str]:
    return [sys.executable, "-m", "layerforge", *args]


CPU = {"seconds": 0.0}  # CPU time (user + system) of every process the commands ran, summed


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(command: list[str], cwd: Path) -> tuple[float, str]:
    start, cpu = time.perf_counter(), children_cpu()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    CPU["seconds"] += children_cpu() - cpu
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return elapsed, done.stdout


def verified(out: Path) -> int:
    manifests = [json.loads(p.read_text()) for p in out.glob("*.manifest.json")]
    assert len(manifests) == 4 and all(m["verified"] is True for m in manifests), out
    return len(manifests)


def singles(work: Path, index_url: str) -> float:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    total = 0.0
    for recipe in RECIPES:
        for runtime in RUNTIMES:
            cache = work / f"cache-{recipe}-{runtime}"
            command = ["build", recipe, "--runtime", runtime, "--out", str(work / "dist")]
            seconds, _ = run(
                layerforge(*command, "--cache-dir", str(cache), "--index-url", index_url, "-q"), work
            )
            total += seconds
    verified(work / "dist")
    return total


def project(work: Path, index_url: str) -> tuple[float, dict[str, object]]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "layerforge.toml").write_text(PROJECT)
    command = ["build", "--project", "--out", "dist", "--cache-dir", "cache", "--index-url", index_url]
    seconds, stdout = run(layerforge(*command, "--json", "-q"), work)
    verified(work / "dist")
    return seconds, json.loads(stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "project")
    parser.add_argument("--index-url", default="https://pypi.org/simple")
    parser.add_argument("--pairs", type=int, default=3)
    options = parser.parse_args()
    out = options.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    pairs: list[dict[str, object]] = []
    for pair in range(options.pairs):
        order = ("singles", "project") if pair % 2 == 0 else ("project", "singles")
        entry: dict[str, object] = {"order": list(order), "load_before": os.getloadavg()[0]}
        for which in order:
            print(f"pair {pair + 1}: {which} ...", file=sys.stderr)
            CPU["seconds"] = 0.0
            if which == "singles":
                entry["singles_s"] = singles(out / "singles", options.index_url)
            else:
                seconds, report = project(out / "project", options.index_url)
                entry["project_s"] = seconds
                entry["cells"] = report["cells"]
            entry[f"load_after_{which}"] = os.getloadavg()[0]
            entry[f"{which}_cpu_s"] = CPU["seconds"]
        entry["ratio"] = float(entry["project_s"]) / float(entry["singles_s"])  # type: ignore[arg-type]
        print(
            f"pair {pair + 1}: singles {entry['singles_s']:.2f} s, project {entry['project_s']:.2f} s, "
            f"ratio {entry['ratio']:.3f}",
            file=sys.stderr,
        )
        pairs.append(entry)
    single_median = statistics.median(float(p["singles_s"]) for p in pairs)  # type: ignore[arg-type]
    project_median = statistics.median(float(p["project_s"]) for p in pairs)  # type: ignore[arg-type]
    ratios = [float(p["ratio"]) for p in pairs]  # type: ignore[arg-type]
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": sys.version.split()[0],
        "index_url": options.index_url + " (isolated from the host's pip configuration)",
        "cells": [f"{r}-{v}-x86_64" for r in RECIPES for v in RUNTIMES],
        "pairs": pairs,
        "singles_median_s": single_median,
        "project_median_s": project_median,
        "ratio_of_medians": project_median / single_median,
        "median_ratio": statistics.median(ratios),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"measured: 4 cells ({', '.join(results['cells'])}) from {options.index_url}")  # type: ignore[arg-type]
    print("| pair | first | singles (s) | project (s) | ratio | CPU singles (s) | CPU project (s) | load |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for index, p in enumerate(pairs, 1):
        print(
            f"| {index} | {p['order'][0]} | {p['singles_s']:.2f} | {p['project_s']:.2f} | "  # type: ignore[index]
            f"{p['ratio']:.3f} | {p['singles_cpu_s']:.1f} | {p['project_cpu_s']:.1f} | "
            f"{p['load_before']:.2f} |"
        )
    ratio = project_median / single_median
    print(f"| median | | {single_median:.2f} | {project_median:.2f} | **{ratio:.3f}** | | | |")
    print(f"median of the pair ratios: {statistics.median(ratios):.3f}; results in {out / 'results.json'}")


if __name__ == "__main__":
    main()
