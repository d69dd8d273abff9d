"""The guide's procedure against `layerforge build sklearn`, side by side, in one run on one machine.

Usage: python benchmarks/bench_sklearn.py [--out DIR] [--index-url URL] [--runs 3] [--import-runs 15]

Measures, and prints as ratios (layerforge / guide):
  - end-to-end time, cold (empty wheel cache, empty output) and warm (nothing changed; a strip rule changed)
  - zip time of the same tree: layerforge's writer against shutil.make_archive, and the zip sizes
  - unzipped and zipped bytes of each layer (the sum of its zip entries)
  - cold import of the stack from a read-only copy of each layer, in a fresh interpreter
  - peak memory (largest resident set of any process) of each build
The guide's script (../shared/baseline/guide-procedure.sh) resolves with this machine's pip configuration;
layerforge resolves from --index-url, isolated from it. Both are named in the output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO.parent / "shared" / "baseline" / "guide-procedure.sh"
IMPORTS = "import sklearn.linear_model, sklearn.ensemble, pandas, numpy, scipy.sparse"
RSS_WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "start = time.perf_counter()\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "elapsed = time.perf_counter() - start\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(f'BENCH elapsed={elapsed:.3f} maxrss_kib={peak}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def timed(command: list[str], **kwargs: object) -> tuple[float, int, subprocess.CompletedProcess[str]]:
    """Run a command; its wall time and the peak RSS (KiB) of its largest process."""
    completed = subprocess.run(
        [sys.executable, "-c", RSS_WRAPPER, *command], capture_output=True, text=True, check=False, **kwargs
    )  # type: ignore[call-overload]
    if completed.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{completed.stdout[-2000:]}\n{completed.stderr[-4000:]}")
    line = next(x for x in reversed(completed.stderr.splitlines()) if x.startswith("BENCH "))
    fields = dict(part.split("=") for part in line.split()[1:])
    return float(fields["elapsed"]), int(fields["maxrss_kib"]), completed


def layerforge(*args: str) -> list[str]:
    return [sys.executable, "-m", "layerforge", *args]


def zip_sizes(path: Path) -> tuple[int, int]:
    with zipfile.ZipFile(path) as archive:
        return sum(i.file_size for i in archive.infolist()), path.stat().st_size


def host_pip_index() -> str:
    shown = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return "pip's default (https://pypi.org/simple) plus this machine's pip configuration: " + (
        "; ".join(shown.splitlines()) or "none"
    )


def cold_imports(layers: dict[str, Path], interpreter: str, runs: int) -> dict[str, tuple[float, float]]:
    """Per layer, medians over `runs` fresh interpreters importing the stack from a read-only copy of it:
    (seconds spent in the import statement, seconds of the whole process from start to exit).

    The runs alternate between the layers, so a slow spell of the machine falls on both alike. The first
    figure is what a Lambda cold start pays for imports; the second adds interpreter start-up and the
    tear-down at exit (freeing a thousand modules, joining OpenBLAS threads), which a cold start does not.
    """
    with tempfile.TemporaryDirectory(prefix="bench-ro-") as scratch:
        copies = {}
        for name, layer_python in layers.items():
            copy = copies[name] = Path(scratch) / name / "python"
            shutil.copytree(layer_python, copy, symlinks=True)
            for path in [copy, *copy.rglob("*")]:
                if not path.is_symlink():
                    path.chmod(0o555 if path.is_dir() else 0o444)
        imports: dict[str, list[float]] = {name: [] for name in layers}
        processes: dict[str, list[float]] = {name: [] for name in layers}
        for _ in range(runs):
            for name, copy in copies.items():
                probe = (
                    f"import sys, time; sys.path.insert(0, {str(copy)!r}); start = time.perf_counter(); "
                    f"{IMPORTS}; print(time.perf_counter() - start)"
                )
                start = time.perf_counter()
                done = subprocess.run(
                    [interpreter, "-I", "-S", "-B", "-c", probe], check=True, capture_output=True, text=True
                )
                processes[name].append(time.perf_counter() - start)
                imports[name].append(float(done.stdout.split()[-1]))
        for path in Path(scratch).rglob("*"):
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
    return {name: (statistics.median(imports[name]), statistics.median(processes[name])) for name in layers}


def zip_times(tree: Path, scratch: Path, runs: int) -> dict[str, float]:
    sys.path.insert(0, str(REPO))
    from layerforge.tree.archive import write_zip

    ours, theirs = [], []
    for _ in range(runs):
        start = time.perf_counter()
        result = write_zip(tree, scratch / "layerforge.zip")
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        shutil.make_archive(str(scratch / "make_archive"), "zip", tree)
        theirs.append(time.perf_counter() - start)
    return {
        "layerforge_s": statistics.median(ours),
        "make_archive_s": statistics.median(theirs),
        "layerforge_bytes": result.zipped_bytes,
        "make_archive_bytes": (scratch / "make_archive.zip").stat().st_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out")
    parser.add_argument("--index-url", default="https://pypi.org/simple")
    parser.add_argument("--runs", type=int, default=3, help="zip timings: runs of each writer")
    parser.add_argument("--import-runs", type=int, default=15, help="cold imports: runs of each layer")
    parser.add_argument("--python311", default=shutil.which("python3.11") or sys.executable)
    options = parser.parse_args()
    out = options.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    results: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": sys.version.split()[0],
        "guide_index": host_pip_index(),
        "layerforge_index": options.index_url + " (isolated from the host's pip configuration)",
    }

    print("guide procedure (cold: pip --no-cache-dir) ...", file=sys.stderr)
    guide_s, guide_rss, completed = timed(["bash", str(GUIDE), str(out / "guide")])
    guide_line = next(x for x in completed.stdout.splitlines() if x.startswith("guide:"))
    guide = {k: float(v) for k, v in (part.split("=") for part in guide_line.split()[1:])}
    guide_unzipped, guide_zipped = zip_sizes(out / "guide" / "layer.zip")

    build = layerforge(
        "build",
        "sklearn",
        "--out",
        str(out / "dist"),
        "--cache-dir",
        str(out / "cache"),
        "--index-url",
        options.index_url,
        "--json",
    )
    print("layerforge cold (empty cache, empty output) ...", file=sys.stderr)
    cold_s, cold_rss, completed = timed(build)
    manifest = json.loads(completed.stdout)
    print("layerforge warm (nothing changed) ...", file=sys.stderr)
    warm_s, _, _ = timed(build)
    recipe = out / "sklearn-changed.toml"
    text = (REPO / "recipes" / "sklearn.toml").read_text()
    recipe.write_text(text + '\n[strip.packages.scikit-learn]\nremove = ["**/*.md"]\n')
    print("layerforge warm (a strip rule changed: re-slim from the cache) ...", file=sys.stderr)
    reslim_s, _, _ = timed(
        layerforge(
            "build",
            str(recipe),
            "--out",
            str(out / "dist-changed"),
            "--cache-dir",
            str(out / "cache"),
            "--index-url",
            options.index_url,
            "--quiet",
        )
    )

    ours_zip = Path(manifest["zip"])
    ours_unzipped, ours_zipped = zip_sizes(ours_zip)
    tree = out / "layerforge-tree"
    with zipfile.ZipFile(ours_zip) as archive:
        archive.extractall(tree)
    print("zip of the same tree ...", file=sys.stderr)
    zips = zip_times(tree, out, options.runs)

    print("cold imports from read-only copies ...", file=sys.stderr)
    # The floor: the guide's own tree with the bytecode its strip deleted compiled back in. No packaging
    # of those versions imports faster; what is left is the libraries' own import-time work.
    floor = out / "guide-with-bytecode"
    shutil.copytree(out / "guide" / "layer" / "python", floor / "python", symlinks=True)
    subprocess.run(
        [options.python311, "-I", "-m", "compileall", "-q", "-j", "0", str(floor / "python")],
        check=True,
        capture_output=True,
    )
    timings = cold_imports(
        {
            "guide": out / "guide" / "layer" / "python",
            "layerforge": tree / "python",
            "floor": floor / "python",
        },
        options.python311,
        runs=options.import_runs,
    )
    guide_import, guide_process = timings["guide"]
    ours_import, ours_process = timings["layerforge"]
    floor_import, _ = timings["floor"]

    results.update(
        {
            "guide": {
                "total_s": guide_s,
                "pip_s": guide["install_s"],
                "strip_s": guide["strip_s"],
                "zip_s": guide["zip_s"],
                "unzipped_bytes": guide_unzipped,
                "zipped_bytes": guide_zipped,
                "peak_rss_kib": guide_rss,
                "cold_import_s": guide_import,
                "import_process_s": guide_process,
                "cold_import_with_bytecode_s": floor_import,
            },
            "layerforge": {
                "cold_total_s": cold_s,
                "warm_unchanged_s": warm_s,
                "warm_reslim_s": reslim_s,
                "unzipped_bytes": ours_unzipped,
                "zipped_bytes": ours_zipped,
                "peak_rss_kib": cold_rss,
                "cold_import_s": ours_import,
                "import_process_s": ours_process,
                "verified": manifest["verified"],
                "compiled_from_source": len(manifest["verification"]["compiled_from_source"]),
                "packages": {p["name"]: p["version"] for p in manifest["packages"]},
            },
            "zip_same_tree": zips,
        }
    )
    ratios = {
        "cold build / guide": cold_s / guide_s,
        "warm build, nothing changed / guide": warm_s / guide_s,
        "warm build, strip rule changed / guide": reslim_s / guide_s,
        "zip time / make_archive (same tree)": zips["layerforge_s"] / zips["make_archive_s"],
        "zip bytes / make_archive (same tree)": zips["layerforge_bytes"] / zips["make_archive_bytes"],
        "unzipped bytes / guide": ours_unzipped / guide_unzipped,
        "zipped bytes / guide": ours_zipped / guide_zipped,
        "cold import / guide": ours_import / guide_import,
        "guide's tree with bytecode, cold import / guide": floor_import / guide_import,
        "import process, start to exit / guide": ours_process / guide_process,
        "peak memory / guide": cold_rss / guide_rss,
    }
    results["ratios"] = ratios
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print("| measure | guide | layerforge | ratio |\n|---|---:|---:|---:|")
    rows = [
        ("end to end, cold (s)", guide_s, cold_s, "cold build / guide"),
        ("end to end, warm, nothing changed (s)", guide_s, warm_s, "warm build, nothing changed / guide"),
        (
            "end to end, warm, strip rule changed (s)",
            guide_s,
            reslim_s,
            "warm build, strip rule changed / guide",
        ),
        (
            "zip of the same tree (s): make_archive vs layerforge",
            zips["make_archive_s"],
            zips["layerforge_s"],
            "zip time / make_archive (same tree)",
        ),
        (
            "zip of the same tree (bytes)",
            zips["make_archive_bytes"],
            zips["layerforge_bytes"],
            "zip bytes / make_archive (same tree)",
        ),
        ("unzipped (bytes)", guide_unzipped, ours_unzipped, "unzipped bytes / guide"),
        ("zipped (bytes)", guide_zipped, ours_zipped, "zipped bytes / guide"),
        ("cold import from a read-only copy (s)", guide_import, ours_import, "cold import / guide"),
        (
            "same, the guide's tree with bytecode compiled (s)",
            guide_import,
            floor_import,
            "guide's tree with bytecode, cold import / guide",
        ),
        (
            "same, whole process from start to exit (s)",
            guide_process,
            ours_process,
            "import process, start to exit / guide",
        ),
        ("peak memory, largest process (KiB)", guide_rss, cold_rss, "peak memory / guide"),
    ]
    for label, theirs, ours, key in rows:
        print(f"| {label} | {theirs:,.2f} | {ours:,.2f} | {ratios[key]:.3f} |")
    print(f"\nguide index: {results['guide_index']}\nlayerforge index: {results['layerforge_index']}")
    print(f"machine: {results['machine']}; results in {out / 'results.json'}")


if __name__ == "__main__":
    main()
