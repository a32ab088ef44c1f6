"""cupy.lib.stride_tricks on the strict stand-in: views with chosen strides."""

import numpy

from .._core import as_strided, function

sliding_window_view = function("sliding_window_view", numpy.lib.stride_tricks.sliding_window_view)

__all__ = ["as_strided", "sliding_window_view"]
