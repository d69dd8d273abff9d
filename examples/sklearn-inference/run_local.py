"""Invoke a packaged function locally, seeing what Lambda would: its zip and its layers, nothing else.

    python3.11 -I -S run_local.py --function FUNCTION.zip --layer LAYER.zip --event events/sample.json

Run it with the runtime's Python version in isolated mode without site (``-I -S``): the host's
site-packages, user site and PYTHON* variables stay out, so an import that works here works because
the function zip or a layer has the module. The zips are unpacked into a temporary folder laid out
as Lambda lays them out (the function as /var/task, the layers merged in order as /opt), and the
handler is imported and called as the runtime does, with the event and a stand-in context. The
response is printed as JSON on stdout.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any


class Context:
    """The attributes of Lambda's context object that handlers commonly read."""

    def __init__(self, function_name: str, timeout_seconds: float = 60.0) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{function_name}"
        self.memory_limit_in_mb = 512
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def lambda_paths(root: Path, function_zip: Path, layer_zips: list[Path]) -> list[str]:
    """Unpack the zips under `root`; the folders to put first on sys.path, in Lambda's order."""
    task, opt = root / "task", root / "opt"
    with zipfile.ZipFile(function_zip) as archive:
        archive.extractall(task)
    for layer in layer_zips:  # a later layer's file replaces an earlier one's, as on Lambda
        with zipfile.ZipFile(layer) as archive:
            archive.extractall(opt)
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return [str(task), str(opt / "python" / "lib" / version / "site-packages"), str(opt / "python")]


def invoke(handler: str, event: dict[str, Any], context: Context) -> Any:
    module_name, _, function_name = handler.rpartition(".")
    module = importlib.import_module(module_name.replace("/", "."))
    return getattr(module, function_name)(event, context)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--function", type=Path, required=True, help="the function zip")
    parser.add_argument("--layer", type=Path, action="append", default=[], help="a layer zip (repeatable)")
    parser.add_argument("--event", type=Path, required=True, help="the event, a JSON file")
    parser.add_argument("--handler", default="handler.lambda_handler")
    args = parser.parse_args()
    event = json.loads(args.event.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="lambda-local-") as tmp:
        sys.path[:0] = lambda_paths(Path(tmp), args.function, args.layer)
        response = invoke(args.handler, event, Context(args.function.stem))
    # The handler's own prints went to stdout before: the response is the last line.
    print(json.dumps(response))


if __name__ == "__main__":
    main()
