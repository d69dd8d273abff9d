"""Import verification with real interpreters on small layer trees made here: no mocks, no index."""

from __future__ import annotations

import compileall
import importlib.util
import json
import os
import py_compile
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from layerforge.errors import InputError, VerificationError
from layerforge.runners.interpreters import Interpreter, probe
from layerforge.target import ARCHES, Target
from layerforge.verify.local import VerifyReport, _memory_scratch, read_only_copy, sealed, verify_layer

HOST_ARCH = {machine: arch for arch, machine in ARCHES.items()}.get(os.uname().machine, "x86_64")
TARGET = Target(f"python{sys.version_info[0]}.{sys.version_info[1]}", HOST_ARCH)
PYENV_VERSIONS = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"

GOOD = {
    "python/good/__init__.py": "from .core import VALUE\n",
    "python/good/core.py": "VALUE = 42\n",
    "python/good-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: good\nVersion: 1.0\n",
}


@pytest.fixture(scope="module")
def interpreter() -> Interpreter:
    """The venv's own interpreter: the one whose site-packages hold click, which the layer must not see."""
    found = probe(Path(sys.executable))
    assert found is not None
    return found


def make_layer(root: Path, files: Mapping[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def check(
    layer: Path,
    interpreter: Interpreter | None,
    modules: Sequence[str] = ("good",),
    distributions: Sequence[str] = (),
    *,
    smoke: str | None = None,
    removed: Mapping[str, str] | None = None,
    timeout: float = 60,
    target: Target = TARGET,
) -> VerifyReport:
    return verify_layer(
        layer,
        target,
        modules=modules,
        distributions=distributions,
        smoke=smoke,
        interpreter=interpreter,
        removed=removed,
        timeout=timeout,
    )


def test_a_good_layer_imports_and_reads_its_metadata(tmp_path: Path, interpreter: Interpreter) -> None:
    report = check(make_layer(tmp_path, GOOD), interpreter, ["good", "good.core"], ["good"])
    assert report.imported == ("good", "good.core")
    assert report.failures == ()
    assert report.metadata_versions == {"good": "1.0"}
    assert report.ok
    assert report.verified is True
    assert report.cold_import_seconds is not None
    assert 0 < report.cold_import_seconds < 5
    assert report.layer_read_only is True
    report.raise_for_failures()
    json.dumps(report.as_dict())


def test_a_removed_submodule_names_the_rule(tmp_path: Path, interpreter: Interpreter) -> None:
    layer = make_layer(tmp_path, {"python/pandas/__init__.py": "import pandas._testing\n"})
    removed = {
        "python/pandas/_testing/__init__.py": "remove: **/_testing/**",
        "python/pandas/_testing/asserters.py": "remove: **/_testing/**",
    }
    report = check(layer, interpreter, ["pandas"], removed=removed)
    assert not report.ok
    (failure,) = report.failures
    assert failure.module == "pandas"
    assert failure.missing_path == "python/pandas/_testing/"
    assert failure.removed_by == "remove: **/_testing/**"
    with pytest.raises(VerificationError) as raised:
        report.raise_for_failures()
    message = str(raised.value)
    assert (
        "import pandas failed: ModuleNotFoundError: No module named 'pandas._testing'"
        " — python/pandas/_testing/ was removed by strip rule `remove: **/_testing/**`; add it to keep"
        in message
    )
    assert 'keep (e.g. "pandas/_testing/**")' in message
    assert raised.value.exit_code == 1


def test_a_removed_module_file_behind_a_from_import_names_the_rule(
    tmp_path: Path, interpreter: Interpreter
) -> None:
    layer = make_layer(tmp_path, {"python/pkg/__init__.py": "from . import _helpers\n"})
    removed = {"python/pkg/_helpers.py": "remove: **/_*.py"}
    (failure,) = check(layer, interpreter, ["pkg"], removed=removed).failures
    assert (failure.missing_path, failure.removed_by) == ("python/pkg/_helpers.py", "remove: **/_*.py")


def test_a_removed_data_file_read_at_import_names_the_rule(tmp_path: Path, interpreter: Interpreter) -> None:
    reader = "import os\nDESCR = open(os.path.join(os.path.dirname(__file__), 'descr', 'iris.rst')).read()\n"
    layer = make_layer(tmp_path, {"python/datasets/__init__.py": reader})
    removed = {"python/datasets/descr/iris.rst": "remove: **/*.rst"}
    (failure,) = check(layer, interpreter, ["datasets"], removed=removed).failures
    assert failure.error.startswith("FileNotFoundError")
    assert "/opt/python/datasets/descr/iris.rst" in failure.error  # shown where Lambda puts it
    assert (failure.missing_path, failure.removed_by) == (
        "python/datasets/descr/iris.rst",
        "remove: **/*.rst",
    )


def test_a_missing_module_nobody_removed_says_what_to_do(tmp_path: Path, interpreter: Interpreter) -> None:
    layer = make_layer(tmp_path, {"python/app/__init__.py": "import boto3\n"})
    (failure,) = check(layer, interpreter, ["app"]).failures
    assert failure.removed_by is None
    assert "boto3 is not in the layer; the Lambda runtime has one" in failure.message


def test_metadata_of_a_removed_dist_info_is_a_failure_naming_the_rule(
    tmp_path: Path, interpreter: Interpreter
) -> None:
    layer = make_layer(tmp_path, {**GOOD, "python/gone/__init__.py": ""})
    removed = {"python/gone_pkg-2.0.dist-info/METADATA": "remove: **/*.dist-info"}
    report = check(layer, interpreter, ["good", "gone"], ["good", "Gone.Pkg"], removed=removed)
    assert report.imported == ("good", "gone")
    assert report.metadata_versions == {"good": "1.0"}
    assert report.metadata_failures == ("Gone.Pkg",)
    (problem,) = report.metadata_problems
    assert "PackageNotFoundError" in problem.error
    assert problem.missing_path == "python/gone_pkg-2.0.dist-info/"
    assert problem.removed_by == "remove: **/*.dist-info"
    assert not report.ok
    with pytest.raises(VerificationError, match=r"importlib.metadata.version\('Gone.Pkg'\) failed"):
        report.raise_for_failures()


def test_smoke_code_runs_with_warnings_as_errors(tmp_path: Path, interpreter: Interpreter) -> None:
    smoke = "import warnings\nimport good\nwarnings.warn('old API', DeprecationWarning)\n"
    report = check(make_layer(tmp_path, GOOD), interpreter, smoke=smoke)
    assert report.imported == ("good",)  # the import results stand beside the smoke failure
    assert report.smoke_ok is False
    assert report.smoke_failure is not None
    assert report.smoke_failure.error == "DeprecationWarning: old API"
    assert "DeprecationWarning: old API" in report.smoke_output
    with pytest.raises(VerificationError, match="the smoke code failed: DeprecationWarning: old API"):
        report.raise_for_failures()


def test_smoke_code_that_works_passes_and_its_output_is_kept(
    tmp_path: Path, interpreter: Interpreter
) -> None:
    smoke = "import good\nassert good.VALUE == 42\nprint('smoke says', good.VALUE)\n"
    report = check(make_layer(tmp_path, GOOD), interpreter, smoke=smoke)
    assert report.smoke_ok is True
    assert "smoke says 42" in report.smoke_output
    assert report.ok


def test_a_check_ends_as_lambda_ends_a_runtime_with_what_was_printed_kept(
    tmp_path: Path, interpreter: Interpreter
) -> None:
    # Lambda never finalizes a runtime's interpreter (it freezes it, then kills it): an atexit handler
    # never runs there, so it must not run in the check either. What the code printed is kept, also what
    # sits in a buffer at the end: a line without its newline on stderr, and C's stdio (full-buffered on
    # a pipe), which ending the process without finalization would otherwise drop.
    lingering = "import atexit\natexit.register(print, 'an atexit handler ran')\n"
    layer = make_layer(tmp_path, {**GOOD, "python/lingering/__init__.py": lingering})
    smoke = (
        "import ctypes, sys\nimport lingering\n"
        "ctypes.CDLL(None).printf(b'printed from C\\n')\n"
        "sys.stderr.write('a line without its newline')\n"
    )
    report = check(layer, interpreter, ["lingering", "good"], smoke=smoke)
    assert report.ok
    assert report.imported == ("lingering", "good")
    assert "printed from C" in report.smoke_output
    assert "a line without its newline" in report.smoke_output
    assert "an atexit handler ran" not in report.smoke_output


def test_compiled_from_source_until_hash_based_bytecode_is_there(
    tmp_path: Path, interpreter: Interpreter
) -> None:
    layer = make_layer(tmp_path, GOOD)
    assert check(layer, interpreter).compiled_from_source == ("good", "good.core")
    # The verifying interpreter is this one, so this process's compileall writes bytecode it accepts.
    assert interpreter.version == sys.version_info[:2]
    compiled = compileall.compile_dir(
        layer / "python", quiet=1, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
    )
    assert compiled
    assert check(layer, interpreter).compiled_from_source == ()


def test_the_layer_copy_is_read_only(tmp_path: Path, interpreter: Interpreter) -> None:
    writer = "import os\nopen(os.path.join(os.path.dirname(__file__), 'cache.txt'), 'w').write('x')\n"
    layer = make_layer(tmp_path, {**GOOD, "python/writer/__init__.py": writer})
    report = check(layer, interpreter, ["good", "writer"])
    assert report.layer_read_only is True  # even as root: the check gives up the capabilities first
    (failure,) = report.failures
    assert failure.module == "writer"
    assert failure.error.startswith("PermissionError")
    assert "read-only at /opt on Lambda" in failure.message
    # Neither the write nor any bytecode reached the build tree.
    assert not (layer / "python/writer/cache.txt").exists()
    assert not list(layer.rglob("__pycache__"))
    assert os.access(layer / "python/good/core.py", os.W_OK)


def test_the_hosts_site_packages_are_not_visible(
    tmp_path: Path, interpreter: Interpreter, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.find_spec("click")
    assert spec is not None and spec.origin is not None, "click is installed in the venv running the tests"
    # Even pointed at the host's site-packages, the layer must not see them.
    monkeypatch.setenv("PYTHONPATH", str(Path(spec.origin).parents[1]))
    report = check(make_layer(tmp_path, GOOD), interpreter, ["good", "click"], ["click"])
    assert report.imported == ("good",)
    (failure,) = report.failures
    assert failure.error == "ModuleNotFoundError: No module named 'click'"
    assert report.metadata_failures == ("click",)


def test_packages_under_lib_site_packages_are_found_too(tmp_path: Path, interpreter: Interpreter) -> None:
    site = f"python/lib/python{TARGET.python_dotted}/site-packages"
    layer = make_layer(tmp_path, {f"{site}/deep/__init__.py": "", **GOOD})
    assert check(layer, interpreter, ["deep", "good"]).imported == ("deep", "good")


def test_noise_on_stdout_does_not_break_the_results(tmp_path: Path, interpreter: Interpreter) -> None:
    noisy = "import sys\nprint('no newline', end='')\nsys.stdout.close()\n"
    layer = make_layer(tmp_path, {**GOOD, "python/noisy/__init__.py": noisy})
    assert check(layer, interpreter, ["noisy", "good"]).imported == ("noisy", "good")


def test_a_crash_names_the_module_and_what_was_not_checked(tmp_path: Path, interpreter: Interpreter) -> None:
    crash = "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"
    layer = make_layer(tmp_path, {**GOOD, "python/crash/__init__.py": crash, "python/after/__init__.py": ""})
    report = check(layer, interpreter, ["good", "crash", "after"])
    assert report.imported == ("good",)
    (failure,) = report.failures
    assert failure.module == "crash"
    assert "killed by SIGSEGV" in failure.error
    assert "not checked: after" in failure.error


def test_a_hanging_import_is_stopped_at_the_timeout(tmp_path: Path, interpreter: Interpreter) -> None:
    layer = make_layer(tmp_path, {"python/slow/__init__.py": "import time\ntime.sleep(60)\n"})
    report = check(layer, interpreter, ["slow"], timeout=2)
    (failure,) = report.failures
    assert failure.module == "slow"
    assert failure.error.startswith("TimeoutError")


def test_a_module_calling_sys_exit_does_not_end_the_check(tmp_path: Path, interpreter: Interpreter) -> None:
    layer = make_layer(tmp_path, {**GOOD, "python/quitter/__init__.py": "raise SystemExit(3)\n"})
    report = check(layer, interpreter, ["quitter", "good"])
    assert report.imported == ("good",)
    assert report.failures[0].error.startswith("SystemExit")


def test_no_interpreter_means_not_run_said_plainly(tmp_path: Path) -> None:
    report = check(make_layer(tmp_path, GOOD), None, smoke="import good")
    assert not report.ran
    assert report.verified is None
    assert report.imported == ()
    assert report.smoke_ok is None
    assert "only the static audit" in report.not_run_reason
    report.raise_for_failures()  # nothing ran, so nothing failed: the caller reports it, not an error
    assert report.as_dict()["verified"] is None


def test_an_interpreter_that_does_not_fit_the_target_is_refused(
    tmp_path: Path, interpreter: Interpreter
) -> None:
    other = Target("python3.13" if TARGET.runtime != "python3.13" else "python3.12", HOST_ARCH)
    with pytest.raises(InputError, match="cannot verify"):
        check(make_layer(tmp_path, GOOD), interpreter, target=other)


def test_a_layer_without_python_folder_is_a_verification_error(
    tmp_path: Path, interpreter: Interpreter
) -> None:
    layer = make_layer(tmp_path, {"good/__init__.py": ""})
    with pytest.raises(VerificationError, match="no python/ folder"):
        check(layer, interpreter)


def test_module_names_are_validated(tmp_path: Path, interpreter: Interpreter) -> None:
    with pytest.raises(InputError, match="not a dotted module name"):
        check(make_layer(tmp_path, GOOD), interpreter, ["good; import os"])


def test_the_copy_is_read_only_and_removed_afterwards(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    layer = make_layer(tmp_path / "layer", GOOD)
    with read_only_copy(layer, scratch=scratch) as sandbox:
        assert sandbox.layer.is_relative_to(scratch)
        assert (sandbox.layer / "python/good/core.py").read_text() == "VALUE = 42\n"
        assert not os.stat(sandbox.layer / "python/good").st_mode & 0o222
        assert not os.stat(sandbox.layer / "python/good/core.py").st_mode & 0o222
    assert list(scratch.iterdir()) == []


def writer_refused_in_place(layer: Path, interpreter: Interpreter, *, sealed: bool = False) -> VerifyReport:
    """A check in place of `good` and `writer`, whose import writes beside itself: it must be refused."""
    report = verify_layer(
        layer,
        TARGET,
        modules=["good", "writer"],
        distributions=["good"],
        interpreter=interpreter,
        in_place=True,
        sealed=sealed,
    )
    assert report.imported == ("good",)
    assert report.failures[0].error.startswith("PermissionError")
    return report


def test_a_check_in_place_gives_the_same_answers_and_leaves_the_tree_removable(
    tmp_path: Path, interpreter: Interpreter
) -> None:
    writer = "import os\nopen(os.path.join(os.path.dirname(__file__), '__init__.py'), 'w').write('')\n"
    layer = make_layer(tmp_path / "build" / "layer", {**GOOD, "python/writer/__init__.py": writer})
    report = writer_refused_in_place(layer, interpreter)
    assert report.metadata_versions == {"good": "1.0"}
    # The module could not truncate its own file; the task and tmp folders are gone.
    assert (layer / "python/writer/__init__.py").read_text() == writer
    assert sorted(path.name for path in (tmp_path / "build").iterdir()) == ["layer"]
    # The folders are writable again (the build removes its tree), the files stay read-only.
    assert os.stat(layer / "python/good").st_mode & 0o200
    assert not os.stat(layer / "python/good/core.py").st_mode & 0o222
    shutil.rmtree(layer)


def test_a_sealed_tree_stays_read_only_through_every_check_and_is_removable_after(
    tmp_path: Path, interpreter: Interpreter
) -> None:
    # A build checks a sealed tree in place once per group of modules: no check may give the folders
    # their write bits back before the last one.
    writer = "import os\nopen(os.path.join(os.path.dirname(__file__), 'new.txt'), 'w').write('x')\n"
    layer = make_layer(tmp_path / "build" / "layer", {**GOOD, "python/writer/__init__.py": writer})
    with sealed(layer):
        assert not os.stat(layer / "python/good/core.py").st_mode & 0o222
        for _ in range(2):
            writer_refused_in_place(layer, interpreter, sealed=True)
            assert not os.stat(layer / "python/writer").st_mode & 0o222
        assert not (layer / "python/writer/new.txt").exists()
    assert os.stat(layer / "python/writer").st_mode & 0o200
    assert not os.stat(layer / "python/good/core.py").st_mode & 0o222
    shutil.rmtree(layer)


def test_a_sealed_tree_gets_its_folders_back_when_the_block_fails(tmp_path: Path) -> None:
    layer = make_layer(tmp_path / "layer", GOOD)
    with pytest.raises(RuntimeError), sealed(layer):
        assert not os.stat(layer / "python/good").st_mode & 0o222
        raise RuntimeError("a size limit, a refused license")
    assert os.stat(layer / "python/good").st_mode & 0o200


def test_a_check_in_place_of_a_relative_path_finds_the_layer(
    tmp_path: Path, interpreter: Interpreter, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_layer(tmp_path / "layer", GOOD)
    monkeypatch.chdir(tmp_path)
    report = verify_layer(
        Path("layer"),
        TARGET,
        modules=["good"],
        distributions=["good"],
        interpreter=interpreter,
        in_place=True,
    )
    assert report.ok and report.imported == ("good",)


def test_an_interpreter_that_dies_at_once_is_a_setup_failure(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "python3"
    make_layer(tmp_path, {"bin/python3": "#!/bin/sh\necho 'fatal: no stdlib' >&2\nexit 1\n"})
    fake.chmod(0o755)
    broken = Interpreter(fake, TARGET.python_version, TARGET.machine, "cpython", "--python")
    report = check(make_layer(tmp_path / "layer", GOOD), broken)
    (failure,) = report.failures
    assert failure.stage == "setup"
    assert failure.message == (
        "the check could not start: the interpreter exited with status 1: fatal: no stdlib; not checked: good"
    )


def test_the_copy_goes_to_memory_when_it_fits(tmp_path: Path) -> None:
    if _memory_scratch(1) is None:
        pytest.skip("no usable /dev/shm here")
    with read_only_copy(make_layer(tmp_path, GOOD)) as sandbox:
        assert sandbox.layer.is_relative_to("/dev/shm")
    assert _memory_scratch(10**15) is None  # a petabyte layer goes to disk


@pytest.mark.parametrize("dotted", ["3.9", "3.12", "3.13"])
def test_other_runtimes_verify_with_their_own_interpreter(tmp_path: Path, dotted: str) -> None:
    """The bootstrap runs on every runtime's Python, 3.9 included."""
    found = sorted(PYENV_VERSIONS.glob(f"{dotted}.*/bin/python{dotted}"))
    if not found:
        pytest.skip(f"no CPython {dotted} under {PYENV_VERSIONS}")
    other = probe(found[-1])
    assert other is not None
    layer = make_layer(tmp_path, {**GOOD, "python/broken/__init__.py": "import broken._gone\n"})
    removed = {"python/broken/_gone.py": "remove: **/_gone.py"}
    report = check(
        layer, other, ["good", "broken"], ["good"], removed=removed, target=Target(f"python{dotted}")
    )
    assert report.imported == ("good",)
    assert report.metadata_versions == {"good": "1.0"}
    assert report.failures[0].removed_by == "remove: **/_gone.py"
    assert report.compiled_from_source == ("broken", "good", "good.core")
