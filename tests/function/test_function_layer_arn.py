"""package-function --layer-arn: the import scan and the size check against a published layer.

The layer is published in moto behind the proxy of test_size_report_remote, which gives
GetLayerVersion the presigned https Location that AWS gives; only the zip's central directory is read.
"""

from __future__ import annotations

import random
from pathlib import Path

from click.testing import CliRunner

from layerforge.cli import main
from tests.report.test_size_report_remote import Publish, publish  # noqa: F401  (a fixture)
from tests.support.size_zips import Zeros, dist, write_zip


def _function(tmp_path: Path) -> Path:
    src = tmp_path / "fn"
    src.mkdir()
    (src / "handler.py").write_text(
        "import pandas as pd\nfrom sklearn.linear_model import LinearRegression\n\n"
        "def lambda_handler(event, context):\n    return None\n"
    )
    return src


def test_imports_are_checked_against_a_published_layer(publish: Publish, tmp_path: Path) -> None:  # noqa: F811
    layer = write_zip(
        tmp_path / "pandas.zip",
        # Random bytes do not compress: the zip is as big as its content, 300 KB.
        dist("pandas", "2.2.3", {"pandas/_libs/lib.so": random.Random(5).randbytes(300_000)}),
    )
    arn, proxy = publish(layer, "pandas")
    src = _function(tmp_path)

    result = CliRunner().invoke(
        main,
        ["package-function", str(src), "--handler", "handler.lambda_handler", "--layer-arn", arn,
         "--endpoint-url", proxy.url, "--out", str(tmp_path / "out")],
    )  # fmt: skip

    assert result.exit_code == 1, result.output + result.stderr
    assert "handler.py:2: `from sklearn.linear_model import LinearRegression`" in result.stderr
    assert "provided by the distribution `scikit-learn`" in result.stderr
    assert "pandas'" not in result.stderr  # found in the published layer
    # Only the central directory crossed the wire, never the zip.
    assert 0 < proxy.traffic.object_bytes < layer.stat().st_size // 10
    assert "Signature=" not in result.stderr


def test_a_published_layer_counts_in_the_unzipped_limit(publish: Publish, tmp_path: Path) -> None:  # noqa: F811
    layer = write_zip(
        tmp_path / "big.zip",
        dist("pandas", "2.2.3", {"pandas/__init__.py": b"", "pandas/blob.bin": Zeros(200_000_000)})
        | dist("scikit-learn", "1.5.2", {"sklearn/__init__.py": b"", "sklearn/blob.bin": Zeros(70_000_000)}),
    )
    arn, proxy = publish(layer, "big")
    src = _function(tmp_path)

    result = CliRunner().invoke(
        main,
        ["package-function", str(src), "--handler", "handler.lambda_handler", "--layer-arn", arn,
         "--endpoint-url", proxy.url, "--out", str(tmp_path / "out"), "--json"],
    )  # fmt: skip

    assert result.exit_code == 3, result.output + result.stderr
    assert "over budget: function and all its layers, unzipped" in result.stderr
    assert "big:1 (layer" in result.stderr
    assert '"exit_code": 3' in result.stdout
