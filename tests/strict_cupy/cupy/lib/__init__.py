"""cupy.lib on the strict stand-in."""

from . import stride_tricks  # noqa: F401
