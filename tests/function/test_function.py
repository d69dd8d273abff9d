"""`layerforge package-function`: the function zip, its excludes, its requirements and its checks.

Layers here are small zips written by the tests (tests/support/size_zips); requirements are tiny
wheels served by the local index on 127.0.0.1 and installed by the real pip.
"""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from layerforge.cli import main
from layerforge.function.package import FunctionOptions, package_function
from layerforge.target import Target
from tests.support.index import LocalIndex
from tests.support.size_zips import Zeros, dist, write_zip

# The guide's Step 2 handler.py, word for word: it imports pandas inside predict_recall_probability.
GUIDE_HANDLER = '''\
# lambda/ml_inference/handler.py
import json
import boto3
import pickle
import os
import numpy as np
from datetime import datetime

s3 = boto3.client('s3')
MODEL_BUCKET = os.environ['MODEL_BUCKET']
MODEL_KEY = 'models/forgetting_curve_v1.pkl'

model_data = None

def load_model():
    """Download and load model from S3"""
    global model_data
    if model_data is None:
        print(f"Loading model from s3://{MODEL_BUCKET}/{MODEL_KEY}")
        response = s3.get_object(Bucket=MODEL_BUCKET, Key=MODEL_KEY)
        model_bytes = response['Body'].read()
        model_data = pickle.loads(model_bytes)
        print("Model loaded successfully")
    return model_data

def predict_recall_probability(model_dict, days_since_review, review_count, difficulty_score):
    """Predict probability of successful recall"""
    sklearn_model = model_dict['sklearn_model']

    # Use pandas DataFrame with proper column names
    import pandas as pd
    features = pd.DataFrame({
        'days_since_last_review': [days_since_review],
        'review_count': [review_count],
        'difficulty_score': [difficulty_score]
    })

    prediction = sklearn_model.predict(features)[0]
    return max(0.0, min(1.0, prediction))

def get_optimal_review_time(recall_probability, threshold=0.7):
    """Calculate optimal review timing"""
    return 0 if recall_probability < threshold else 1

def lambda_handler(event, context):
    """Lambda handler for ML predictions"""
    try:
        body = json.loads(event.get('body', '{}')) if isinstance(event.get('body'), str) else event
        card_id = body.get('card_id')
        model_dict = load_model()
        recall_probability = predict_recall_probability(
            model_dict, body['days_since_review'], body['review_count'], body['difficulty_score']
        )
        return {'statusCode': 200, 'body': json.dumps({'card_id': card_id})}
    except KeyError as e:
        return {'statusCode': 400, 'body': json.dumps({'error': f'Missing required field: {str(e)}'})}
'''
PANDAS_LINE = GUIDE_HANDLER.splitlines().index("    import pandas as pd") + 1


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content), encoding="utf-8")
    return root


def layer_zip(path: Path, *names: str) -> Path:
    """A layer with one small distribution per name, under python/ as layerforge builds them."""
    entries = {}
    for name in names:
        entries |= dist(name, "1.0", {f"{name}/__init__.py": b"VERSION = 1\n"}, top_level=[name])
    return write_zip(path, entries)


def package(*args: str) -> Result:
    return CliRunner().invoke(main, ["package-function", *args])


def zip_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


# --------------------------------------------------------------------------------------------------
# The guide's Error 5, caught before deploy


def test_guide_error_5_a_handler_importing_pandas_against_a_layer_without_it_fails(tmp_path: Path) -> None:
    src = write_tree(tmp_path / "ml_inference", {"handler.py": GUIDE_HANDLER})
    # The guide's first layer: scikit-learn, numpy, scipy and joblib, but no pandas.
    layer = layer_zip(tmp_path / "ml_layer.zip", "sklearn", "numpy", "scipy", "joblib")
    out = tmp_path / "dist"

    result = package(
        str(src), "--handler", "handler.lambda_handler", "--layer", str(layer), "--out", str(out)
    )

    assert result.exit_code == 1, result.output + result.stderr
    assert f"handler.py:{PANDAS_LINE}: `import pandas as pd`: No module named 'pandas'" in result.stderr
    assert "provided by the distribution `pandas`" in result.stderr
    assert "add pandas to the layer's recipe" in result.stderr
    assert not any(out.iterdir()), "a failed check leaves nothing in the output folder"

    # Done right: the layer has pandas, and the same handler packages.
    fixed = layer_zip(tmp_path / "ml_layer_complete.zip", "sklearn", "numpy", "scipy", "joblib", "pandas")
    result = package(
        str(src), "--handler", "handler.lambda_handler", "--layer", str(fixed), "--out", str(out)
    )
    assert result.exit_code == 0, result.output + result.stderr
    assert zip_names(out / "ml_inference-python3.11-x86_64.zip") == ["handler.py"]


# --------------------------------------------------------------------------------------------------
# The zip


def test_the_same_sources_packaged_twice_give_the_same_sha256_whatever_the_mtimes(tmp_path: Path) -> None:
    handler = "from app import core\n\ndef lambda_handler(event, context):\n    return core.run()\n"
    src = write_tree(
        tmp_path / "fn",
        {
            "handler.py": handler,
            "app/__init__.py": "",
            "app/core.py": "def run():\n    return 42\n",
            "app/data/table.csv": "a,b\n1,2\n",
        },
    )
    first = package(str(src), "--handler", "handler.lambda_handler", "--out", str(tmp_path / "one"), "--json")
    assert first.exit_code == 0, first.output + first.stderr
    for path in src.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    (src / "app" / "core.py").touch()
    second = package(
        str(src), "--handler", "handler.lambda_handler", "--out", str(tmp_path / "two"), "--json"
    )
    assert second.exit_code == 0, second.output + second.stderr

    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert one["sha256"] == two["sha256"]
    assert Path(one["zip"]).read_bytes() == Path(two["zip"]).read_bytes()
    assert one["sha256"] == hashlib.sha256(Path(one["zip"]).read_bytes()).hexdigest()
    assert zip_names(Path(one["zip"])) == [
        "app/__init__.py",
        "app/core.py",
        "app/data/table.csv",
        "handler.py",
    ]


def test_version_control_caches_tests_and_virtual_environments_are_left_out(tmp_path: Path) -> None:
    src = write_tree(
        tmp_path / "fn",
        {
            "handler.py": "import app.util\n\ndef lambda_handler(event, context): ...\n",
            "app/__init__.py": "",
            "app/util.py": "",
            "app/__pycache__/util.cpython-311.pyc": b"\x00" * 16,
            "app/test_util.py": "",
            "app/util_test.py": "",
            ".git/config": "[core]\n",
            ".gitignore": "dist/\n",
            ".pytest_cache/v/cache/nodeids": "[]",
            ".mypy_cache/3.11/app.json": "{}",
            "tests/test_handler.py": "",
            "conftest.py": "",
            ".venv/lib/python3.11/site-packages/requests/__init__.py": "",
            "env311/pyvenv.cfg": "home = /usr/bin\n",
            "env311/lib/python3.11/site-packages/boto3/__init__.py": "",
            "notebooks/explore.ipynb": "{}",
            "data/sample.csv": "a\n",
        },
    )

    result = package(
        str(src),
        "--handler", "handler.lambda_handler",
        "--exclude", "notebooks",
        "--exclude", "**/*.csv",
        "--out", str(src / "dist"),
        "--json",
    )  # fmt: skip

    assert result.exit_code == 0, result.output + result.stderr
    manifest = json.loads(result.stdout)
    assert zip_names(Path(manifest["zip"])) == [".gitignore", "app/__init__.py", "app/util.py", "handler.py"]
    rules = {item["path"]: item["rule"] for item in manifest["excluded"]}
    assert rules[".git"] == "**/.git"
    assert rules["env311"] == "virtual environment (pyvenv.cfg)"
    assert rules["tests"] == "**/tests" and rules["app/test_util.py"] == "**/test_*.py"
    assert rules["notebooks"] == "notebooks" and rules["data/sample.csv"] == "**/*.csv"

    # Packaged again into the same folder inside SRC: the first zip is not packaged into the second.
    again = package(str(src), "--handler", "handler.lambda_handler", "--out", str(src / "dist"), "--json")
    assert again.exit_code == 0, again.output + again.stderr
    assert {"path": "dist", "rule": "the output folder"} in json.loads(again.stdout)["excluded"]

    kept = package(
        str(src),
        "--handler",
        "handler.lambda_handler",
        "--no-default-excludes",
        "--out",
        str(tmp_path / "all"),
    )
    assert kept.exit_code == 0, kept.output + kept.stderr
    names = zip_names(tmp_path / "all" / "fn-python3.11-x86_64.zip")
    assert ".git/config" in names and "tests/test_handler.py" in names and "env311/pyvenv.cfg" in names


def test_an_exclude_that_escapes_src_is_bad_input(tmp_path: Path) -> None:
    src = write_tree(tmp_path / "fn", {"handler.py": "def lambda_handler(event, context): ...\n"})
    result = package(
        str(src), "--handler", "handler.lambda_handler", "--exclude", "../secrets", "--out", str(tmp_path)
    )
    assert result.exit_code == 2
    assert "must be a glob relative to SRC" in result.stderr


# --------------------------------------------------------------------------------------------------
# The handler, through the command line


@pytest.mark.parametrize(
    ("handler", "source", "expected"),
    [
        ("handler.lambda_handler", "def main(event, context): ...\n", "defines no `lambda_handler`"),
        ("app.lambda_handler", "def lambda_handler(event, context): ...\n", "no module `app`"),
        ("handler.lambda_handler", "def lambda_handler(event): ...\n", "takes (event)"),
        ("handler", "def lambda_handler(event, context): ...\n", "is not MODULE.FUNCTION"),
    ],
)
def test_a_bad_handler_exits_2_before_anything_is_built(
    tmp_path: Path, handler: str, source: str, expected: str
) -> None:
    # The requirements would need an index: the handler is checked first, so none is reached.
    src = write_tree(tmp_path / "fn", {"handler.py": source, "requirements.txt": "pandas\n"})
    result = package(
        str(src), "--handler", handler, "--index-url", "http://127.0.0.1:9/simple/", "--out", str(tmp_path)
    )
    assert result.exit_code == 2, result.output + result.stderr
    assert expected in result.stderr


def test_a_handler_in_a_test_folder_is_explained(tmp_path: Path) -> None:
    src = write_tree(tmp_path / "fn", {"test/handler.py": "def main(event, context): ...\n"})
    result = package(str(src), "--handler", "test/handler.main", "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "test/handler.py is left out of the package by the exclude rule `**/test`" in result.stderr


# --------------------------------------------------------------------------------------------------
# Requirements


def test_requirements_txt_is_installed_at_the_zip_root(local_index: LocalIndex, tmp_path: Path) -> None:
    local_index.add_wheel(
        "tinylib", "1.0", files={"tinylib/__init__.py": "from tinydep import VALUE\n"}, requires=["tinydep"]
    )
    local_index.add_wheel(
        "tinydep", "2.0", files={"tinydep/__init__.py": "VALUE = 2\n", "tinydep/tests/test_x.py": ""}
    )
    src = write_tree(
        tmp_path / "fn",
        {
            "handler.py": "import tinylib\n\ndef lambda_handler(event, context):\n    return tinylib.VALUE\n",
            "requirements.txt": "# what the handler needs\ntinylib==1.0\n",
        },
    )
    options = FunctionOptions(
        source=src,
        handler="handler.lambda_handler",
        target=Target("python3.11", "x86_64"),
        out_dir=tmp_path / "dist",
        cache_dir=tmp_path / "cache",
        index_url=local_index.url,
    )

    result = package_function(options)

    names = zip_names(result.zip_path)
    assert "tinylib/__init__.py" in names and "tinydep/__init__.py" in names
    assert "tinylib-1.0.dist-info/METADATA" in names  # importlib.metadata still works
    assert "tinylib/__pycache__/__init__.cpython-311.pyc" in names  # compiled: /var/task is read-only
    assert "tinydep/tests/test_x.py" not in names  # slimmed by the layer pipeline's rules
    assert not any(name.startswith("python/") for name in names)
    assert "handler.py" in names and "requirements.txt" in names
    assert result.lock_path == tmp_path / "dist" / "fn-python3.11-x86_64.lock.json"
    assert sorted(p.name for p in (tmp_path / "dist").iterdir()) == [
        "fn-python3.11-x86_64.lock.json",
        "fn-python3.11-x86_64.manifest.json",
        "fn-python3.11-x86_64.zip",
    ]
    manifest = json.loads(result.manifest_path.read_text())
    assert {p["name"]: p["version"] for p in manifest["packages"]} == {"tinylib": "1.0", "tinydep": "2.0"}
    assert manifest["index_url"] == local_index.url
    assert manifest["imports"]["found"]["tinylib"] == "the function's requirements"
    assert manifest["kind"] == "function" and manifest["handler"] == "handler.lambda_handler"


def test_a_requirements_file_of_comments_installs_nothing(tmp_path: Path) -> None:
    src = write_tree(
        tmp_path / "fn",
        {"handler.py": "def lambda_handler(event, context): ...\n", "requirements.txt": "# none yet\n\n"},
    )
    result = package(
        str(src),
        "--handler",
        "handler.lambda_handler",
        "--index-url",
        "http://127.0.0.1:9/simple/",
        "--out",
        str(tmp_path / "out"),
    )
    assert result.exit_code == 0, result.output + result.stderr
    assert not (tmp_path / "out" / "fn-python3.11-x86_64.lock.json").exists()


def test_a_lock_without_requirements_is_bad_input(tmp_path: Path) -> None:
    src = write_tree(tmp_path / "fn", {"handler.py": "def lambda_handler(event, context): ...\n"})
    lock = write_tree(tmp_path, {"fn.lock.json": "{}"}) / "fn.lock.json"
    result = package(
        str(src), "--handler", "handler.lambda_handler", "--lock", str(lock), "--out", str(tmp_path / "o")
    )
    assert result.exit_code == 2
    assert "the function has no requirements to install" in result.stderr


# --------------------------------------------------------------------------------------------------
# Sizes and the output folder


def test_a_function_and_layers_over_lambdas_unzipped_limit_exit_3(tmp_path: Path) -> None:
    src = write_tree(
        tmp_path / "fn", {"handler.py": "import torch\n\ndef lambda_handler(event, context): ...\n"}
    )
    # 250 MiB of zeros deflate to about 250 KB: over the limit, small on disk.
    big = write_zip(
        tmp_path / "torch.zip", dist("torch", "2.5.1", {"torch/lib/libtorch_cpu.so": Zeros(262_144_000)})
    )
    out = tmp_path / "out"

    result = package(str(src), "--handler", "handler.lambda_handler", "--layer", str(big), "--out", str(out))

    assert result.exit_code == 3, result.output + result.stderr
    assert "over budget: function and all its layers, unzipped" in result.stderr
    assert "torch.zip (layer" in result.stderr and "torch 250.0 MiB" in result.stderr
    assert not any(out.iterdir())


def test_more_than_five_layers_exit_3(tmp_path: Path) -> None:
    src = write_tree(tmp_path / "fn", {"handler.py": "def lambda_handler(event, context): ...\n"})
    layers = [layer_zip(tmp_path / f"layer{n}.zip", f"lib{n}") for n in range(6)]
    args = [arg for layer in layers for arg in ("--layer", str(layer))]
    result = package(str(src), "--handler", "handler.lambda_handler", *args, "--out", str(tmp_path / "out"))
    assert result.exit_code == 3, result.output + result.stderr
    assert "a function takes at most 5 layers" in result.stderr


def test_a_function_named_like_a_layer_in_the_same_folder_is_refused(tmp_path: Path) -> None:
    src = write_tree(tmp_path / "sklearn", {"handler.py": "def lambda_handler(event, context): ...\n"})
    out = tmp_path / "dist"
    out.mkdir()
    (out / "sklearn-python3.11-x86_64.manifest.json").write_text(
        json.dumps({"kind": "layer", "zip": "x.zip"})
    )
    result = package(str(src), "--handler", "handler.lambda_handler", "--out", str(out))
    assert result.exit_code == 2
    assert "belongs to a layer build" in result.stderr
    assert (
        package(str(src), "--handler", "handler.lambda_handler", "--out", str(out), "--name", "fn").exit_code
        == 0
    )


def test_the_function_manifest_is_read_by_size_report(tmp_path: Path) -> None:
    src = write_tree(
        tmp_path / "fn", {"handler.py": "import pandas\n\ndef lambda_handler(event, context): ...\n"}
    )
    layer = layer_zip(tmp_path / "pandas.zip", "pandas")
    out = tmp_path / "out"
    assert (
        package(
            str(src), "--handler", "handler.lambda_handler", "--layer", str(layer), "--out", str(out)
        ).exit_code
        == 0
    )

    report = CliRunner().invoke(
        main,
        ["size-report", str(out / "fn-python3.11-x86_64.manifest.json"), str(layer), "--json", "--quiet"],
    )

    assert report.exit_code == 0, report.output + report.stderr
    kinds = {source["label"]: source["kind"] for source in json.loads(report.stdout)["sources"]}
    assert kinds == {"fn-python3.11-x86_64.zip": "function", "pandas.zip": "layer"}
