"""Tiny, real wheels for end-to-end builds against the local index: a demo stack with a native part."""

from __future__ import annotations

from pathlib import Path

from tests.support.elf import compile_shared_object, with_machine
from tests.support.index import LocalIndex

DEMO_INIT = '''"""demo: a package that imports its own core and reads its version from metadata."""
from importlib.metadata import version

from demo.core import answer

__version__ = version("demo")
'''


def native_object(tmp: Path, machine: str = "x86_64") -> bytes:
    built = compile_shared_object(tmp / "native-x86_64.so")
    if machine == "aarch64":
        built = with_machine(built, tmp / "native-aarch64.so", "aarch64")
    return built.read_bytes()


def publish_demo_stack(index: LocalIndex, tmp: Path) -> None:
    """demo 1.0 (pure) needs fastlib; fastlib 1.0 fits glibc 2.26, fastlib 2.0 only manylinux_2_28."""
    index.add_wheel(
        "demo",
        "1.0",
        files={
            "demo/__init__.py": DEMO_INIT,
            "demo/core.py": "answer = 42\n",
            "demo/_speedups.c": "/* C source, never needed at run time */\n" * 50,
            "demo/core.pyi": "answer: int\n",
            "demo/tests/__init__.py": "",
            "demo/tests/test_core.py": "def test_answer():\n    assert True\n" * 20,
            "demo/docs/guide.md": "# guide\n" * 100,
            "demo/LICENSE.txt": "MIT License\n",
        },
        requires=["fastlib"],
    )
    so_x86 = native_object(tmp)
    so_arm = native_object(tmp, "aarch64")
    for version, tag in (
        ("1.0", "cp311-cp311-manylinux2014_x86_64"),
        ("2.0", "cp311-cp311-manylinux_2_28_x86_64"),
        ("2.0", "cp312-cp312-manylinux_2_28_x86_64"),
        ("1.0", "cp311-cp311-manylinux2014_aarch64"),
        ("2.0", "cp311-cp311-manylinux_2_28_aarch64"),
    ):
        python = tag.split("-", 1)[0]
        machine = "aarch64" if "aarch64" in tag else "x86_64"
        index.add_wheel(
            "fastlib",
            version,
            tag,
            files={
                "fastlib/__init__.py": f'__version__ = "{version}"\n',
                f"fastlib/_native.cpython-{python[2:]}-{machine}-linux-gnu.so": so_arm
                if machine == "aarch64"
                else so_x86,
            },
        )
