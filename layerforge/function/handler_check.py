"""Check a Lambda handler string against the function's sources, statically, before anything is built.

The runtime (awslambdaric) splits ``--handler`` at its last dot, imports the module part (a ``/`` in it
counts as a dot) and calls the attribute with ``(event, context)``, positionally. A typo there costs a
deploy and a ``Runtime.ImportModuleError`` or ``Runtime.HandlerNotFound``; here it costs nothing. The
sources are read with ``ast``, never imported: importing runs the user's code and needs its
dependencies, which the host may not have.
"""

from __future__ import annotations

import ast
import keyword
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError


class HandlerError(InputError):
    """The handler named by --handler does not exist or cannot take (event, context). Exit 2."""


@dataclass(frozen=True)
class HandlerSpec:
    """`handler.lambda_handler` or `app/api.handler`, split the way the runtime splits it."""

    text: str
    module: str  # dotted: "app.api"
    function: str

    @classmethod
    def parse(cls, text: str) -> HandlerSpec:
        module, dot, function = text.strip().rpartition(".")
        module = module.replace("/", ".")
        parts = module.split(".")
        if not dot or not all(_is_name(part) for part in [*parts, function]):
            raise HandlerError(
                f"--handler {text!r} is not MODULE.FUNCTION",
                hint="name the file without .py and the function, e.g. --handler handler.lambda_handler "
                "(handler.py defines lambda_handler) or --handler app.api.handler (app/api.py)",
            )
        return cls(text.strip(), module, function)

    def candidate_paths(self) -> tuple[str, str]:
        """Where the module's source may be, relative to the function's root: a file, then a package."""
        stem = self.module.replace(".", "/")
        return (f"{stem}.py", f"{stem}/__init__.py")


@dataclass(frozen=True)
class HandlerCheck:
    """Where the handler is and what kind of binding defines it."""

    spec: HandlerSpec
    path: str  # relative posix path of the module
    line: int
    kind: str  # "def", "async def", "assignment", "import"
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "handler": self.spec.text,
            "path": self.path,
            "line": self.line,
            "kind": self.kind,
            "warnings": list(self.warnings),
        }


def check_handler(
    spec: HandlerSpec, sources: Mapping[str, Path], *, excluded: Mapping[str, str] | None = None
) -> HandlerCheck:
    """The handler's module must be among `sources` and bind the function at module level.

    `sources` maps each packaged file's relative posix path to its file; `excluded` maps each path left
    out to the rule that left it out, so that "it is there, but excluded" is said plainly.
    """
    path = next((p for p in spec.candidate_paths() if p in sources), None)
    if path is None:
        raise _module_missing(spec, sources, excluded or {})
    tree = _parse(sources[path], path)
    binding = _last_binding(tree, spec.function)
    if binding is None:
        defined = sorted(_defined_functions(tree))
        raise HandlerError(
            f"handler {spec.text!r}: {path} defines no `{spec.function}` at module level",
            hint=(f"functions it defines: {', '.join(defined)}" if defined else "it defines no functions")
            + f"; define `def {spec.function}(event, context):` or fix --handler",
        )
    return _check_binding(spec, path, binding)


def _is_name(text: str) -> bool:
    return text.isidentifier() and not keyword.iskeyword(text)


def _module_missing(
    spec: HandlerSpec, sources: Mapping[str, Path], excluded: Mapping[str, str]
) -> HandlerError:
    for candidate in spec.candidate_paths():
        rule = _excluding_rule(candidate, excluded)
        if rule is not None:
            return HandlerError(
                f"handler {spec.text!r}: {candidate} is left out of the package by the exclude rule `{rule}`",
                hint="move the handler out of that folder or file name, or drop the rule "
                "(--no-default-excludes, or change --exclude)",
            )
    modules = sorted(p[:-3].replace("/", ".") for p in sources if p.endswith(".py") and "/" not in p)
    return HandlerError(
        f"handler {spec.text!r}: no module `{spec.module}` in the function's sources "
        f"(looked for {' and '.join(spec.candidate_paths())})",
        hint=(f"top-level modules there: {', '.join(modules)}" if modules else "the sources hold no .py file")
        + "; --handler is MODULE.FUNCTION relative to SRC",
    )


def _excluding_rule(path: str, excluded: Mapping[str, str]) -> str | None:
    for left_out, rule in excluded.items():
        if path == left_out or path.startswith(left_out + "/"):
            return rule
    return None


def _parse(file: Path, path: str) -> ast.Module:
    try:
        return ast.parse(file.read_bytes(), filename=path)
    except SyntaxError as error:
        raise HandlerError(
            f"handler module {path} does not parse: line {error.lineno}: {error.msg}",
            hint="fix the syntax error; Lambda would fail with Runtime.UserCodeSyntaxError",
        ) from None


_Binding = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Assign | ast.AnnAssign | ast.alias


def _module_level(statements: list[ast.stmt]) -> list[ast.stmt]:
    """Statements that run at import: the module's, and those inside its if/try/with blocks."""
    found: list[ast.stmt] = []
    for statement in statements:
        found.append(statement)
        if isinstance(statement, ast.If | ast.With | ast.AsyncWith):
            found += _module_level(statement.body)
            found += _module_level(getattr(statement, "orelse", []))
        elif isinstance(statement, ast.Try):
            found += _module_level(statement.body)
            for handler in statement.handlers:
                found += _module_level(handler.body)
            found += _module_level(statement.orelse) + _module_level(statement.finalbody)
    return found


def _last_binding(tree: ast.Module, name: str) -> tuple[_Binding, int] | None:
    """The module-level statement that binds `name` last (the one the runtime finds), with its line."""
    found: tuple[_Binding, int] | None = None
    for statement in _module_level(tree.body):
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if statement.name == name:
                found = (statement, statement.lineno)
        elif isinstance(statement, ast.Assign | ast.AnnAssign):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                found = (statement, statement.lineno)
        elif isinstance(statement, ast.Import | ast.ImportFrom):
            for alias in statement.names:
                if (alias.asname or alias.name.split(".")[0]) == name:
                    found = (alias, statement.lineno)
    return found


def _defined_functions(tree: ast.Module) -> set[str]:
    return {s.name for s in _module_level(tree.body) if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)}


def _check_binding(spec: HandlerSpec, path: str, binding: tuple[_Binding, int]) -> HandlerCheck:
    node, line = binding
    where = f"{path}:{line}"
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        problem = _signature_problem(node.args)
        if problem:
            raise HandlerError(
                f"handler {spec.text!r}: `{spec.function}` at {where} {problem}; Lambda calls it with "
                "two positional arguments, (event, context)",
                hint=f"define it as `def {spec.function}(event, context):`",
            )
        if isinstance(node, ast.AsyncFunctionDef):
            # The Python runtime never awaits a handler: it would return an un-run coroutine.
            warning = (
                f"`{spec.function}` at {where} is `async def`: the Lambda Python runtime calls it without "
                "awaiting, so it returns a coroutine object; wrap it with asyncio.run in a plain def"
            )
            return HandlerCheck(spec, path, line, "async def", (warning,))
        return HandlerCheck(spec, path, line, "def")
    if isinstance(node, ast.ClassDef):
        raise HandlerError(
            f"handler {spec.text!r}: `{spec.function}` at {where} is a class; Lambda would create an "
            "instance per event and return it",
            hint=f"define `def {spec.function}(event, context):`",
        )
    kind = "import" if isinstance(node, ast.alias) else "assignment"
    note = (
        f"`{spec.function}` at {where} is bound by an {kind}, not a def: its signature cannot be checked "
        "without running the code; make sure it takes (event, context)"
    )
    return HandlerCheck(spec, path, line, kind, (note,))


def _signature_problem(args: ast.arguments) -> str | None:
    """Why `f(event, context)` would raise TypeError, or None when the call fits."""
    positional = [*args.posonlyargs, *args.args]
    required = len(positional) - len(args.defaults)
    names = ", ".join(a.arg for a in positional) or "no arguments"
    if args.vararg is None and len(positional) < 2:
        return f"takes ({names})"
    if required > 2:
        return f"requires {required} positional arguments ({names})"
    missing_keywords = [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None]
    if missing_keywords:
        return f"requires the keyword-only argument(s) {', '.join(missing_keywords)}"
    return None
