"""size-report on local inputs: zips, folders and build manifests; limits, budgets, comparison, outputs."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from layerforge.cli import main
from layerforge.errors import InputError
from layerforge.limits import DIRECT_UPLOAD_ZIP_BYTES, LAMBDA_UNZIPPED_BYTES
from layerforge.report import size_report as core
from layerforge.report.render import render_markdown, report_json
from tests.support.size_zips import Zeros, dist, entry_sizes, write_zip


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["size-report", *args])


def sample_layer(path: Path, *, scale: int = 1) -> Path:
    """A layer with the shapes attribution must handle: RECORD, top_level.txt only, files added after
    install (.pyc), auditwheel's numpy.libs, a module at the top (six.py) and code of no distribution."""
    rnd = random.Random(5)
    entries = dist(
        "numpy",
        "2.2.6",
        {
            "numpy/__init__.py": b"from .core import *\n" * 40,
            "numpy/core/_multiarray_umath.so": rnd.randbytes(60_000 * scale),
            "numpy.libs/libopenblas64_p-r0.so": rnd.randbytes(90_000 * scale),
        },
        top_level=["numpy"],
        extra={"numpy/core/__pycache__/_internal.cpython-311.pyc": b"\x00" * 3_000},
    )
    entries |= dist(
        "scikit-learn",
        "1.5.2",
        {"sklearn/__init__.py": b"# sklearn\n" * 100, "sklearn/tree/_tree.so": rnd.randbytes(40_000)},
        top_level=["sklearn"],
    )
    # No RECORD at all: files are found by top_level.txt.
    entries |= dist("PyYAML", "6.0.2", {"yaml/__init__.py": b"y" * 7_000, "_yaml/__init__.py": b"z" * 200},
                    record=False, top_level=["_yaml", "yaml"])  # fmt: skip
    entries |= dist("six", "1.16.0", {"six.py": b"import sys\n" * 2_000},
                    extra={"__pycache__/six.cpython-311.pyc": b"\x01" * 9_000})  # fmt: skip
    entries["python/handlers/common.py"] = b"def handle(): pass\n" * 100
    return write_zip(path, entries)


# --------------------------------------------------------------------------------------------------
# Totals and attribution


def test_unzipped_total_of_a_zip_is_the_sum_of_its_entries_to_the_byte(tmp_path: Path) -> None:
    layer = sample_layer(tmp_path / "layer.zip")
    unzipped, compressed, files = entry_sizes(layer)

    report = core.build_report([core.measure_path(layer)])

    assert report.unzipped_bytes == unzipped
    (source,) = report.sources
    assert (source.unzipped_bytes, source.compressed_bytes, source.files) == (unzipped, compressed, files)
    assert source.zipped_bytes == layer.stat().st_size
    # Per-distribution rows add up to the total, in every column.
    assert sum(d.unzipped_bytes for d in source.distributions) == unzipped
    assert sum(d.compressed_bytes for d in source.distributions) == compressed
    assert sum(d.files for d in source.distributions) == files
    assert sum(d.unzipped_bytes for d in report.distributions) == unzipped
    assert sum(report.share(d.unzipped_bytes) for d in report.distributions) == pytest.approx(1.0)


def test_json_rows_add_up_to_the_total(tmp_path: Path) -> None:
    layer = sample_layer(tmp_path / "layer.zip")
    function = write_zip(tmp_path / "function.zip", {"app.py": b"x" * 1234, "lib/util.py": b"u" * 99})

    result = run(str(layer), str(function), "--json", "--quiet")

    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    total = entry_sizes(layer)[0] + entry_sizes(function)[0]
    assert data["unzipped_bytes"] == total
    assert sum(d["unzipped_bytes"] for d in data["distributions"]) == total
    for source in data["sources"]:
        assert sum(d["unzipped_bytes"] for d in source["distributions"]) == source["unzipped_bytes"]
    assert sum(s["unzipped_bytes"] for s in data["sources"]) == total


def test_files_map_to_their_distributions(tmp_path: Path) -> None:
    source = core.measure_path(sample_layer(tmp_path / "layer.zip"))
    rows = {(d.name, d.owned): d for d in source.distributions}

    # RECORD: the package (3 files), numpy.libs and the dist-info (3), and the .pyc added after install,
    # which RECORD does not list, follows its folder.
    assert rows[("numpy", True)].files == 7 and rows[("numpy", True)].version == "2.2.6"
    # top_level.txt alone (no RECORD), and the canonical name of "PyYAML".
    assert rows[("pyyaml", True)].files == 4
    assert rows[("pyyaml", True)].unzipped_bytes > 7_200
    # A top-level module and its __pycache__ entry at the site root.
    assert rows[("six", True)].unzipped_bytes >= 22_000 + 9_000
    assert rows[("scikit-learn", True)].files == 5
    # Code that no distribution owns is grouped under its top-level name.
    assert rows[("handlers", False)].files == 1
    assert set(rows) == {
        ("numpy", True),
        ("scikit-learn", True),
        ("pyyaml", True),
        ("six", True),
        ("handlers", False),
    }


def test_site_packages_layout_and_namespace_packages(tmp_path: Path) -> None:
    site = "python/lib/python3.11/site-packages/"
    entries = dist("google-auth", "2.35.0", {"google/auth/__init__.py": b"a" * 100}, root=site)
    entries |= dist("protobuf", "5.28.3", {"google/protobuf/__init__.py": b"p" * 300}, root=site,
                    extra={"google/protobuf/__pycache__/__init__.cpython-311.pyc": b"c" * 50})  # fmt: skip
    entries[site + "google/stray.txt"] = b"?" * 7
    layer = write_zip(tmp_path / "layer.zip", entries)

    rows = {d.name: d for d in core.measure_path(layer).distributions}

    assert rows["protobuf"].unzipped_bytes == 300 + 50 + sum(
        len(v) for k, v in entries.items() if "protobuf-5.28.3.dist-info" in k and isinstance(v, bytes)
    )
    assert rows["google-auth"].files == 3
    # google/ is shared by two distributions: a file directly in it is not guessed into either.
    assert rows["google"].owned is False and rows["google"].unzipped_bytes == 7


def test_a_folder_is_measured_and_its_zip_estimated(tmp_path: Path) -> None:
    tree = tmp_path / "build" / "layer"
    for path, content in dist("six", "1.16.0", {"six.py": b"import sys\n" * 3_000}).items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_bytes(content if isinstance(content, bytes) else b"")

    (source,) = core.build_report([core.measure_path(tree)]).sources

    assert source.origin == "folder" and source.kind == "layer"
    assert source.unzipped_bytes == sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    assert source.zipped_estimated
    assert source.zipped_bytes is not None and 0 < source.zipped_bytes < source.unzipped_bytes
    assert [d.name for d in source.distributions] == ["six"]


def test_a_manifest_adds_what_slimming_removed_and_its_budget(tmp_path: Path) -> None:
    layer = sample_layer(tmp_path / "dist" / "demo-python3.11-x86_64.zip")
    manifest = tmp_path / "dist" / "demo-python3.11-x86_64.manifest.json"
    removed = {
        "files": 412,
        "by_rule": {"safe:tests": 3_000_000, "safe:docs": 250_000},
        "by_package": {"numpy": 2_500_000, "scikit-learn": 750_000},
    }
    budget = {"name": "budget_unzipped", "description": "", "value": 1_000, "actual": 0, "headroom": 0,
              "exceeded": False, "hard": True}  # fmt: skip
    fields = {"removed_bytes": 3_250_000, "removed": removed, "limits": [budget]}
    manifest.write_text(json.dumps({"schema_version": 1, "kind": "layer", "zip": layer.name, **fields}))

    result = run(str(manifest), "--json", "--quiet")

    # The manifest's own budget (1,000 bytes) applies: exceeded, exit 3.
    assert result.exit_code == 3
    data = json.loads(result.stdout)
    (source,) = data["sources"]
    assert source["origin"] == "manifest" and source["label"] == layer.name
    assert source["removed"] == {
        "bytes": 3_250_000,
        "files": 412,
        "by_rule": removed["by_rule"],
        "by_package": removed["by_package"],
    }
    check = next(line for line in data["limits"] if line["name"] == "budget_unzipped")
    assert check["exceeded"] and "recipe" in check["description"]
    # --max-unzipped overrides it.
    assert run(str(manifest), "--max-unzipped", "10MB", "--quiet").exit_code == 0


# --------------------------------------------------------------------------------------------------
# Limits


@pytest.fixture(scope="module")
def over_limit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A function and two layers, 280 MB unzipped in all, under 1 MB on disk (zeros deflate ~1000:1)."""
    folder = tmp_path_factory.mktemp("big")
    function = write_zip(folder / "function.zip", {"app.py": b"def handler(e, c): pass\n",
                                                   "model/weights.bin": Zeros(60_000_000)})  # fmt: skip
    torch = write_zip(folder / "torch-layer.zip",
                      dist("torch", "2.5.1", {"torch/lib/libtorch_cpu.so": Zeros(150_000_000)}))  # fmt: skip
    scipy_files = {
        "scipy/linalg/_flapack.so": Zeros(50_000_000),
        "scipy/sparse/_sparsetools.so": Zeros(20_000_000),
    }
    scipy = write_zip(folder / "scipy-layer.zip", dist("scipy", "1.14.1", scipy_files))
    return function, torch, scipy


def test_function_and_layers_over_the_lambda_limit_exit_3_naming_the_biggest(
    over_limit: tuple[Path, Path, Path],
) -> None:
    function, torch, scipy = over_limit
    assert sum(path.stat().st_size for path in over_limit) < 1_000_000

    result = run(str(function), str(torch), str(scipy), "--quiet")

    assert result.exit_code == 3
    message = " ".join(result.stderr.split())
    assert f"> {LAMBDA_UNZIPPED_BYTES:,}" in message
    assert (
        "biggest zips: torch-layer.zip (layer, 143.1 MiB), scipy-layer.zip (layer, 66.8 MiB), function.zip"
        in message
    )
    assert "biggest distributions: torch 143.1 MiB (in torch-layer.zip), scipy 66.8 MiB (in scipy" in message
    assert "hint:" in message


def test_over_the_limit_with_json_prints_one_object_with_the_error(
    over_limit: tuple[Path, Path, Path],
) -> None:
    result = run(*map(str, over_limit), "--json")

    assert result.exit_code == 3
    data = json.loads(result.stdout)  # exactly one JSON document on stdout
    assert data["over_budget"] is True and data["error"]["exit_code"] == 3
    assert data["unzipped_bytes"] == sum(entry_sizes(path)[0] for path in over_limit)
    lambda_limit = next(line for line in data["limits"] if line["name"] == "lambda_unzipped")
    assert (
        lambda_limit["exceeded"]
        and lambda_limit["headroom"] == LAMBDA_UNZIPPED_BYTES - data["unzipped_bytes"]
    )
    # Human output went to stderr.
    assert "Lambda size report" in result.stderr


def test_within_the_limit_exits_0_with_headroom(tmp_path: Path) -> None:
    layer = sample_layer(tmp_path / "layer.zip")
    result = run(str(layer), "--json", "--quiet")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["over_budget"] is False and data["error"] is None
    names = [(line["name"], line["subject"]) for line in data["limits"]]
    assert names == [("lambda_unzipped", None), ("layer_count", None), ("direct_upload_zip", "layer.zip")]
    assert all(line["headroom"] == line["value"] - line["actual"] for line in data["limits"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("262144000", 262_144_000),
        ("200MB", 200_000_000),
        ("190MiB", 190 * 1024 * 1024),
        ("1.5 GB", 1_500_000_000),
        ("250mib", 262_144_000),
        ("64KiB", 65_536),
        ("12_345 B", 12_345),
    ],
)
def test_byte_sizes_accept_decimal_and_binary_suffixes(text: str, expected: int) -> None:
    assert core.parse_byte_size(text) == expected


@pytest.mark.parametrize("text", ["200M", "lots", "-5MB", "1.2.3GB", ""])
def test_ambiguous_or_bad_byte_sizes_are_refused(text: str) -> None:
    with pytest.raises(InputError, match="not a byte size"):
        core.parse_byte_size(text)


def test_team_budget_exceeded_exits_3_and_bad_budget_exits_2(tmp_path: Path) -> None:
    layer = sample_layer(tmp_path / "layer.zip")
    over = run(str(layer), "--max-unzipped", "100KB", "--quiet")
    assert over.exit_code == 3
    assert "--max-unzipped" in over.stderr and "numpy" in over.stderr
    bad = run(str(layer), "--max-unzipped", "100M")
    assert bad.exit_code == 2 and "GB (powers of 1000)" in " ".join(bad.stderr.split())


def test_more_than_five_layers_exit_3(tmp_path: Path) -> None:
    layers = [write_zip(tmp_path / f"l{i}.zip", {f"python/m{i}.py": b"x"}) for i in range(6)]
    result = run(*map(str, layers), "--quiet")
    assert result.exit_code == 3
    assert "layers on one function: 6 > 5" in result.stderr
    assert "merge layers" in " ".join(result.stderr.split())


def _synthetic(label: str, zipped: int, unzipped: int) -> core.SourceReport:
    row = core.DistributionSize("blob", "1", True, unzipped, zipped, 1, (label,))
    return core.SourceReport(label, "layer", "zip", label, zipped, False, unzipped, zipped, 1, (row,), ())


def test_a_zip_over_the_direct_upload_limit_warns_and_fails_only_when_strict() -> None:
    report = core.build_report([_synthetic("big.zip", DIRECT_UPLOAD_ZIP_BYTES + 1, 100_000_000)])
    (line,) = [line for line in report.exceeded]
    assert line.check.name == "direct_upload_zip" and line.subject == "big.zip" and not line.check.hard
    assert core.over_budget_error(report) is None
    error = core.over_budget_error(report, strict=True)
    assert error is not None and error.exit_code == 3 and "through S3" in str(error)


# --------------------------------------------------------------------------------------------------
# Comparison and outputs


def test_compare_shows_what_grew_and_what_shrank(tmp_path: Path) -> None:
    old = write_zip(tmp_path / "old" / "layer.zip", {
        **dist("numpy", "2.2.5", {"numpy/a.so": b"n" * 1_000}),
        **dist("pandas", "2.2.2", {"pandas/a.so": b"p" * 5_000}),
        **dist("pytz", "2024.1", {"pytz/zone": b"z" * 300}),
    })  # fmt: skip
    new = write_zip(tmp_path / "new" / "layer.zip", {
        **dist("numpy", "2.2.6", {"numpy/a.so": b"n" * 4_000}),
        **dist("pandas", "2.2.3", {"pandas/a.so": b"p" * 2_000}),
        **dist("tzdata", "2024.2", {"tzdata/zone": b"t" * 700}),
    })  # fmt: skip

    result = run(str(new), "--compare", str(old), "--json", "--quiet")

    assert result.exit_code == 0
    compare = json.loads(result.stdout)["compare"]
    rows = {row["name"]: row for row in compare["distributions"]}
    assert rows["numpy"]["status"] == "grew" and rows["numpy"]["delta"] == 3_000
    assert rows["pandas"]["status"] == "shrank" and rows["pandas"]["delta"] == -3_000
    assert rows["pytz"]["status"] == "removed" and rows["tzdata"]["status"] == "added"
    assert compare["delta_unzipped"] == entry_sizes(new)[0] - entry_sizes(old)[0]
    assert compare["baseline"] == ["layer.zip"]


def test_markdown_goes_to_stdout_for_the_job_summary(tmp_path: Path) -> None:
    layer = sample_layer(tmp_path / "layer.zip")
    result = run(str(layer), "--markdown", "--top", "3")

    assert result.exit_code == 0
    text = result.stdout
    assert text.startswith("## Lambda size report: ✅ within budget")
    assert "| distribution | version | unzipped | compressed | files | share |" in text
    assert "### The 3 biggest files" in text
    assert "\x1b[" not in text  # no terminal colours in a job summary
    assert "Lambda size report" in result.stderr  # the terminal view still goes to stderr


def test_markdown_escapes_names_that_would_break_a_table(tmp_path: Path) -> None:
    source = _synthetic("a|b<script>.zip", 10, 10)
    text = render_markdown(core.build_report([source]))
    assert "a\\|b&lt;script&gt;.zip" in text and "<script>" not in text


def test_json_and_markdown_together_are_a_usage_error(tmp_path: Path) -> None:
    layer = sample_layer(tmp_path / "layer.zip")
    result = run(str(layer), "--json", "--markdown")
    assert result.exit_code == 2 and result.stdout == ""


def test_not_a_zip_is_bad_input(tmp_path: Path) -> None:
    bogus = tmp_path / "layer.zip"
    bogus.write_text("not a zip")
    result = run(str(bogus))
    assert result.exit_code == 2 and "not a readable zip" in result.stderr


def test_two_functions_are_refused(tmp_path: Path) -> None:
    one = write_zip(tmp_path / "a" / "fn.zip", {"app.py": b"a"})
    two = write_zip(tmp_path / "b" / "fn.zip", {"app.py": b"b"})
    result = run(str(one), str(two))
    assert result.exit_code == 2 and "2 functions" in result.stderr


def test_same_named_zips_stay_apart(tmp_path: Path) -> None:
    one = write_zip(tmp_path / "a" / "layer.zip", dist("six", "1.16.0", {"six.py": b"s" * 10}))
    two = write_zip(tmp_path / "b" / "layer.zip", dist("six", "1.16.0", {"six.py": b"s" * 10}))
    report = core.build_report([core.measure_path(one), core.measure_path(two)])
    assert [s.label for s in report.sources] == ["layer.zip", "layer.zip #2"]
    # The same distribution in two layers: only one copy is ever imported.
    assert [(d.name, d.sources) for d in report.duplicates] == [("six", ("layer.zip", "layer.zip #2"))]
    data = report_json(report)
    assert data["schema_version"] == 1 and data["duplicates"] == [
        {"name": "six", "sources": ["layer.zip", "layer.zip #2"]}
    ]


def test_json_schema_version_1_keys(tmp_path: Path) -> None:
    data = report_json(core.build_report([core.measure_path(sample_layer(tmp_path / "layer.zip"))]))
    assert set(data) == {
        "schema_version", "kind", "layerforge_version", "unzipped_bytes", "zipped_bytes", "files", "layers",
        "over_budget", "sources", "distributions", "top_files", "limits", "duplicates", "compare", "error",
    }  # fmt: skip
    assert set(data["sources"][0]) == {
        "label", "kind", "origin", "location", "zipped_bytes", "zipped_estimated", "unzipped_bytes",
        "compressed_bytes", "files", "share", "distributions", "top_files", "removed", "budget_bytes",
        "fetched_bytes", "fetch_requests",
    }  # fmt: skip
    assert set(data["distributions"][0]) == {
        "name", "version", "owned", "unzipped_bytes", "compressed_bytes", "files", "share", "sources",
    }  # fmt: skip
    assert set(data["top_files"][0]) == {
        "path", "source", "distribution", "unzipped_bytes", "compressed_bytes", "share",
    }  # fmt: skip
    sizes = [f["unzipped_bytes"] for f in data["top_files"]]
    assert sizes == sorted(sizes, reverse=True) and len(sizes) == 10
    assert re.fullmatch(r"\d+\.\d+\.\d+", data["layerforge_version"])
