"""A distribution's license as an SPDX expression, and the recipe's license policy applied to it.

The order the issue asks for: PEP 639 `License-Expression`, else the `License ::` classifiers, else the
`License` field, each normalised with `license-expression` against the SPDX list. A `License` field
that is free text (`Dual Licensed - GNU AFFERO GPL 3.0 or Artifex Commercial License`) is read for the
license names it mentions: the result is marked `inferred` and keeps the text. Anything else is kept as
text and marked `unknown`: a warning, or an error with --strict-licenses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from typing import Literal, cast

from license_expression import (
    AND,
    OR,
    ExpressionError,
    LicenseExpression,
    LicenseSymbol,
    LicenseWithExceptionSymbol,
    Licensing,
)

from ..errors import LicensePolicyError
from ..recipe import PolicyConfig, spdx_licensing

Status = Literal["declared", "inferred", "unknown"]


@dataclass(frozen=True)
class LicenseInfo:
    """`expression` is a valid SPDX expression, or None when `status` is unknown; `text` is what the
    metadata said, kept whenever the expression is not exactly that."""

    expression: str | None
    status: Status
    source: str  # License-Expression | classifiers | License | none
    text: str | None = None

    @property
    def shown(self) -> str:
        return self.expression or (f"unrecognised: {self.text!r}" if self.text else "no license metadata")


def spdx() -> Licensing:
    return cast(Licensing, spdx_licensing())


def parse_spdx(text: str) -> str | None:
    """`text` as a normalised SPDX expression (`mit` -> MIT, `AGPL-3.0` -> AGPL-3.0-only), else None."""
    text = text.strip()
    if not text or len(text) > 400 or "\n" in text:
        return None
    try:
        parsed = spdx().parse(text, validate=True, strict=True)
    except ExpressionError:
        return None
    if parsed is None or any(key.startswith("LicenseRef-") for key in spdx().license_keys(parsed)):
        return None
    return str(parsed.render())


# Trove classifiers (after `License :: `) that name one SPDX license; `BSD License` names none.
CLASSIFIERS = {
    "OSI Approved :: MIT License": "MIT",
    "OSI Approved :: MIT No Attribution License (MIT-0)": "MIT-0",
    "OSI Approved :: Apache Software License": "Apache-2.0",
    "OSI Approved :: ISC License (ISCL)": "ISC",
    "OSI Approved :: Python Software Foundation License": "PSF-2.0",
    "OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "OSI Approved :: GNU Affero General Public License v3": "AGPL-3.0-only",
    "OSI Approved :: GNU Affero General Public License v3 or later (AGPLv3+)": "AGPL-3.0-or-later",
    "OSI Approved :: GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "OSI Approved :: GNU General Public License v2 or later (GPLv2+)": "GPL-2.0-or-later",
    "OSI Approved :: GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "OSI Approved :: GNU General Public License v3 or later (GPLv3+)": "GPL-3.0-or-later",
    "OSI Approved :: GNU Lesser General Public License v2 (LGPLv2)": "LGPL-2.0-only",
    "OSI Approved :: GNU Lesser General Public License v2 or later (LGPLv2+)": "LGPL-2.0-or-later",
    "OSI Approved :: GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "OSI Approved :: GNU Lesser General Public License v3 or later (LGPLv3+)": "LGPL-3.0-or-later",
    "OSI Approved :: The Unlicense (Unlicense)": "Unlicense",
    "OSI Approved :: Boost Software License 1.0 (BSL-1.0)": "BSL-1.0",
    "OSI Approved :: Eclipse Public License 2.0 (EPL-2.0)": "EPL-2.0",
    "OSI Approved :: Historical Permission Notice and Disclaimer (HPND)": "HPND",
    "OSI Approved :: zlib/libpng License": "Zlib",
    "OSI Approved :: Zope Public License": "ZPL-2.1",
    "CC0 1.0 Universal (CC0 1.0) Public Domain Dedication": "CC0-1.0",
}
_BSD = "OSI Approved :: BSD License"
_NO_INFORMATION = {"OSI Approved"}

# License names found in free text, most specific first; each consumes the words it matched.
_GNU = r"\b(?:gnu\s+)?"
_LATER = r"\s*(?:\+|or\s+later)"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), spdx_id)
    for pattern, spdx_id in (
        (
            _GNU + r"(?:affero\s+(?:general\s+public\s+license|gpl)|agpl)\s*v?3(?:\.0)?" + _LATER,
            "AGPL-3.0-or-later",
        ),
        (_GNU + r"(?:affero\s+(?:general\s+public\s+license|gpl)|agpl)\s*v?3(?:\.0)?", "AGPL-3.0-only"),
        (
            _GNU + r"(?:lesser|library)\s+(?:general\s+public\s+license|gpl)\s*v?3(?:\.0)?" + _LATER,
            "LGPL-3.0-or-later",
        ),
        (
            _GNU + r"(?:lesser|library)\s+(?:general\s+public\s+license|gpl)\s*v?3(?:\.0)?",
            "LGPL-3.0-only",
        ),
        (r"\blgpl\s*v?3(?:\.0)?" + _LATER, "LGPL-3.0-or-later"),
        (r"\blgpl\s*v?3(?:\.0)?", "LGPL-3.0-only"),
        (r"\blgpl\s*v?2\.1" + _LATER, "LGPL-2.1-or-later"),
        (r"\blgpl\s*v?2\.1", "LGPL-2.1-only"),
        (
            _GNU + r"(?:general\s+public\s+license|gpl)\s*v?3(?:\.0)?" + _LATER,
            "GPL-3.0-or-later",
        ),
        (_GNU + r"(?:general\s+public\s+license|gpl)\s*v?3(?:\.0)?", "GPL-3.0-only"),
        (
            _GNU + r"(?:general\s+public\s+license|gpl)\s*v?2(?:\.0)?" + _LATER,
            "GPL-2.0-or-later",
        ),
        (_GNU + r"(?:general\s+public\s+license|gpl)\s*v?2(?:\.0)?", "GPL-2.0-only"),
        (r"\bapache(?:\s+software)?(?:\s+license)?,?\s*(?:version\s*|v)?2(?:\.0)?\b", "Apache-2.0"),
        (r"\b(?:mozilla\s+public\s+license|mpl)\s*(?:version\s*|v)?2(?:\.0)?\b", "MPL-2.0"),
        (r"\b(?:bsd[\s-]*3[\s-]*clause|3[\s-]*clause\s+bsd|new\s+bsd|modified\s+bsd)\b", "BSD-3-Clause"),
        (r"\b(?:bsd[\s-]*2[\s-]*clause|2[\s-]*clause\s+bsd|simplified\s+bsd)\b", "BSD-2-Clause"),
        (r"\bmit(?:\s+license)?\b", "MIT"),
        (r"\bpermission is hereby granted, free of charge\b", "MIT"),
        (r"\bpython software foundation license\b", "PSF-2.0"),
    )
)
# The BSD text whose third clause names no contributor ("Neither the name of ..."): 3-clause.
_BSD3_TEXT = re.compile(r"redistribution and use in source and binary forms.*neither the name", re.I | re.S)
_BSD2_TEXT = re.compile(r"redistribution and use in source and binary forms", re.I)


def names_in_text(text: str) -> list[str]:
    """The SPDX ids whose names appear in free text, in the order found, each once."""
    found: list[tuple[int, str]] = []
    remaining = text
    for pattern, spdx_id in _PATTERNS:
        matches = [match.start() for match in pattern.finditer(remaining)]
        if matches:  # a second pass over a long text (scipy's bundles its licenses) only when it changes it
            found.extend((at, spdx_id) for at in matches)
            remaining = pattern.sub(lambda m: " " * len(m.group(0)), remaining)
    if not found and _BSD3_TEXT.search(text):
        found.append((0, "BSD-3-Clause"))
    elif not found and _BSD2_TEXT.search(text):
        found.append((0, "BSD-2-Clause"))
    return list(dict.fromkeys(spdx_id for _at, spdx_id in sorted(found)))


def license_of(headers: Message) -> LicenseInfo:
    """The license of one distribution from its METADATA headers."""
    declared = (headers.get("License-Expression") or "").strip()
    if declared:
        expression = parse_spdx(declared)
        if expression is not None:
            return LicenseInfo(expression, "declared", "License-Expression")
        return LicenseInfo(None, "unknown", "License-Expression", declared)
    field = (headers.get("License") or "").strip()
    classifiers = [
        c.split("::", 1)[1].strip()
        for c in headers.get_all("Classifier") or []
        if c.startswith("License ::") and c.split("::", 1)[1].strip() not in _NO_INFORMATION
    ]
    from_classifiers = _from_classifiers(classifiers, field)
    if from_classifiers is not None:
        return from_classifiers
    if field and field.upper() not in ("UNKNOWN", "NONE"):
        return _from_field(field, classifiers)
    if classifiers:
        return LicenseInfo(None, "unknown", "classifiers", "; ".join(classifiers))
    return LicenseInfo(None, "unknown", "none")


def _from_classifiers(classifiers: list[str], field: str) -> LicenseInfo | None:
    if not classifiers:
        return None
    ids: list[str] = []
    for classifier in classifiers:
        if classifier == _BSD:
            # Which BSD, the License field may say (pandas: "BSD 3-Clause License", scipy: the text).
            bsd = [i for i in names_in_text(field) if i.startswith("BSD-")]
            if not bsd:
                return None
            ids.append(bsd[0])
        elif classifier in CLASSIFIERS:
            ids.append(CLASSIFIERS[classifier])
        else:
            return None
    # Several license classifiers offer a choice, as PyPI shows them.
    expression = parse_spdx(" OR ".join(dict.fromkeys(ids)))
    assert expression is not None, ids
    return LicenseInfo(expression, "declared", "classifiers")


def _from_field(field: str, classifiers: list[str]) -> LicenseInfo:
    expression = parse_spdx(field)
    if expression is not None:
        return LicenseInfo(expression, "declared", "License")
    found = names_in_text(field[:20_000])
    if found:
        # Every license the text names applies, unless it says which one to choose: conservative.
        inferred = parse_spdx(" AND ".join(found))
        assert inferred is not None, found
        return LicenseInfo(inferred, "inferred", "License", _short(field))
    text = "; ".join([*classifiers, _short(field)])
    return LicenseInfo(None, "unknown", "License", text)


def _short(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# The policy ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    distribution: str
    version: str | None
    license: LicenseInfo
    rule: str  # the rule that refused it, e.g. `deny_licenses: AGPL-3.0-only`

    @property
    def message(self) -> str:
        at = f" {self.version}" if self.version else ""
        return f"{self.distribution}{at} is licensed {self.license.shown}: refused by {self.rule}"


def check(
    licenses: Iterable[tuple[str, str | None, LicenseInfo]], policy: PolicyConfig
) -> tuple[list[Violation], list[tuple[str, str | None, LicenseInfo]]]:
    """The violations of `policy`, and the distributions whose license is unknown (checked by no rule)."""
    violations: list[Violation] = []
    unknown: list[tuple[str, str | None, LicenseInfo]] = []
    for name, version, info in licenses:
        if info.expression is None:
            unknown.append((name, version, info))
            continue
        if policy.empty:
            continue
        rule = _refusal(spdx().parse(info.expression), policy)
        if rule is not None:
            violations.append(Violation(name, version, info, rule))
    return violations, unknown


def _refusal(expression: LicenseExpression, policy: PolicyConfig) -> str | None:
    """Why the expression cannot be shipped, or None. `A OR B` ships if either can; `A AND B` if both."""
    if isinstance(expression, OR):
        reasons = [_refusal(arg, policy) for arg in expression.args]
        return None if any(reason is None for reason in reasons) else " and ".join(r for r in reasons if r)
    if isinstance(expression, AND):
        return next((r for r in (_refusal(arg, policy) for arg in expression.args) if r), None)
    if isinstance(expression, LicenseWithExceptionSymbol):
        expression = expression.license_symbol
    assert isinstance(expression, LicenseSymbol), expression
    key = str(expression.key)
    if key.casefold() in {d.casefold() for d in policy.deny_licenses}:
        return f"deny_licenses ({key} is denied)"
    if policy.allow_licenses and key.casefold() not in {a.casefold() for a in policy.allow_licenses}:
        return f"allow_licenses ({key} is not in {', '.join(policy.allow_licenses)})"
    return None


def enforce(
    licenses: Iterable[tuple[str, str | None, LicenseInfo]],
    policy: PolicyConfig,
    *,
    strict: bool,
) -> list[str]:
    """Raise LicensePolicyError on a refused license (or, when `strict`, an unknown one); return the
    warnings to show for unknown licenses otherwise."""
    violations, unknown = check(licenses, policy)
    unknown_lines = [f"{name} {version or ''}".strip() + f": {info.shown}" for name, version, info in unknown]
    if violations:
        raise LicensePolicyError(
            "license policy: " + "; ".join(v.message for v in violations),
            hint="drop the distribution from the requirements, or change the recipe's policy "
            "(deny_licenses, allow_licenses) if your legal team accepts this license",
        )
    if unknown and strict:
        raise LicensePolicyError(
            "unknown licenses (--strict-licenses): " + "; ".join(unknown_lines),
            hint="check these distributions' licenses by hand; without --strict-licenses this is a warning",
        )
    return [f"license not recognised, so no policy checked it: {line}" for line in unknown_lines]
