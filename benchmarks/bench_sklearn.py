"""The guide's procedure against `layerforge build sklearn`, side by side, in one run on one machine.

Usage: python benchmarks/bench_sklearn.py [--out DIR] [--index-url URL] [--runs 3] [--import-runs 15]

Measures, and prints as ratios (layerforge / guide), medians over `--runs` alternating pairs (the guide,
then layerforge's builds, so a slow spell of the machine falls on both alike):
  - end-to-end time, cold (empty cache, empty output), warm with nothing changed, and the incremental
    cases with the cache the cold build left: one requirement added (requests), then one strip rule
    changed; each incremental zip's sha256 is checked against a cold build (empty cache) of the same
    lock and recipe
  - where each build's time went, stage by stage (the build's own "<stage> done in N s" lines), and which
    verification checks each build did not run again (the manifest's `verification.reused`), and why
    the others ran although a proof was filed for them (`verification.run_again`)
  - zip time of the same tree: layerforge's writer against shutil.make_archive, and the zip sizes
  - unzipped and zipped bytes of each layer (the sum of its zip entries)
  - cold import of the stack from a read-only copy of each layer, in a fresh interpreter
  - peak memory (largest resident set of any process) of each build
The guide's script (../shared/baseline/guide-procedure.sh) resolves with this machine's pip configuration;
layerforge resolves from --index-url, isolated from it. Both are named in the output.

Both sides write only under --out, temporary files included (TMPDIR), so both run on the file system that
holds it, which the output names. Choose it: on ext4 without a journal, creating a file walks past every
inode freed in the last 60 s (300 s while its inode table block is dirty), and each side's deletions (the
guide's strip, a build's cache removed) would bill the next build (RESULTS.md, bs26).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


STAGE_LINE = re.compile(r"^\s*([a-z]+) done in ([0-9.]+) s\s*$")
# The audit runs beside verification (and the zip): its time is inside `verify`.
STAGES = ("resolve", "download", "unpack", "slim", "bytecode", "verify", "zip")


@dataclass(frozen=True)
class Built:
    elapsed: float
    rss_kib: int
    manifest: dict[str, Any]
    # Seconds by stage; `other` is what no stage covers: start-up, reading the recipe and lock, the SBOM
    # and manifest.
    stages: dict[str, float]


class Builds:
    """`layerforge build` of one recipe file or another, into one output folder with one cache."""

    def __init__(self, out: Path, index_url: str) -> None:
        self.out = out
        self.index_url = index_url

    def run(self, recipe: str | Path, name: str, cache: Path, *extra: str) -> Built:
        command = layerforge(
            "build", str(recipe), "--out", str(self.out / name), "--cache-dir", str(cache),
            "--index-url", self.index_url, "--json", *extra,
        )  # fmt: skip
        elapsed, rss, completed = timed(command, env={**os.environ, "COLUMNS": "200"})
        stages: dict[str, float] = {}
        for line in completed.stderr.splitlines():
            match = STAGE_LINE.match(line)
            if match:
                stages[match[1]] = stages.get(match[1], 0.0) + float(match[2])
        stages["other"] = max(0.0, elapsed - sum(stages.values()))
        return Built(elapsed, rss, json.loads(completed.stdout), stages)


def incremental_recipes(out: Path, recipe: str = "sklearn") -> tuple[Path, Path]:
    """The bundled recipe with one requirement added (requests), and that one with a strip rule changed.
    Both keep the recipe's name: a team edits its recipe in place, and the build finds its last lock."""
    text = (REPO / "recipes" / f"{recipe}.toml").read_text()
    line = next(x for x in text.splitlines() if x.startswith("requirements = ["))
    added = out / f"{recipe}-plus-requests.toml"
    added.write_text(text.replace(line, line.replace("]", ', "requests"]')))
    changed = out / f"{recipe}-plus-requests-strip-changed.toml"
    changed.write_text(added.read_text() + '\n[strip.packages.scikit-learn]\nremove = ["**/*.md"]\n')
    return added, changed


def zip_sizes(path: Path) -> tuple[int, int]:
    with zipfile.ZipFile(path) as archive:
        return sum(i.file_size for i in archive.infolist()), path.stat().st_size


def file_system_of(path: Path) -> str:
    """The mount that holds `path`, as /proc/mounts gives it: device, mount point, type and options."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown (no /proc/mounts)"
    resolved = str(path.resolve())
    holding = [m for m in mounts if len(m) >= 4 and (resolved + "/").startswith(m[1].rstrip("/") + "/")]
    if not holding:
        return "unknown"
    device, point, kind, options = max(holding, key=lambda m: len(m[1]))[:4]
    return f"{device} on {point} ({kind}, {options})"


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
    parser.add_argument(
        "--runs", type=int, default=3, help="alternating pairs of guide and layerforge; zip timings as many"
    )
    parser.add_argument("--import-runs", type=int, default=15, help="cold imports: runs of each layer")
    parser.add_argument("--python311", default=shutil.which("python3.11") or sys.executable)
    options = parser.parse_args()
    out = options.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    # pip -t installs into TMPDIR and then moves into the target: on another file system than --out that
    # move would be a copy, billed to the guide alone.
    (out / "tmp").mkdir()
    os.environ["TMPDIR"] = str(out / "tmp")
    tempfile.tempdir = None
    results: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "out_filesystem": file_system_of(out),
        "python": sys.version.split()[0],
        "guide_index": host_pip_index(),
        "layerforge_index": options.index_url + " (isolated from the host's pip configuration)",
    }
    added_recipe, changed_recipe = incremental_recipes(out)
    builds = Builds(out, options.index_url)
    cases = (
        "cold",
        "warm, nothing changed",
        "requirement added, warm cache",
        "strip rule changed, warm cache",
    )
    times: dict[str, list[float]] = {case: [] for case in ("guide", *cases)}
    stages: dict[str, list[dict[str, float]]] = {case: [] for case in cases}
    reused: dict[str, list[list[str]]] = {case: [] for case in cases}  # checks not run again (proofs)
    run_again: dict[str, list[list[str]]] = {case: [] for case in cases}  # and why others ran all the same
    identical: list[bool] = []
    guide_rss = cold_rss = 0
    manifest: dict[str, Any] = {}
    guide: dict[str, float] = {}
    cold_zip = out / "layerforge-cold.zip"
    for run in range(options.runs):
        guide_out = out / "guide"
        shutil.rmtree(guide_out, ignore_errors=True)  # only the last run's layer is kept
        print(
            f"pair {run + 1}/{options.runs}: guide procedure (cold: pip --no-cache-dir) ...", file=sys.stderr
        )
        guide_s, guide_rss, completed = timed(["bash", str(GUIDE), str(guide_out)])
        guide_line = next(x for x in completed.stdout.splitlines() if x.startswith("guide:"))
        guide = {k: float(v) for k, v in (part.split("=") for part in guide_line.split()[1:])}
        times["guide"].append(guide_s)

        cache, name = out / f"cache-{run}", f"dist-{run}"
        print(
            f"pair {run + 1}: layerforge cold, unchanged, +requests, strip rule changed ...", file=sys.stderr
        )
        built = [builds.run("sklearn", name, cache)]
        # The incremental builds replace it in the same output folder (same recipe name, same stem).
        cold_zip = Path(shutil.copy(built[0].manifest["zip"], out / "layerforge-cold.zip"))
        built += [builds.run("sklearn", name, cache), builds.run(added_recipe, name, cache)]
        lock = Path(str(built[2].manifest["zip"])).with_name("sklearn-python3.11-x86_64.lock.json")
        added_lock = shutil.copy(lock, out / f"added-{run}.lock.json")
        built.append(builds.run(changed_recipe, name, cache))
        changed_lock = shutil.copy(lock, out / f"changed-{run}.lock.json")
        manifest, cold_rss = built[0].manifest, built[0].rss_kib
        for case, result in zip(cases, built, strict=True):
            times[case].append(result.elapsed)
            stages[case].append(result.stages)
            reused[case].append(list(result.manifest.get("verification", {}).get("reused", [])))
            run_again[case].append(list(result.manifest.get("verification", {}).get("run_again", [])))

        print(f"pair {run + 1}: cold builds of the incremental cases' locks, to compare ...", file=sys.stderr)
        for recipe, lock_copy, incremental in (
            (added_recipe, added_lock, built[2]),
            (changed_recipe, changed_lock, built[3]),
        ):
            reference = builds.run(
                recipe, f"reference-{run}", out / f"reference-cache-{run}", "--lock", str(lock_copy)
            ).manifest
            shutil.rmtree(out / f"reference-cache-{run}")
            theirs, ours = reference["sha256"], incremental.manifest["sha256"]
            identical.append(theirs == ours)
            if theirs != ours:
                print(f"MISMATCH: {recipe.name}: {ours} != cold {theirs}", file=sys.stderr)
        if run < options.runs - 1:
            shutil.rmtree(cache, ignore_errors=True)
    guide_s = statistics.median(times["guide"])
    guide_unzipped, guide_zipped = zip_sizes(out / "guide" / "layer.zip")

    ours_unzipped, ours_zipped = zip_sizes(cold_zip)
    tree = out / "layerforge-tree"
    with zipfile.ZipFile(cold_zip) as archive:
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

    # Each pair's ratio, then the median of those: the pairing is what makes the ratio fair.
    case_ratios = {
        case: statistics.median(t / g for t, g in zip(times[case], times["guide"], strict=True))
        for case in cases
    }
    median_stages = {
        case: {stage: statistics.median(s.get(stage, 0.0) for s in spent) for stage in (*STAGES, "other")}
        for case, spent in stages.items()
    }
    results.update(
        {
            "guide": {
                "total_s": times["guide"],
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
                "times_s": {case: times[case] for case in cases},
                "stages_s": stages,
                "verification_reused": reused,
                "verification_run_again": run_again,
                "incremental_identical_to_cold": identical,
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
        **{f"{case} / guide": ratio for case, ratio in case_ratios.items()},
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
        *(
            (
                f"end to end, {case} (s, median of {options.runs})",
                guide_s,
                statistics.median(times[case]),
                f"{case} / guide",
            )
            for case in cases
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
    print(
        "\nratios are medians of each pair's ratio; guide per pair: "
        + ", ".join(f"{t:.1f} s" for t in times["guide"])
    )
    print(
        "\nwhere each build's time went (s, medians; resolve includes the downloads; verify includes the "
        "audit, which runs beside it; zip: the wait after verification, it runs beside them)"
    )
    print("| build | " + " | ".join((*STAGES, "other")) + " |\n|---|" + "---:|" * (len(STAGES) + 1))
    for case, spent in median_stages.items():
        print(f"| {case} | " + " | ".join(f"{spent[stage]:.2f}" for stage in (*STAGES, "other")) + " |")
    print("\nverification checks not run again, because nothing they read changed (per pair):")
    for case, per_pair in reused.items():
        listed = "; ".join(", ".join(c.split(" of ")[0] for c in checks) or "none" for checks in per_pair)
        print(f"- {case}: {listed}")
    why = {
        case: sorted({line for lines in per_pair for line in lines}) for case, per_pair in run_again.items()
    }
    if any(why.values()):
        print("\nchecks run again although an earlier build had filed a proof, and what had changed:")
        for case, lines in why.items():
            for line in lines:
                print(f"- {case}: {line}")
    verdict = "all identical" if all(identical) else "MISMATCH"
    print(f"\nincremental zips against cold builds of the same lock and recipe: {verdict} ({identical})")
    print(f"\nguide index: {results['guide_index']}\nlayerforge index: {results['layerforge_index']}")
    print(f"machine: {results['machine']}; output on {results['out_filesystem']}")
    print(f"results in {out / 'results.json'}")
    if not all(identical):
        sys.exit(1)


if __name__ == "__main__":
    main()
