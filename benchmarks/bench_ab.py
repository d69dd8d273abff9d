"""This checkout's `layerforge build` against another commit's, in alternating pairs, in one run.

Usage: python benchmarks/bench_ab.py --base REF [--case cold|added] [--pairs 3] [--recipe sklearn]
                                     [--index-url URL] [--out DIR] [--new-bytes]

The machine's speed moves by a factor of two from one hour to the next, so two versions compare only
side by side: each pair runs both, the side that goes first taking turns. The base is REF checked out in a
git worktree under OUT; each side runs with this interpreter, its checkout first on sys.path, from a
folder outside both checkouts.

- `cold`: each build with an empty cache and output folder.
- `added`: the recipe with one requirement added (`requests`), with a warm cache: each side fills a cache
  of its own once with a cold build of the recipe (untimed; the two versions' pieces need not have the
  same keys), and each timed build starts from a fresh copy of it.

Each pair's zips must have the same sha256, or the run stops; with `--new-bytes` (a change that makes
other bytes on purpose, such as another compiler), each side's zip must be the same in every pair
instead. Prints the times, the ratio of each pair
(this checkout / base) and their median, and writes them to OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_sklearn import incremental_recipes  # this folder is on sys.path: run as a script

REPO = Path(__file__).resolve().parents[1]
SIDES = ("base", "this")


def build(
    side: str, checkout: Path, recipe: str | Path, cache: Path, out: Path, index_url: str
) -> dict[str, Any]:
    env = dict(os.environ, COLUMNS="200", PYTHONPATH=str(checkout))
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "layerforge", "build", str(recipe), "--out", str(out)]
    command += ["--cache-dir", str(cache), "--index-url", index_url, "--json"]
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=out.parent, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        sys.exit(f"{side}: the build failed:\n{completed.stderr[-3000:]}")
    return {"seconds": elapsed, "sha256": json.loads(completed.stdout)["sha256"]}


def sides(out: Path, base: str) -> dict[str, Path]:
    """{"base": REF checked out in a git worktree under OUT, "this": this checkout}, each with its bytecode
    compiled ahead: the side without it would compile its modules at every start."""
    worktree = out / "base-checkout"
    if not worktree.exists():
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), base],
            check=True,
            capture_output=True,
        )
    checkouts = {"base": worktree, "this": REPO}
    for checkout in checkouts.values():
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(checkout / "layerforge")], check=True)
    return checkouts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare with (any git ref)")
    parser.add_argument("--case", choices=("cold", "added"), default="cold")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--recipe", default="sklearn")
    parser.add_argument("--index-url", default="https://pypi.org/simple")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--new-bytes", action="store_true", help="the sides may differ, each with itself")
    options = parser.parse_args()
    out = options.out or Path(tempfile.mkdtemp(prefix="layerforge-ab-"))
    out.mkdir(parents=True, exist_ok=True)
    checkouts = sides(out, options.base)
    recipe: str | Path = options.recipe
    warm: dict[str, Path] = {}
    if options.case == "added":
        for side in SIDES:
            warm[side] = out / f"warm-{side}"
            if not (warm[side] / "dist").exists():
                print(f"{side}: the cold build that fills its cache ...", file=sys.stderr)
                build(
                    side,
                    checkouts[side],
                    recipe,
                    warm[side] / "cache",
                    warm[side] / "dist",
                    options.index_url,
                )
        recipe = incremental_recipes(out, options.recipe)[0]
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    ratios: list[float] = []
    first_sha256: dict[str, str] = {}
    for pair in range(options.pairs):
        order = SIDES if pair % 2 == 0 else SIDES[::-1]
        results = {}
        for side in order:
            run = out / f"run-{side}"
            shutil.rmtree(run, ignore_errors=True)
            if side in warm:
                shutil.copytree(warm[side], run, symlinks=True)
            else:
                run.mkdir()
            results[side] = build(
                side, checkouts[side], recipe, run / "cache", run / "dist", options.index_url
            )
            times[side].append(results[side]["seconds"])
        if not options.new_bytes and results["base"]["sha256"] != results["this"]["sha256"]:
            sys.exit(f"pair {pair + 1}: the zips differ: {results}")
        for side in SIDES:
            first = first_sha256.setdefault(side, results[side]["sha256"])
            if results[side]["sha256"] != first:
                sys.exit(f"pair {pair + 1}: {side}'s zip is not the one it built in pair 1: {results}")
        ratios.append(results["this"]["seconds"] / results["base"]["seconds"])
        base, this = results["base"], results["this"]
        print(
            f"pair {pair + 1}: base {base['seconds']:.2f} s, this {this['seconds']:.2f} s,"
            f" ratio {ratios[-1]:.3f} (sha256 {base['sha256'][:12]}, {this['sha256'][:12]})",
            file=sys.stderr,
        )
    summary = {
        "base": options.base,
        "case": options.case,
        "recipe": options.recipe,
        "seconds": times,
        "ratios": ratios,
        "median_ratio": statistics.median(ratios),
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"| case | {options.base} (s) | this checkout (s) | ratio per pair | median |")
    print("|---|---|---|---|---:|")
    print(
        f"| {options.case} | {', '.join(f'{t:.2f}' for t in times['base'])} | "
        f"{', '.join(f'{t:.2f}' for t in times['this'])} | {', '.join(f'{r:.2f}' for r in ratios)} | "
        f"{summary['median_ratio']:.3f} |"
    )
    print(f"results in {out / 'results.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
