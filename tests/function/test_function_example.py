"""examples/sklearn-inference: the troubleshooting guide's story, built for real and run locally.

build.sh builds the sklearn layer from the package index (PyPI by default; LAYERFORGE_TEST_INDEX_URL
overrides), trains the model with that layer's own libraries, packages the function against the layer
and invokes it once. The tests then invoke the handler again, in a fresh ``python3.11 -I -S`` that sees
only the unzipped layer's python/ and the function zip's contents. Run with ``-s`` to see the
prediction.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from layerforge.runners.interpreters import Interpreter, find_interpreter
from layerforge.target import Target

pytestmark = pytest.mark.network

INDEX_URL = os.environ.get("LAYERFORGE_TEST_INDEX_URL", "https://pypi.org/simple")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sklearn-inference"
TARGET = Target("python3.11", "x86_64")
LAYER_ZIP = "sklearn-inference-python3.11-x86_64.zip"
FUNCTION_ZIP = "sklearn-inference-fn-python3.11-x86_64.zip"
RESPONSE_FIELDS = {
    "card_id",
    "recall_probability",
    "optimal_review_days",
    "recommendation",
    "model_version",
    "timestamp",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Interpreter]:
    """build.sh run once into a temporary folder: the layer zip and the function zip."""
    interpreter = find_interpreter(TARGET)
    if interpreter is None:
        pytest.skip(f"no CPython {TARGET.python_dotted} on {TARGET.machine} here to run the handler with")
    layerforge = Path(sys.executable).with_name("layerforge")
    command = str(layerforge) if layerforge.is_file() else shutil.which("layerforge")
    if command is None:
        pytest.skip("the layerforge command is not installed next to this Python")
    work = tmp_path_factory.mktemp("sklearn-inference")
    env = {
        **os.environ,
        "LAYERFORGE": command,
        "PYTHON": str(interpreter.path),
        "LAYERFORGE_INDEX_URL": INDEX_URL,
        "LAYERFORGE_CACHE_DIR": str(work / "cache"),
    }
    env.pop("MODEL_BUCKET", None)
    completed = subprocess.run(
        ["bash", str(EXAMPLE / "build.sh"), str(work / "dist")],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    print(f"\nbuilt the example's layer from {INDEX_URL}")
    return work / "dist", interpreter


def invoke(built: tuple[Path, Interpreter], event: Path) -> dict[str, object]:
    """The handler run as Lambda runs it: a fresh interpreter, only the zips on its path."""
    dist, interpreter = built
    env = {key: value for key, value in os.environ.items() if key != "MODEL_BUCKET"}
    completed = subprocess.run(
        [str(interpreter.path), "-I", "-S", str(EXAMPLE / "run_local.py"),
         "--function", str(dist / FUNCTION_ZIP), "--layer", str(dist / LAYER_ZIP), "--event", str(event)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    response: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    return response


def test_the_example_handler_predicts_with_the_built_sklearn_layer(built: tuple[Path, Interpreter]) -> None:
    dist, _ = built
    manifest = json.loads((dist / FUNCTION_ZIP.replace(".zip", ".manifest.json")).read_text())
    assert manifest["imports"]["found"]["pandas"] == f"layer {LAYER_ZIP}"
    assert manifest["imports"]["missing"] == []

    response = invoke(built, EXAMPLE / "events" / "sample.json")

    assert response["statusCode"] == 200, response
    body = json.loads(str(response["body"]))
    assert set(body) == RESPONSE_FIELDS
    assert body["card_id"] == 123 and body["model_version"] == "v1"
    recall, days = body["recall_probability"], body["optimal_review_days"]
    assert 0.0 <= recall <= 1.0
    assert (days == 0) if recall < 0.7 else (days >= 1)
    print(
        f"prediction for card {body['card_id']} (7 days since review, 3 reviews, difficulty 0.6): "
        f"recall_probability={recall:.4f}, optimal_review_days={days}, "
        f"recommendation={body['recommendation']!r}"
    )


def test_the_example_handler_answers_400_on_a_missing_field(
    built: tuple[Path, Interpreter], tmp_path: Path
) -> None:
    event = tmp_path / "event.json"
    event.write_text(
        json.dumps({"body": json.dumps({"card_id": 7, "days_since_review": 2, "review_count": 1})})
    )

    response = invoke(built, event)

    assert response["statusCode"] == 400
    assert json.loads(str(response["body"])) == {"error": "Missing required field: difficulty_score"}
