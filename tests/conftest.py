"""Shared fixtures. Tests reach only servers they start on 127.0.0.1, except those marked `network`."""

from __future__ import annotations

pytest_plugins = ["tests.support.aws", "tests.support.index"]
