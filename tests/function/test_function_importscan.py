"""The import scan and the handler check, on small function sources written by each test."""

from __future__ import annotations

import json
import platform
import subprocess
import textwrap
from pathlib import Path

import pytest

from layerforge.errors import InputError
from layerforge.function.handler_check import HandlerError, HandlerSpec, check_handler
from layerforge.function.importscan import (
    ImportCheckError,
    ModuleSource,
    ScanReport,
    distribution_for,
    layer_source,
    runtime_source,
    scan_imports,
    stdlib_source,
)
from layerforge.function.stdlib_modules import stdlib_modules
from layerforge.runners.interpreters import find_interpreter
from layerforge.target import RUNTIMES, Target

PY311 = Target("python3.11", "x86_64")


def write_sources(root: Path, files: dict[str, str]) -> dict[str, Path]:
    sources = {}
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        sources[name] = path
    return dict(sorted(sources.items()))


def scan(
    tmp_path: Path,
    files: dict[str, str],
    *,
    target: Target = PY311,
    layers: list[ModuleSource] | None = None,
    ignore: tuple[str, ...] = (),
) -> ScanReport:
    providers = [*(layers or []), runtime_source(target), stdlib_source(target)]
    return scan_imports(write_sources(tmp_path / "src", files), providers, target, ignore=ignore)


def missing(report: ScanReport) -> list[tuple[str, int, str]]:
    return [(m.site.path, m.site.line, m.reason) for m in report.missing]


# --------------------------------------------------------------------------------------------------
# Relative imports


def test_relative_imports_resolve_within_the_sources(tmp_path: Path) -> None:
    report = scan(
        tmp_path,
        {
            "handler.py": "from app import api\nfrom app.models.user import User\nimport app.models\n",
            "app/__init__.py": "from . import api\nVERSION = 1\n",
            "app/api.py": "from . import models\nfrom .models import user\nfrom .models.user import User\n",
            "app/models/__init__.py": "",
            "app/models/user.py": "from .. import VERSION\nfrom ..api import handle\nclass User: ...\n",
            "app/api_impl.py": "",
        },
    )
    # app/api.py defines no `handle`: the one miss, named as Python names it.
    assert missing(report) == [
        ("app/models/user.py", 2, "cannot import name 'handle' from 'app.api' (app/api.py)"),
    ]
    assert report.found["app"] == "the function's sources"


def test_relative_imports_that_python_refuses_are_reported(tmp_path: Path) -> None:
    report = scan(
        tmp_path,
        {
            "handler.py": "from . import helpers\n",  # Lambda imports handler.py as a top-level module
            "helpers.py": "",
            "pkg/__init__.py": "from . import gone\n",
            "pkg/mod.py": "from .. import elsewhere\nfrom .absent import thing\nimport pkg.nothing.deeper\n",
        },
    )
    reasons = missing(report)
    assert reasons[0][:2] == ("handler.py", 1)
    assert "attempted relative import with no known parent package" in reasons[0][2]
    assert ("pkg/__init__.py", 1, "cannot import name 'gone' from 'pkg' (pkg/__init__.py)") in reasons
    assert ("pkg/mod.py", 1, "attempted relative import beyond top-level package") in reasons
    assert ("pkg/mod.py", 2, "No module named 'pkg.absent'") in reasons
    assert ("pkg/mod.py", 3, "No module named 'pkg.nothing'") in reasons
    # The function's own modules are not distributions to install.
    assert all(m.distribution is None for m in report.missing)


def test_star_imports_and_module_getattr_make_names_unknowable_not_missing(tmp_path: Path) -> None:
    report = scan(
        tmp_path,
        {
            "handler.py": "from lib import anything\nfrom lazy import whatever\n",
            "lib/__init__.py": "from .core import *\n",
            "lib/core.py": "x = 1\n",
            "lazy.py": "def __getattr__(name):\n    return name\n",
        },
    )
    assert report.ok, missing(report)


# --------------------------------------------------------------------------------------------------
# Optional and conditional imports


def test_imports_guarded_by_except_importerror_are_optional(tmp_path: Path) -> None:
    report = scan(
        tmp_path,
        {
            "handler.py": """
                try:
                    import ujson as json
                except ImportError:
                    import json
                try:
                    from orjson import dumps
                except (ImportError, AttributeError):
                    dumps = None
                try:
                    import simdjson
                except ModuleNotFoundError:
                    simdjson = None
                try:
                    import rapidjson
                except Exception:
                    rapidjson = None
                try:
                    import fastjson
                except KeyError:
                    pass
                try:
                    pass
                except ImportError:
                    pass
                else:
                    import after_try
                def later():
                    try:
                        import msgpack
                    except:  # noqa: E722
                        msgpack = None
            """,
        },
    )
    assert sorted(m.site.written for m in report.optional) == [
        "from orjson import dumps",
        "import msgpack",
        "import rapidjson",
        "import simdjson",
        "import ujson as json",
    ]
    # `except KeyError` does not catch ImportError, and an else block is not protected by its try.
    assert sorted(m.module for m in report.missing) == ["after_try", "fastjson"]
    assert any("under `except ImportError`" in warning for warning in report.warnings())


def test_optional_misses_alone_do_not_fail(tmp_path: Path) -> None:
    report = scan(tmp_path, {"handler.py": "try:\n    import ujson\nexcept ImportError:\n    ujson = None\n"})
    report.raise_for_missing()  # no error
    assert report.ok and len(report.optional) == 1


def test_type_checking_and_version_branches_are_decided_for_the_target(tmp_path: Path) -> None:
    files = {
        "handler.py": """
            import sys
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from mypy_boto3_s3 import S3Client
            if sys.version_info >= (3, 11):
                import tomllib
            else:
                import tomli as tomllib
            if sys.platform == "win32":
                import winshell
            elif not sys.platform.startswith("linux"):
                import unknown_platform_lib
        """
    }
    on_311 = scan(tmp_path / "a", files)
    # sys.platform.startswith(...) is not decided: that branch counts.
    assert [m.module for m in on_311.missing] == ["unknown_platform_lib"]
    on_310 = scan(tmp_path / "b", files, target=Target("python3.10", "x86_64"))
    assert [m.module for m in on_310.missing] == ["tomli", "unknown_platform_lib"]


# --------------------------------------------------------------------------------------------------
# What the runtime provides


def test_the_standard_library_and_the_runtimes_own_packages_are_not_flagged(tmp_path: Path) -> None:
    report = scan(
        tmp_path,
        {
            "handler.py": """
                import __main__
                import json, os, logging.config, xml.etree.ElementTree
                from concurrent.futures import ThreadPoolExecutor
                from email.mime.text import MIMEText
                import tomllib, zoneinfo, sqlite3, ctypes
                import boto3, botocore.exceptions, s3transfer, jmespath, urllib3, six
                from dateutil import parser
                import awslambdaric
                import bootstrap
            """,
        },
    )
    assert report.ok, missing(report)
    assert report.found["boto3"] == "the python3.11 runtime"
    assert report.found["json"] == "the Python 3.11 standard library"


def test_modules_the_target_python_dropped_are_flagged_with_the_reason(tmp_path: Path) -> None:
    files = {"handler.py": "import distutils.util\nimport cgi\n"}
    assert scan(tmp_path / "a", files).ok
    on_312 = scan(tmp_path / "b", files, target=Target("python3.12", "x86_64"))
    assert [(m.module, m.distribution) for m in on_312.missing] == [("distutils.util", "setuptools")]
    assert "dropped it after Python 3.11" in on_312.missing[0].reason
    on_313 = scan(tmp_path / "c", files, target=Target("python3.13", "arm64"))
    assert [m.module for m in on_313.missing] == ["distutils.util", "cgi"]


def test_missing_modules_name_the_distribution_that_provides_them(tmp_path: Path) -> None:
    source = "import sklearn.linear_model\nimport yaml\nfrom PIL import Image\nimport cv2, requests\n"
    report = scan(tmp_path, {"handler.py": source})
    assert [(m.site.line, m.distribution) for m in report.missing] == [
        (1, "scikit-learn"),
        (2, "PyYAML"),
        (3, "pillow"),
        (4, "opencv-python-headless"),
        (4, "requests"),
    ]
    with pytest.raises(ImportCheckError) as caught:
        report.raise_for_missing()
    assert caught.value.exit_code == 1
    text = str(caught.value)
    assert "handler.py:1: `import sklearn.linear_model`: No module named 'sklearn'" in text
    assert "add scikit-learn, PyYAML, pillow, opencv-python-headless, requests to" in text
    assert distribution_for("dateutil.parser") == "python-dateutil"


def test_layers_provide_modules_from_python_and_their_own_versions_site_packages(tmp_path: Path) -> None:
    layer = layer_source(
        [
            "python/pandas/__init__.py",
            "python/six.py",
            "python/_cffi_backend.cpython-311-x86_64-linux-gnu.so",
            "python/numpy-2.2.6.dist-info/METADATA",
            "python/lib/python3.11/site-packages/requests/__init__.py",
            "python/lib/python3.12/site-packages/httpx/__init__.py",
            "nodejs/node_modules/left-pad/index.js",
        ],
        "layer deps.zip",
        PY311,
    )
    assert layer.names >= {"pandas", "six", "_cffi_backend", "requests"}
    assert "numpy" not in layer.names and "httpx" not in layer.names
    report = scan(
        tmp_path,
        {"handler.py": "import pandas, requests, _cffi_backend\nimport httpx\n"},
        layers=[layer],
    )
    assert report.found["pandas"] == "layer deps.zip"
    (miss,) = report.missing
    assert miss.module == "httpx"
    assert "python/lib/python3.12/site-packages/, which python3.11 does not search" in miss.reason


def test_ignored_modules_are_taken_as_present(tmp_path: Path) -> None:
    report = scan(tmp_path, {"handler.py": "import vendored.thing\nimport other\n"}, ignore=("vendored",))
    assert [m.module for m in report.missing] == ["other"]


def test_a_file_that_does_not_parse_for_the_target_fails_the_scan(tmp_path: Path) -> None:
    files = {
        "handler.py": "import helpers\n",
        "helpers.py": "def f(x):\n    match x:\n        case 1:\n            return 1\n",
    }
    assert scan(tmp_path / "a", files).ok
    report = scan(tmp_path / "b", files, target=Target("python3.9", "x86_64"))
    assert not report.ok
    assert report.syntax_errors[0].startswith("helpers.py:4: does not parse as python3.9: Pattern matching")


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_the_stdlib_table_matches_each_interpreter_found_here(runtime: str) -> None:
    arch = "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"
    target = Target(runtime, arch)
    interpreter = find_interpreter(target)
    if interpreter is None or interpreter.version < (3, 10):
        pytest.skip(f"no CPython {target.python_dotted} with sys.stdlib_module_names here")
    names = subprocess.run(
        [
            str(interpreter.path),
            "-I",
            "-S",
            "-c",
            "import json, sys; print(json.dumps(sorted(sys.stdlib_module_names)))",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert set(json.loads(names)) == stdlib_modules(target.python_version)


# --------------------------------------------------------------------------------------------------
# The handler check


@pytest.mark.parametrize(
    ("handler", "files", "expected"),
    [
        ("handler", {"handler.py": ""}, "is not MODULE.FUNCTION"),
        ("handler.class.fn", {"handler.py": ""}, "is not MODULE.FUNCTION"),
        ("nomodule.lambda_handler", {"handler.py": ""}, "no module `nomodule`"),
        (
            "handler.missing",
            {"handler.py": "def lambda_handler(event, context): ...\n"},
            "defines no `missing`",
        ),
        ("handler.lambda_handler", {"handler.py": "def lambda_handler(event): ...\n"}, "takes (event)"),
        ("handler.lambda_handler", {"handler.py": "def lambda_handler(): ...\n"}, "takes (no arguments)"),
        (
            "handler.lambda_handler",
            {"handler.py": "def lambda_handler(event, context, extra): ...\n"},
            "requires 3 positional arguments",
        ),
        (
            "handler.lambda_handler",
            {"handler.py": "def lambda_handler(event, context, *, strict): ...\n"},
            "keyword-only argument(s) strict",
        ),
        ("handler.lambda_handler", {"handler.py": "class lambda_handler: ...\n"}, "is a class"),
        ("handler.lambda_handler", {"handler.py": "def lambda_handler(event, context)\n"}, "does not parse"),
    ],
)
def test_a_bad_handler_is_bad_input(
    tmp_path: Path, handler: str, files: dict[str, str], expected: str
) -> None:
    sources = write_sources(tmp_path, files)
    with pytest.raises(HandlerError) as caught:
        check_handler(HandlerSpec.parse(handler), sources)
    assert isinstance(caught.value, InputError) and caught.value.exit_code == 2
    assert expected in str(caught.value)


def test_the_missing_function_error_lists_what_the_module_defines(tmp_path: Path) -> None:
    sources = write_sources(tmp_path, {"handler.py": "def handle(event, context): ...\ndef _helper(): ...\n"})
    with pytest.raises(HandlerError, match=r"functions it defines: _helper, handle"):
        check_handler(HandlerSpec.parse("handler.lambda_handler"), sources)


@pytest.mark.parametrize(
    ("handler", "source", "kind", "warns"),
    [
        ("handler.lambda_handler", "def lambda_handler(event, context): ...\n", "def", False),
        ("handler.lambda_handler", "def lambda_handler(*args): ...\n", "def", False),
        ("handler.lambda_handler", "def lambda_handler(event, context=None, retries=3): ...\n", "def", False),
        ("handler.lambda_handler", "def lambda_handler(event, /, context, **kw): ...\n", "def", False),
        ("handler.lambda_handler", "async def lambda_handler(event, context): ...\n", "async def", True),
        ("handler.lambda_handler", "lambda_handler = make_handler()\n", "assignment", True),
        ("handler.lambda_handler", "from app import main as lambda_handler\n", "import", True),
        (
            "handler.lambda_handler",
            "def lambda_handler(event): ...\nif True:\n    def lambda_handler(event, context): ...\n",
            "def",
            False,
        ),
    ],
)
def test_handlers_that_take_event_and_context(
    tmp_path: Path, handler: str, source: str, kind: str, warns: bool
) -> None:
    sources = write_sources(tmp_path, {"handler.py": source})
    check = check_handler(HandlerSpec.parse(handler), sources)
    assert (check.path, check.kind, bool(check.warnings)) == ("handler.py", kind, warns)


def test_a_handler_in_a_package_and_with_a_slash(tmp_path: Path) -> None:
    sources = write_sources(
        tmp_path, {"app/__init__.py": "", "app/api.py": "\n\ndef handler(event, context): ...\n"}
    )
    for text in ("app.api.handler", "app/api.handler"):
        check = check_handler(HandlerSpec.parse(text), sources)
        assert (check.path, check.line) == ("app/api.py", 3)


def test_a_handler_in_an_excluded_folder_names_the_rule(tmp_path: Path) -> None:
    sources = write_sources(tmp_path, {"app.py": ""})
    with pytest.raises(
        HandlerError, match=r"tests/handler.py is left out of the package by the exclude rule `\*\*/tests`"
    ):
        check_handler(HandlerSpec.parse("tests.handler.main"), sources, excluded={"tests": "**/tests"})
