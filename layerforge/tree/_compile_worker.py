"""Compile a list of modules to hash-based bytecode. Run by the target's interpreter, not imported.

bytecode.py gives each worker its share of the layer's modules on stdin as JSON: [[source, pyc,
name shown in tracebacks], ...], paths relative to the layer's root, its working folder. It answers
with one JSON line: {"sizes": {pyc: bytes}, "failed": {source: error}}. It uses only the standard
library of the interpreter that runs it (3.9 to 3.14), through py_compile's public API. Why not
compileall: it walks the tree again, sends every file through a process pool one at a time and
rewalks to find its output; the layer already knows its modules, and two workers with half of them
each spend their time compiling.
"""

import json
import os
import py_compile
import sys


def main() -> None:
    jobs = json.loads(sys.stdin.read())
    sizes = {}
    failed = {}
    mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
    for source, pyc, shown in jobs:
        try:
            py_compile.compile(source, cfile=pyc, dfile=shown, doraise=True, invalidation_mode=mode)
        except (py_compile.PyCompileError, OSError, ValueError, RecursionError) as error:
            failed[source] = (
                str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
            )
            continue
        sizes[pyc] = os.stat(pyc).st_size
    sys.stdout.write(json.dumps({"sizes": sizes, "failed": failed}) + "\n")


if __name__ == "__main__":
    main()
