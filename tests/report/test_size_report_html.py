"""size-report --html: one self-contained page whose chart renders in a real browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from layerforge.cli import main
from layerforge.report import size_report as core
from layerforge.report.render import render_html
from tests.support.size_zips import Zeros, dist, write_zip

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
HOSTILE = 'evil"<img src=x onerror=alert(1)>'


def _layer(path: Path) -> Path:
    numpy = {"numpy/core/_umath.so": Zeros(30_000_000), "numpy.libs/libopenblas.so": Zeros(25_000_000)}
    entries = dist("numpy", "2.2.6", numpy, top_level=["numpy"])
    entries |= dist("scipy", "1.14.1", {"scipy/linalg/_flapack.so": Zeros(40_000_000)}, top_level=["scipy"])
    entries |= dist("pandas", "2.2.3", {"pandas/_libs/groupby.so": Zeros(22_000_000)}, top_level=["pandas"])
    entries |= dist(
        "scikit-learn", "1.5.2", {"sklearn/tree/_tree.so": Zeros(9_000_000)}, top_level=["sklearn"]
    )
    entries |= dist("joblib", "1.4.2", {"joblib/__init__.py": Zeros(700_000)})
    # A name that would break out of an attribute, a tag or the data script if it were not escaped.
    entries[f"python/{HOSTILE}.py"] = b"x = 1\n" * 1000
    entries["python/x</script><script>alert(2)</script>.txt"] = b"y" * 10
    return write_zip(path, entries)


def _chromium(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    profile = tmp_path / "chromium-profile"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_the_page_is_self_contained_and_escapes_names(tmp_path: Path) -> None:
    page = render_html(core.build_report([core.measure_path(_layer(tmp_path / "layer.zip"))]))

    # Nothing is fetched: no external script, style, image or font, no link element.
    assert not re.search(r"""\b(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert not re.search(r"<script[^>]*\bsrc=", page)
    assert "default-src 'none'" in page  # and the page says so to the browser
    # Hostile file names never become markup, inside tables or inside the data script.
    assert "<img src=x" not in page and "alert(2)</script>" not in page
    assert page.count("</script>") == 3  # the error hook, the data and the chart script


def test_the_cli_writes_the_page(tmp_path: Path) -> None:
    layer = _layer(tmp_path / "layer.zip")
    out = tmp_path / "reports" / "size.html"
    result = CliRunner().invoke(main, ["size-report", str(layer), "--html", str(out), "--quiet"])
    assert result.exit_code == 0, result.stderr
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert not list(out.parent.glob(".*.part"))
    assert out.stat().st_mode & 0o044  # readable by others, as the umask allows, not mkstemp's 0600


@needs_chromium
def test_the_page_renders_its_chart_in_headless_chromium(tmp_path: Path) -> None:
    layer = _layer(tmp_path / "layer.zip")
    old = write_zip(
        tmp_path / "old" / "layer.zip", dist("numpy", "2.2.5", {"numpy/core/_umath.so": Zeros(20_000_000)})
    )
    page = tmp_path / "report.html"
    args = ["size-report", str(layer), "--compare", str(old), "--max-unzipped", "190MiB", "--html", str(page)]
    assert CliRunner().invoke(main, [*args, "--quiet"]).exit_code == 0

    dom = _chromium("--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri(), tmp_path=tmp_path)

    assert dom.returncode == 0, dom.stderr[-2000:]
    ready = re.search(r'<div id="lf-chart-ready"[^>]*>', dom.stdout)
    assert ready, "the chart script did not finish"
    cells = int(re.search(r'data-cells="(\d+)"', ready.group(0)).group(1))  # type: ignore[union-attr]
    assert cells == 7  # five distributions and two files of no distribution, one block each
    assert 'data-compare="7"' in ready.group(0)  # numpy grew, the six others are new
    assert dom.stdout.count('class="tm-cell"') == cells
    assert "lf-js-error" not in dom.stdout.replace('d.id = "lf-js-error"', "")
    console_errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console_errors == []

    shot = tmp_path / "report.png"
    taken = _chromium("--screenshot=" + str(shot), "--window-size=1280,900", page.as_uri(), tmp_path=tmp_path)
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 30_000  # a blank page is a few KB; charts and tables are far more
    keep = os.environ.get("LAYERFORGE_SCREENSHOT_DIR")
    # To look at it: LAYERFORGE_SCREENSHOT_DIR=/tmp/shots pytest tests/report/test_size_report_html.py
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "size-report.png")
        shutil.copy(page, Path(keep) / "size-report.html")
