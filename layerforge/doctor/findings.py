"""What the doctor reports: findings with a severity and a fix, the report they make, and its options."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..target import Target

Severity = Literal["ok", "info", "warning", "error"]
SEVERITIES: tuple[Severity, ...] = ("ok", "info", "warning", "error")

SHOWN = 5  # paths named in one finding; the JSON has them all


@dataclass(frozen=True)
class Finding:
    """One thing the doctor saw. `fix` is empty only when there is nothing to do."""

    check: str
    severity: Severity
    summary: str
    fix: str = ""
    paths: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "check": self.check,
            "severity": self.severity,
            "summary": self.summary,
            "fix": self.fix or None,
            "paths": list(self.paths),
        }


@dataclass(frozen=True)
class DoctorReport:
    findings: tuple[Finding, ...]

    def count(self, severity: Severity) -> int:
        return sum(1 for finding in self.findings if finding.severity == severity)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def exit_code(self) -> int:
        return 1 if self.errors else 0

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": not self.errors,
            "exit_code": self.exit_code,
            "counts": {severity: self.count(severity) for severity in SEVERITIES},
            "findings": [finding.as_dict() for finding in self.findings],
        }


@dataclass(frozen=True)
class DoctorOptions:
    target: Target = field(default_factory=Target)
    repo: Path = Path()
    dist: Path | None = None  # default: REPO/dist
    python: Path | None = None
    bucket: str | None = None
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None  # every AWS call (STS, S3, Lambda, IAM): a local or compatible server
