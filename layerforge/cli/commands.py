"""Imports every command module so that each registers itself on the `main` group."""
from . import build_cmd  # noqa: F401
from . import recipes_cmd  # noqa: F401
from . import size_report_cmd  # noqa: F401
from . import publish_cmd  # noqa: F401
from . import verify_cmd  # noqa: F401
from . import function_cmd  # noqa: F401
from . import doctor_cmd  # noqa: F401
