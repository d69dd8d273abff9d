"""Path globs for strip rules: `**` spans directories, `*` and `?` stay within one name.

A pattern that names a directory (`**/tests`) also matches everything below it.
"""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=1024)
def _translate(pattern: str) -> str:
    parts: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            parts.append("(?:[^/]+/)*")
            index += 3
            continue
        if pattern.startswith("**", index):
            parts.append(".*")
            index += 2
            continue
        if char == "*":
            parts.append("[^/]*")
        elif char == "?":
            parts.append("[^/]")
        elif char == "[":
            end = pattern.find("]", index + 1)
            if end == -1:
                parts.append(re.escape(char))
            else:
                body = pattern[index + 1 : end].replace("\\", "\\\\")
                parts.append(
                    "[^/]" if not body else f"[{'^' if body.startswith('!') else ''}{body.lstrip('!')}]"
                )
                index = end
        else:
            parts.append(re.escape(char))
        index += 1
    return "".join(parts)


@lru_cache(maxsize=1024)
def compile_glob(pattern: str) -> re.Pattern[str]:
    # A match may stop at a directory boundary: the pattern then covers the whole subtree.
    return re.compile(_translate(pattern) + "(?:/.*)?")


def matches(pattern: str, path: str) -> bool:
    return compile_glob(pattern).fullmatch(path) is not None
