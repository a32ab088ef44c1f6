"""cupy.linalg on the strict stand-in: NumPy's linalg on device arrays, the functions that
CuPy 13.6 and 14.2 both have."""

import numpy

from ._core import function

NAMES = (
    "cholesky det eigh eigvalsh inv lstsq matrix_power matrix_rank norm pinv qr slogdet "
    "solve svd tensorinv tensorsolve"
).split()

for _name in NAMES:
    globals()[_name] = function(_name, getattr(numpy.linalg, _name))
del _name

__all__ = NAMES
