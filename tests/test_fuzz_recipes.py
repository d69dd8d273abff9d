"""Property-based fuzzing of the recipe loader and the lock reader: malformed input is bad input.

Every generated file must either load, or be refused with an `InputError` (exit code 2) whose message
is not empty and names the file. Any other exception is a failure: on the command line it would be an
"internal error" with exit code 1, or a traceback.

Generated: TOML documents built from the recipe's own keys, near misses of them and arbitrary keys,
with values of every TOML type (wrong types, huge and unicode strings, bad requirement specifiers,
NaN and infinite numbers, dates); valid recipes mutated character by character; arbitrary text and
bytes; requirements files; for the lock reader, arbitrary JSON and mutations of a valid lock. A sample
of the refused recipes and locks also goes through the real CLI in a subprocess, to prove that no
traceback reaches the terminal and that the exit code is 2.

The number of examples each property ran is printed (run with `-s` to see it) and recorded as a
junit property, `fuzz_examples`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from layerforge.errors import InputError
from layerforge.recipe import Recipe, load_recipe
from layerforge.resolve.lock import Lock, read_lock
from layerforge.resolve.locked import LockedPackage

EXAMPLES = 1000
CLI_EXAMPLES = 30
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

# ---- the vocabulary: legal keys, their near misses, and values that are almost right ---------------------

TOP_KEYS = ["name", "description", "requirements", "runtime", "arch", "exclude", "strip", "verify", "limits"]
STRIP_KEYS = ["profile", "remove", "keep", "binaries", "bytecode", "packages"]
VERIFY_KEYS = ["imports", "skip", "smoke"]
LIMIT_KEYS = ["unzipped_mb", "unzipped_bytes"]
NEAR_MISSES = [
    "nmae",
    "Name",
    "requirement",
    "Requirements",
    "requirments",
    "runtme",
    "architecture",
    "archs",
    "excludes",
    "strp",
    "Strip",
    "verfy",
    "limit",
    "profle",
    "bytecodes",
    "binary",
    "package",
    "import",
    "skips",
    "smoke_test",
    "unzipped",
    "unzipped_MB",
    "unzipped-mb",
    "remove ",
    " keep",
    "",
]
REQUIREMENTS = [
    "pandas",
    "numpy>=1.26,<2.3",
    "requests==2.32.3",
    "scikit-learn[all]",
    "boto3; python_version >= '3.8'",
    "pkg @ https://example.invalid/pkg-1.0-py3-none-any.whl",
    "pkg @ file:///etc/passwd",
    "-e .",
    "--index-url https://evil.invalid",
    "numpy[",
    ">=1.0",
    "pandas==",
    "pandas===1",
    "a b c",
    "name;;",
    "numpy>=1.0 --hash=sha256:abc",
    "",
    " ",
    "\t",
    "\u00e9t\u00e9",
    "x" * 5000,
    "-r /etc/passwd",
    "üñí==1",
    "pkg (>=1.0)",
    "pkg>=1.0,",
    "pkg~=1",
    "pkg[extra]>=1; sys_platform == 'linux'",
    "../../etc/passwd",
]
CHOICES = [
    "python3.11",
    "python3.9",
    "python3.14",
    "python3.8",
    "python2.7",
    "Python3.11",
    "python3.11 ",
    "3.11",
    "x86_64",
    "arm64",
    "aarch64",
    "amd64",
    "X86_64",
    "safe",
    "aggressive",
    "none",
    "agressive",
    "Safe",
    "compile",
    "sourceless",
    "complie",
    "",
    "**/tests",
    "/abs/**",
    "../up/**",
    "a\\b",
    "**",
    "sklearn",
]

SURROGATES: tuple[Literal["Cs"]] = ("Cs",)  # lone surrogates cannot be written as UTF-8 at all
no_surrogates = st.characters(exclude_categories=SURROGATES)
small_text = st.text(alphabet=no_surrogates, max_size=40)
huge_text = st.builds(
    lambda char, size: char * size,
    st.characters(exclude_categories=SURROGATES, min_codepoint=32),
    st.sampled_from([300, 5_000, 100_000, 600_000]),
)
strings = st.one_of(
    small_text, st.sampled_from(REQUIREMENTS), st.sampled_from(CHOICES), st.sampled_from(TOP_KEYS), huge_text
)
numbers = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1, 220, 10**18, 1e308, -0.0, math.inf, -math.inf, math.nan, 1e-300]),
)
scalars = st.one_of(
    strings,
    numbers,
    st.booleans(),
    st.datetimes(timezones=st.none() | st.timezones()),
    st.dates(),
    st.times(),
)
keys = st.one_of(st.sampled_from(TOP_KEYS + STRIP_KEYS + VERIFY_KEYS + LIMIT_KEYS + NEAR_MISSES), small_text)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)


GOOD = {
    "name": st.sampled_from(["sklearn", "my-layer", "a_b", "L1"]),
    "description": small_text,
    "requirements": st.lists(
        st.sampled_from(["pandas", "numpy>=1.26,<2.3", "requests==2.32.3", "scikit-learn[all]", "a"]),
        min_size=1,
        max_size=3,
    ),
    "runtime": st.sampled_from(["python3.9", "python3.11", "python3.12", "python3.14"]),
    "arch": st.sampled_from(["x86_64", "arm64"]),
    "exclude": st.lists(st.sampled_from(["boto3", "botocore", "Boto_3"]), max_size=2),
}
GOOD_GLOBS = st.lists(st.sampled_from(["**/tests", "**/*.md", "pkg/data/**", "*.pyi"]), max_size=3)
GOOD_SECTIONS = {
    "strip": st.fixed_dictionaries(
        {},
        optional={
            "profile": st.sampled_from(["safe", "aggressive", "none"]),
            "remove": GOOD_GLOBS,
            "keep": GOOD_GLOBS,
            "binaries": st.booleans(),
            "bytecode": st.sampled_from(["compile", "sourceless", "none"]),
            "packages": st.dictionaries(
                st.sampled_from(["pandas", "NumPy", "scikit_learn"]),
                st.fixed_dictionaries({}, optional={"remove": GOOD_GLOBS, "keep": GOOD_GLOBS}),
                max_size=2,
            ),
        },
    ),
    "verify": st.fixed_dictionaries(
        {}, optional={"imports": st.lists(st.sampled_from(["pandas", "numpy.linalg"])), "smoke": small_text}
    ),
    "limits": st.one_of(
        st.just({}),
        st.fixed_dictionaries({"unzipped_mb": st.one_of(st.integers(1, 10**6), st.floats(0.5, 1e6))}),
        st.fixed_dictionaries({"unzipped_bytes": st.integers(1, 10**12)}),
    ),
}
SECTION_KEYS = {"strip": STRIP_KEYS, "verify": VERIFY_KEYS, "limits": LIMIT_KEYS}
good_recipes = st.fixed_dictionaries(
    {"requirements": GOOD["requirements"]},
    optional={**{k: v for k, v in GOOD.items() if k != "requirements"}, **GOOD_SECTIONS},
)
# Values that are almost right, or wrong in type, size or content.
bad_values = st.one_of(
    values,
    strings,
    numbers,
    st.sampled_from(CHOICES),
    st.lists(
        st.one_of(st.sampled_from(REQUIREMENTS), st.sampled_from(CHOICES), strings), min_size=1, max_size=4
    ),
)


@st.composite
def recipes(draw: st.DrawFn) -> dict[str, Any]:
    """A valid recipe with a few things wrong: so that each check, deep in the file, gets its turn."""
    doc: dict[str, Any] = draw(good_recipes)
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["top", "section", "list-item", "add-key", "delete"]))
        if action == "top":
            doc[draw(st.sampled_from(TOP_KEYS))] = draw(bad_values)
        elif action == "section":
            section = draw(st.sampled_from(sorted(SECTION_KEYS)))
            table = doc.setdefault(section, {})
            if isinstance(table, dict):
                key = draw(st.sampled_from([*SECTION_KEYS[section], *NEAR_MISSES, "packages"]))
                table[key] = draw(
                    bad_values if key != "packages" else st.dictionaries(keys, values, max_size=2)
                )
        elif action == "list-item":
            key = draw(st.sampled_from(["requirements", "exclude"]))
            items = doc.setdefault(key, [])
            if isinstance(items, list):
                items.insert(draw(st.integers(0, len(items))), draw(bad_values))
        elif action == "add-key":
            doc[draw(keys)] = draw(values)
        elif doc:
            doc.pop(draw(st.sampled_from(sorted(doc))))
    return doc


recipe_documents = st.one_of(recipes(), recipes(), recipes(), st.dictionaries(keys, values, max_size=8))

# ---- a TOML writer (the standard library only reads TOML) ----------------------------------------------


def toml_string(text: str) -> str:
    # JSON's escapes are TOML's basic-string escapes; TOML also wants DEL escaped.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def toml_document(table: dict[str, Any]) -> str:
    """Plain keys first, then one `[section]` per table (its own tables inline): the layout people write."""
    lines = [f"{toml_string(k)} = {toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for key, value in table.items():
        if isinstance(value, dict):
            lines.append(f"\n[{toml_string(key)}]")
            lines += [f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()]
    return "\n".join(lines) + "\n"


VALID_RECIPE = """\
name = "demo"
description = "a layer"
requirements = ["pandas>=2", "numpy<2.3"]
runtime = "python3.11"
arch = "x86_64"
exclude = ["boto3"]

[strip]
profile = "safe"
remove = ["**/*.md"]
keep = ["demo/data/**"]
binaries = true
bytecode = "compile"

[strip.packages.pandas]
remove = ["pandas/io/clipboard/**"]

[verify]
imports = ["pandas"]
smoke = \"\"\"
import pandas
\"\"\"

[limits]
unzipped_mb = 220
"""


@st.composite
def mutated(draw: st.DrawFn, original: str) -> str:
    """`original` with a few characters inserted, deleted or replaced: near-miss syntax."""
    text = list(original)
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        char = draw(
            st.one_of(
                st.sampled_from(list("[]{}=\"'\\,.#\n \t0")), st.characters(exclude_categories=SURROGATES)
            )
        )
        if action == "insert":
            text.insert(position, char)
        elif text and position < len(text):
            if action == "delete":
                del text[position]
            else:
                text[position] = char
    return "".join(text)


# ---- the property --------------------------------------------------------------------------------------


def names_the_file(message: str, path: Path, *others: Path) -> bool:
    """The message names the file, or a file it includes (`-r other.txt` names other.txt at fault)."""
    return any(str(candidate) in message for candidate in (path, *others))


def included_files(path: Path) -> list[Path]:
    text = path.read_text("utf-8", "replace")
    return [
        path.parent / line.split(None, 1)[1].strip()
        for line in text.splitlines()
        if line.startswith(("-r ", "--requirement ")) and len(line.split(None, 1)) == 2
    ]


def check_loader(load: Callable[[Path], object], path: Path, counts: Counter[str], *others: Path) -> None:
    """`load(path)` returns, or raises an InputError that names the file; anything else propagates."""
    try:
        load(path)
    except InputError as error:
        assert error.exit_code == 2
        assert error.message.strip(), "an empty error message"
        assert names_the_file(error.message, path, *others), f"{path} is not named in {error.message!r}"
        counts["refused"] += 1
    else:
        counts["loaded"] += 1
    counts["examples"] += 1


def report(record_property: Callable[[str, object], None], name: str, counts: Counter[str]) -> None:
    outcome = f"{counts['loaded']} loaded, {counts['refused']} refused"
    print(f"\nfuzz {name}: {counts['examples']} examples ({outcome})")
    record_property("fuzz_examples", dict(counts))


def load_any_recipe(path: Path) -> Recipe:
    return load_recipe(str(path))


@pytest.fixture()
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def test_generated_toml_recipes_load_or_are_refused_as_bad_input(
    workdir: Path, record_property: Callable[[str, object], None]
) -> None:
    counts: Counter[str] = Counter()
    path = workdir / "recipe.toml"

    @FUZZ
    @given(document=recipe_documents)
    def property_(document: dict[str, Any]) -> None:
        path.write_text(toml_document(document), encoding="utf-8")
        check_loader(load_any_recipe, path, counts)

    property_()
    report(record_property, "toml recipes", counts)
    assert counts["examples"] >= EXAMPLES and counts["loaded"] > 0 and counts["refused"] > 0


def test_mutated_text_and_bytes_as_recipes_load_or_are_refused_as_bad_input(
    workdir: Path, record_property: Callable[[str, object], None]
) -> None:
    counts: Counter[str] = Counter()
    path = workdir / "mutated.toml"

    @FUZZ
    @given(
        content=st.one_of(
            mutated(VALID_RECIPE),
            mutated(VALID_RECIPE),
            st.text(alphabet=no_surrogates, max_size=300).map(str.encode),
            st.binary(max_size=300),
            st.sampled_from(
                [b"", b"\xff\xfe", b"\x00" * 10, VALID_RECIPE.encode("utf-16"), b"a" * 1_000_001]
            ),
        )
    )
    def property_(content: str | bytes) -> None:
        path.write_bytes(content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content)
        check_loader(load_any_recipe, path, counts)

    property_()
    report(record_property, "mutated recipes", counts)
    assert counts["examples"] >= EXAMPLES and counts["loaded"] > 0 and counts["refused"] > 0


REQUIREMENT_LINES = [
    *REQUIREMENTS,
    "# a comment",
    "pandas  # trailing comment",
    "numpy \\",
    "-r other.txt",
    "-r requirements.txt",
    "--requirement missing.txt",
    "-c constraints.txt",
    "--index-url https://user:pw@x.invalid/simple",
    "requests==2.32.3 --hash=sha256:0123",
    "-r /etc/passwd",
    "-r",
    "\\",
]


def test_generated_requirements_files_load_or_are_refused_as_bad_input(
    workdir: Path, record_property: Callable[[str, object], None]
) -> None:
    counts: Counter[str] = Counter()
    path = workdir / "requirements.txt"
    (workdir / "other.txt").write_text("pandas\nnumpy>=1\n", encoding="utf-8")

    @FUZZ
    @given(
        lines=st.lists(st.one_of(st.sampled_from(REQUIREMENT_LINES), small_text), max_size=8),
        newline=st.sampled_from(["\n", "\r\n", "\r"]),
    )
    def property_(lines: list[str], newline: str) -> None:
        path.write_bytes(newline.join(lines).encode("utf-8"))
        check_loader(load_any_recipe, path, counts, *included_files(path))

    property_()
    report(record_property, "requirements files", counts)
    assert counts["examples"] >= EXAMPLES and counts["loaded"] > 0 and counts["refused"] > 0


# ---- the lock reader -----------------------------------------------------------------------------------

SHA = "ab" * 32


def valid_lock() -> dict[str, Any]:
    packages = (
        LockedPackage(
            "demo", "1.0", "demo-1.0-py3-none-any.whl", "https://example.invalid/demo.whl", SHA, True
        ),
        LockedPackage(
            "fastlib",
            "1.0",
            "fastlib-1.0-cp311-cp311-manylinux2014_x86_64.whl",
            "http://127.0.0.1:1/files/fastlib.whl",
            "cd" * 32,
        ),
    )
    return Lock(
        "demo", "python3.11", "x86_64", ("demo",), "https://example.invalid/simple/", packages
    ).as_dict()


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(
        ["python3.11", "x86_64", "arm64", SHA, "x.whl", "../x.whl", "ftp://x", "http://", "http://[::1"]
    ),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=15,
)
LOCK_KEYS = [
    "schema_version",
    "recipe",
    "runtime",
    "arch",
    "requirements",
    "exclude",
    "index_url",
    "lock_hash",
    "packages",
    "notes",
    "name",
    "version",
    "wheel",
    "url",
    "sha256",
    "requested",
]


@st.composite
def mutated_locks(draw: st.DrawFn) -> Any:
    """A valid lock with a few of its values replaced, removed or added, at any depth."""
    lock = valid_lock()
    for _ in range(draw(st.integers(1, 4))):
        container: Any = lock
        path = draw(st.lists(st.sampled_from([*LOCK_KEYS, 0, 1]), min_size=1, max_size=3))
        for step in path[:-1]:
            in_dict = isinstance(container, dict) and step in container
            in_list = isinstance(container, list) and isinstance(step, int) and step < len(container)
            if (in_dict and isinstance(container[step], dict | list)) or in_list:
                container = container[step]
        last = path[-1]
        action = draw(st.sampled_from(["set", "delete"]))
        if isinstance(container, dict) and isinstance(last, str):
            if action == "delete":
                container.pop(last, None)
            else:
                container[last] = draw(json_values)
        elif isinstance(container, list) and isinstance(last, int) and last < len(container):
            if action == "delete":
                del container[last]
            else:
                container[last] = draw(json_values)
    return lock


def test_generated_locks_load_or_are_refused_as_bad_input(
    workdir: Path, record_property: Callable[[str, object], None]
) -> None:
    counts: Counter[str] = Counter()
    path = workdir / "demo.lock.json"
    assert isinstance(read_lock(_write_json(path, valid_lock())), Lock)  # the seed itself loads

    @FUZZ
    @given(
        content=st.one_of(
            mutated_locks(),
            mutated_locks(),
            json_values,
            st.dictionaries(st.sampled_from(LOCK_KEYS), json_values, max_size=8),
            st.binary(max_size=200),
            st.sampled_from(
                [b"[" * 100_000, b'{"a": ' * 50_000, b"1" * 5000, b"\xef\xbb\xbf{}", b"NaN", b""]
            ),
        )
    )
    def property_(content: Any) -> None:
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            _write_json(path, content)
        check_loader(read_lock, path, counts)

    property_()
    report(record_property, "locks", counts)
    assert counts["examples"] >= EXAMPLES and counts["loaded"] > 0 and counts["refused"] > 0


def _write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8", errors="surrogatepass")
    return path


# ---- the real command line, in a subprocess ------------------------------------------------------------


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAYERFORGE_", "PIP_"))}
    env["LAYERFORGE_CACHE_DIR"] = str(cwd / "cache")
    return subprocess.run(
        [sys.executable, "-m", "layerforge", *args],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
        check=False,
        cwd=cwd,
        env=env,
    )


# Nothing may be resolved or downloaded: a recipe that loads would go to this closed port and fail there.
CLOSED_INDEX = "http://127.0.0.1:9/simple/"
CLI = settings(FUZZ, max_examples=CLI_EXAMPLES)


def assert_bad_input(completed: subprocess.CompletedProcess[str], path: Path, json_mode: bool) -> None:
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr + completed.stdout
    assert "internal error" not in completed.stderr
    assert names_the_file(completed.stderr, path) or names_the_file(completed.stderr.replace("\n", ""), path)
    if json_mode:
        payload = json.loads(completed.stdout)
        assert payload["exit_code"] == 2 and payload["error"]
    else:
        assert completed.stdout == ""


def run_sample(
    workdir: Path, samples: list[tuple[bytes, bool]], suffix: str, args: Callable[[Path], list[str]]
) -> int:
    """Each refused input through `python -m layerforge`, eight processes at a time; how many ran."""

    def one(numbered: tuple[int, tuple[bytes, bool]]) -> None:
        number, (content, json_mode) = numbered
        path = workdir / f"cli-{number}{suffix}"
        path.write_bytes(content)
        completed = run_cli(*args(path), *(["--json"] if json_mode else []), cwd=workdir)
        assert_bad_input(completed, path, json_mode)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, enumerate(samples)))
    return len(samples)


def test_refused_recipes_exit_2_without_a_traceback_on_the_command_line(
    workdir: Path, record_property: Callable[[str, object], None]
) -> None:
    path = workdir / "cli-recipe.toml"
    samples: list[tuple[bytes, bool]] = []

    @CLI
    @given(
        content=st.one_of(recipe_documents.map(toml_document), mutated(VALID_RECIPE)),
        json_mode=st.booleans(),
    )
    def collect(content: str, json_mode: bool) -> None:
        path.write_text(content, encoding="utf-8")
        try:
            load_recipe(str(path))
        except InputError:
            samples.append((content.encode("utf-8"), json_mode))
        else:
            assume(False)  # only bad input here: a good recipe would start a build

    collect()
    ran = run_sample(
        workdir,
        samples,
        ".toml",
        lambda recipe: ["build", str(recipe), "--index-url", CLOSED_INDEX, "--out", str(workdir / "out")],
    )
    report(record_property, "recipes through the CLI", Counter(examples=ran, refused=ran))
    assert ran >= CLI_EXAMPLES // 2


def test_refused_locks_exit_2_without_a_traceback_on_the_command_line(
    workdir: Path, record_property: Callable[[str, object], None]
) -> None:
    recipe = workdir / "demo.toml"
    recipe.write_text('name = "demo"\nrequirements = ["demo"]\n', encoding="utf-8")
    path = workdir / "cli.lock.json"
    samples: list[tuple[bytes, bool]] = []

    @CLI
    @given(content=st.one_of(mutated_locks(), json_values), json_mode=st.booleans())
    def collect(content: Any, json_mode: bool) -> None:
        _write_json(path, content)
        try:
            read_lock(path)
        except InputError:
            samples.append((path.read_bytes(), json_mode))
        else:
            assume(False)

    collect()
    out = str(workdir / "o")
    ran = run_sample(
        workdir,
        samples,
        ".lock.json",
        lambda lock: ["build", str(recipe), "--lock", str(lock), "--index-url", CLOSED_INDEX, "--out", out],
    )
    report(record_property, "locks through the CLI", Counter(examples=ran, refused=ran))
    assert ran >= CLI_EXAMPLES // 2


# ---- bugs the fuzzing found in recipe.py, fixed there; these keep them fixed ----------------------------


@pytest.mark.parametrize("number", ["nan", "inf", "-nan", "1e308"])
def test_a_non_finite_limit_is_bad_input(number: str, workdir: Path) -> None:
    path = workdir / f"limit-{number}.toml"
    path.write_text(f'requirements = ["pandas"]\n[limits]\nunzipped_mb = {number}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"limits\.unzipped_mb"):
        load_recipe(str(path))


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))


def test_a_requirements_file_that_includes_a_device_is_bad_input(workdir: Path) -> None:
    path = workdir / "requirements-device.txt"
    path.write_text("pandas\n-r /dev/zero\n", encoding="utf-8")
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "layerforge", "build", str(path), "--index-url", CLOSED_INDEX],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
            cwd=workdir,
            preexec_fn=_limit_memory,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("reading the requirements file never ended")
    assert completed.returncode == 2, completed.stderr
    assert "/dev/zero" in completed.stderr
