"""Imports every command module so that each registers itself on the `main` group."""

from . import (  # noqa: F401
    build_cmd,
    doctor_cmd,
    function_cmd,
    publish_cmd,
    recipes_cmd,
    size_report_cmd,
    verify_cmd,
)
