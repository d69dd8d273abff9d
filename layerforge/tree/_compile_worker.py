"""Compile a list of modules to hash-based bytecode. Run by the target's interpreter, not imported.

bytecode.py gives each worker its share of the layer's modules on stdin: for each module three fields,
its source, its pyc and the name tracebacks show, each ended by a NUL byte (no path holds one); paths
are relative to the layer's root, its working folder. The worker answers with records of three
NUL-ended fields, `ok`, pyc, size or `failed`, source, error, and then `end` with two empty fields: an
answer without `end` is one the worker did not finish.

It does what py_compile.compile(invalidation_mode=UNCHECKED_HASH) does, through the same functions of
the import system (importlib's own since 3.7, there up to 3.14), without importing py_compile and json:
those two import enum, traceback, re and more, 11 of the 20 ms of CPU an interpreter took to start
here, and a layer's modules are compiled by 20 to 30 of them. Why not compileall: it walks the tree
again, sends every file through a process pool one at a time and rewalks to find its output; the layer
already knows its modules.
"""

import _imp
import os
import stat
import sys

# typeshed leaves out the import system's private helpers, which py_compile itself calls.
from _frozen_importlib_external import (  # type: ignore[attr-defined]
    _RAW_MAGIC_NUMBER,
    _calc_mode,
    _code_to_hash_pyc,
    _write_atomic,
)


def compile_one(source: str, pyc: str, shown: str, made: set[str]) -> int:
    """The pyc's size; raises what py_compile would have wrapped in PyCompileError, or OSError. `made`:
    the folders this worker has made or found already, so that each is made once, not once a module."""
    try:
        existing = os.lstat(pyc)
    except FileNotFoundError:
        pass
    else:
        # One lstat for py_compile's two checks (a link; something there that is not a regular file).
        if not stat.S_ISREG(existing.st_mode):
            raise FileExistsError(f"{pyc} is a link or not a regular file; writing it would replace it")
    with open(source, "rb") as file:
        data = file.read()
    code = compile(data, shown, "exec", dont_inherit=True, optimize=-1)
    folder = os.path.dirname(pyc)
    if folder and folder not in made:
        os.makedirs(folder, exist_ok=True)
        made.add(folder)
    # checked=False: an unchecked hash pyc, which the import system loads without reading the source.
    bytecode = _code_to_hash_pyc(code, _imp.source_hash(_RAW_MAGIC_NUMBER, data), False)
    _write_atomic(pyc, bytecode, _calc_mode(source))
    return len(bytecode)  # what _write_atomic wrote, whole, or it raised


def describe(error: BaseException) -> str:
    """One line, as the last line of py_compile's message: the error's type and its message."""
    message = getattr(error, "msg", None) if isinstance(error, SyntaxError) else None
    text = str(message if message is not None else error).strip()
    last = text.splitlines()[-1] if text else ""
    return f"{type(error).__name__}: {last}" if last else type(error).__name__


def main() -> None:
    fields = sys.stdin.buffer.read().split(b"\0")[:-1]
    out = sys.stdout.buffer
    made: set[str] = set()
    for at in range(0, len(fields) - 2, 3):
        source, pyc, shown = (os.fsdecode(field) for field in fields[at : at + 3])
        try:
            size = compile_one(source, pyc, shown, made)
        except Exception as error:  # compile raises SyntaxError, ValueError, RecursionError, MemoryError...
            reason = describe(error).encode("utf-8", "replace").replace(b"\0", b"\\0")
            out.write(b"failed\0" + os.fsencode(source) + b"\0" + reason + b"\0")
            continue
        out.write(b"ok\0" + os.fsencode(pyc) + b"\0" + str(size).encode() + b"\0")
    out.write(b"end\0\0\0")
    out.flush()


if __name__ == "__main__":
    main()
