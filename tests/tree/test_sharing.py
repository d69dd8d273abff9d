"""Sharing bundled libraries between `.libs` folders: real gcc-built libraries and extension modules, in
wheels served on 127.0.0.1, built into a layer whose verification loads them with the real loader."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from layerforge.build import build
from layerforge.errors import RecipeError, VerificationError
from layerforge.recipe import recipe_from_mapping
from layerforge.tree.sharing import LoadProof, find_shared_copies, load_proof
from tests.support.index import LocalIndex
from tests.support.layertree import layer_tree
from tests.test_build import options, zip_names

TAG = "cp311-cp311-manylinux2014_x86_64"
SUFFIX = ".cpython-311-x86_64-linux-gnu.so"
LIBRARY = "libgf-0a1b2c3d.so.5"  # auditwheel's naming: the name is also the SONAME

LIBRARY_SOURCE = "int gf_answer(void) { return 42; }\n"
MODULE_SOURCE = """#include <Python.h>
int gf_answer(void);
static PyObject *answer(PyObject *self, PyObject *args) { return PyLong_FromLong(gf_answer()); }
static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "%(name)s", NULL, -1, methods};
PyMODINIT_FUNC PyInit_%(name)s(void) { return PyModule_Create(&module); }
"""


def _gcc(folder: Path, source: str, out: Path, *flags: str) -> bytes:
    (folder / "src.c").write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(out), str(folder / "src.c"), *flags], check=True)
    return out.read_bytes()


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    include = sysconfig.get_paths()["include"]
    if shutil.which("gcc") is None or not (Path(include) / "Python.h").exists():
        pytest.skip("gcc and Python's headers are needed to build extension modules")
    if sys.version_info[:2] != (3, 11):
        pytest.skip("the extension modules are built for the python3.11 target")
    folder = tmp_path_factory.mktemp("sharing")
    library = folder / LIBRARY
    built = {"library": _gcc(folder, LIBRARY_SOURCE, library, f"-Wl,-soname,{LIBRARY}")}
    for package in ("numpyish", "scipyish"):
        built[package] = _gcc(
            folder,
            MODULE_SOURCE % {"name": "_core"},
            folder / f"{package}_core.so",
            f"-I{include}",
            f"-L{folder}",
            f"-l:{LIBRARY}",
            f"-Wl,-rpath,$ORIGIN/../{package}.libs",
        )
    built["other_library"] = _gcc(
        folder, LIBRARY_SOURCE.replace("42", "43"), folder / "other.so", f"-Wl,-soname,{LIBRARY}"
    )
    return built


def _publish(index: LocalIndex, native: dict[str, bytes], *, scipyish_init: str, same: bool = True) -> None:
    index.add_wheel(
        "numpyish",
        "1.0",
        TAG,
        files={
            "numpyish/__init__.py": "from numpyish._core import answer\n",
            f"numpyish/_core{SUFFIX}": native["numpyish"],
            f"numpyish.libs/{LIBRARY}": native["library"],
        },
    )
    index.add_wheel(
        "scipyish",
        "1.0",
        TAG,
        files={
            "scipyish/__init__.py": scipyish_init,
            f"scipyish/_core{SUFFIX}": native["scipyish"],
            f"scipyish.libs/{LIBRARY}": native["library" if same else "other_library"],
        },
        requires=["numpyish"],
    )


SHARED = {"shared_libraries": {"scipyish.libs": "numpyish.libs"}}


def test_an_identical_copy_is_left_out_and_every_module_that_needs_it_loads(
    local_index: LocalIndex, native: dict[str, bytes], tmp_path: Path
) -> None:
    _publish(local_index, native, scipyish_init="import numpyish\nfrom scipyish._core import answer\n")

    result = build(options(local_index, tmp_path, name="sci", requirements=["scipyish"], strip=SHARED))

    names = zip_names(result.zip_path)
    assert f"python/numpyish.libs/{LIBRARY}" in names
    assert f"python/scipyish.libs/{LIBRARY}" not in names
    rule = "recipe:shared_libraries:scipyish.libs=numpyish.libs"
    assert result.manifest["removed"]["by_rule"][rule] == len(native["library"])
    assert result.manifest["verified"] is True
    assert {"numpyish._core", "scipyish._core"} <= set(result.manifest["verification"]["imported"])


def test_a_wrong_load_order_fails_verification_and_leaves_no_zip(
    local_index: LocalIndex, native: dict[str, bytes], tmp_path: Path
) -> None:
    # scipyish loads its extension module without importing numpyish first: its copy was needed after all.
    _publish(local_index, native, scipyish_init="from scipyish._core import answer\n")

    with pytest.raises(VerificationError) as raised:
        build(options(local_index, tmp_path, name="sci", requirements=["scipyish"], strip=SHARED))

    assert "scipyish" in str(raised.value) and LIBRARY in str(raised.value)
    assert not list((tmp_path / "out").glob("*.zip"))


def test_copies_that_differ_are_both_kept(
    local_index: LocalIndex, native: dict[str, bytes], tmp_path: Path
) -> None:
    _publish(
        local_index, native, scipyish_init="import numpyish\nfrom scipyish._core import answer\n", same=False
    )

    result = build(options(local_index, tmp_path, name="sci", requirements=["scipyish"], strip=SHARED))

    names = zip_names(result.zip_path)
    assert {f"python/numpyish.libs/{LIBRARY}", f"python/scipyish.libs/{LIBRARY}"} <= names
    assert not any("shared_libraries" in rule for rule in result.manifest["removed"]["by_rule"])


def test_a_copy_whose_soname_is_not_its_name_is_kept(native: dict[str, bytes], tmp_path: Path) -> None:
    # The loader matches the SONAME: under another file name the kept copy would not answer for it.
    renamed = "libgf-renamed.so.5"
    tree = layer_tree(
        tmp_path,
        {f"python/a.libs/{renamed}": native["library"], f"python/b.libs/{renamed}": native["library"]},
    )
    assert find_shared_copies(tree, {"b.libs": "a.libs"}) == ()


def test_the_modules_whose_search_path_leads_to_a_dropped_copy_are_found(
    native: dict[str, bytes], tmp_path: Path
) -> None:
    # As auditwheel lays them out: a bundled BLAS that needs the library and finds it beside itself
    # ($ORIGIN), and extension modules that find the BLAS (or the library) through ../../<pkg>.libs.
    folder = tmp_path / "build"
    folder.mkdir()
    (folder / LIBRARY).write_bytes(native["library"])
    blas = _gcc(
        folder,
        "int gf_answer(void); int blas_answer(void) { return gf_answer(); }\n",
        folder / "libblas-9f.so",
        "-Wl,-soname,libblas-9f.so",
        f"-L{folder}",
        f"-l:{LIBRARY}",
        "-Wl,-rpath,$ORIGIN",
    )

    def module(needs: str, package: str) -> bytes:
        # Each calls into what it links, or the linker (--as-needed) would drop the NEEDED entry.
        call = "blas_answer" if needs.startswith("libblas") else "gf_answer"
        return _gcc(
            folder,
            f"int {call}(void); int f(void) {{ return {call}(); }}\n",
            folder / "m.so",
            f"-L{folder}",
            f"-l:{needs}",
            f"-Wl,-rpath,$ORIGIN/../../{package}.libs",
        )

    tree = layer_tree(
        tmp_path / "layer",
        {
            f"python/a.libs/{LIBRARY}": native["library"],
            f"python/b.libs/{LIBRARY}": native["library"],
            "python/b.libs/libblas-9f.so": blas,
            # Through the BLAS, which would look for the library in b.libs, where it no longer is.
            f"python/b/linalg/_flapack{SUFFIX}": module("libblas-9f.so", "b"),
            # Directly, looking in b.libs.
            f"python/b/special/_ufuncs{SUFFIX}": module(LIBRARY, "b"),
            # Directly too, but from a package that finds its own copy in a.libs.
            f"python/a/core/_umath{SUFFIX}": module(LIBRARY, "a"),
            # Names the library too (as its own SONAME) without needing it.
            f"python/b/_unrelated{SUFFIX}": native["other_library"],
        },
    )
    copies = find_shared_copies(tree, {"b.libs": "a.libs"})

    assert [copy.dropped for copy in copies] == [f"python/b.libs/{LIBRARY}"]
    proof = load_proof(tree, copies)
    assert proof == LoadProof(alone=(("b.linalg._flapack", "b.special._ufuncs"),), also=("a.core._umath",))
    assert proof.order(["a", "b"]) == (
        ["b.linalg._flapack", "b.special._ufuncs", "a", "b", "a.core._umath"],
        [],
    )


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"../x.libs": "numpy.libs"}, "must be one top-level folder's name"),
        ({"scipy.libs": "a/b"}, "must be one top-level folder's name"),
        ({"scipy.libs": "scipy.libs"}, "cannot share its libraries with itself"),
        ({"scipy.libs": "numpy.libs", "numpy.libs": "other.libs"}, "also drops its own copies"),
        ({"scipy.libs": 3}, "expected a folder name"),
    ],
)
def test_bad_shared_library_tables_are_refused(table: dict[str, object], problem: str) -> None:
    raw = {"name": "x", "requirements": ["scipy"], "strip": {"shared_libraries": table}}
    with pytest.raises(RecipeError, match=problem):
        recipe_from_mapping(raw, "x.toml", "x")


def test_the_command_line_says_what_was_left_out_and_what_stripping_saved(
    local_index: LocalIndex, native: dict[str, bytes], tmp_path: Path
) -> None:
    from tests.cli.test_cli import run

    _publish(local_index, native, scipyish_init="import numpyish\nfrom scipyish._core import answer\n")
    recipe = tmp_path / "sci.toml"
    recipe.write_text(
        'name = "sci"\nrequirements = ["scipyish"]\n[strip]\nprofile = "aggressive"\n'
        '[strip.shared_libraries]\n"scipyish.libs" = "numpyish.libs"\n'
    )

    completed = run(
        "build", str(recipe), "--index-url", local_index.url, "--cache-dir", str(tmp_path / "c"), cwd=tmp_path
    )

    assert completed.returncode == 0, completed.stderr
    said = " ".join((completed.stdout + completed.stderr).split())  # rich wraps long lines
    assert (
        f"left out python/scipyish.libs/{LIBRARY}: python/numpyish.libs/{LIBRARY} is the same library" in said
    )
    # gcc leaves .symtab in all three objects still in the layer; the aggressive profile cuts it out.
    assert "binaries: 3 shared objects stripped" in said


def test_verify_zip_with_the_recipe_loads_what_looks_for_a_shared_copy_first(
    local_index: LocalIndex, native: dict[str, bytes], tmp_path: Path
) -> None:
    import dataclasses

    from layerforge.target import Target
    from layerforge.verify.from_zip import verify_zip

    # A layer built without verification from a package that loads its extension before the other
    # package: the import check alone passes (numpyish, first by name, loads the library for it).
    _publish(local_index, native, scipyish_init="from scipyish._core import answer\n")
    built = build(
        dataclasses.replace(
            options(local_index, tmp_path, name="sci", requirements=["scipyish"], strip=SHARED), verify=False
        )
    )
    recipe = recipe_from_mapping(
        {"name": "sci", "requirements": ["scipyish"], "strip": SHARED}, "sci.toml", "sci"
    )
    target = Target("python3.11", "x86_64")

    plain = verify_zip(built.zip_path, target)
    with_recipe = verify_zip(built.zip_path, target, recipe=recipe)

    assert plain.ok and plain.modules[0] == "numpyish"
    assert with_recipe.modules[0] == "scipyish._core"
    assert not with_recipe.ok
    # Once numpyish is imported, later in the same check, scipyish itself imports: only the first fails.
    assert [failure.module for failure in with_recipe.verify.failures] == ["scipyish._core"]
    assert LIBRARY in with_recipe.verify.failures[0].error
