"""A strict CPU stand-in for CuPy: a test double that runs CuPy code on NumPy.

It lets the test suite run the program's GPU code path (`use_device("gpu")`, `xp` = cupy) on
a machine without a GPU, refuses what real CuPy would refuse, and counts the operations that
would make the host wait for the GPU. It is importable as `cupy` only when tests/strict_cupy
is on sys.path (the test set-up puts it there); the program itself never uses it.

How it works
    A device array, `cupy.ndarray`, wraps a NumPy array (its `_host`), which plays the device
    memory. It is not a subclass of numpy.ndarray, so NumPy never treats it as one of its own.
    Every function unwraps device arguments, refuses NumPy arrays, calls the NumPy function
    of the same name and wraps the result. Views stay views (slices, reshape, .T, as_strided,
    out=): they share the host memory, so writing through a view reaches its base. A NumPy
    scalar result becomes a 0-d device array, as CuPy returns from reductions. The array
    passed as out= is returned as the very object that was passed.
    numpy.exp(device) and numpy.concatenate([device]) dispatch here, as CuPy's do, through
    __array_ufunc__ and __array_function__; a NumPy function the stand-in lacks gives NumPy's
    TypeError. The namespace is the functions that CuPy 13.6 and 14.2 both export and NumPy
    2.x has; anything else is an AttributeError, never a silent NumPy fallback.

What it mirrors: CuPy 13.6.0 and 14.2.0 (the rules below are the same in both; where they
    differ, see "CuPy 13 and 14" below), as read in
    cupy/_core/core.pyx                 ndarray: __array__, __iter__, __reduce__, __nonzero__,
                                        __int__/__float__, __array_ufunc__, __array_function__,
                                        __setitem__, fill, get, set, item, _array_default
    cupy/_core/_routines_indexing.pyx   _prepare_slice_list, _scatter_op, _ndarray_nonzero,
                                        _prepare_mask_indexing_single, _take, _ndarray_compress
    cupy/_core/_kernel.pyx, _scalar.pyx _preprocess_args / CScalar: "Unsupported type"
    cupy/_core/internal.pyx             complete_slice (slice bounds read with int())
    cupy/_core/_routines_manipulation.pyx  concatenate_method, repeat
    cupy/_manipulation/basic.py         copyto;   cupy/cuda/memory.pyx, memory_hook.pyx
    cupy/_core/_kernel.pyx              _copy_in_args_if_needed (the copy of an overlapping input)
    cupy/_core/_routines_sorting.pyx, cupy/cuda/cupy_thrust.cu   sort, argsort, partition
    cupy/cuda/pinned_memory.pyx         PinnedMemoryPool, the watch list of pending copies

The rules (each raises CuPy's error type, with CuPy's message where it has one)
    1. numpy.asarray(device) / numpy.array(device): TypeError "Implicit conversion to a NumPy
       array is not allowed. Please use `.get()` to construct a NumPy array explicitly."
    2. A NumPy array as an operand of a device operation (device + numpy_array, numpy_array *
       device, cupy.maximum(device, numpy_array), cupy.concatenate([device, numpy_array]), a
       NumPy array as out=): TypeError "Unsupported type <class 'numpy.ndarray'>". Python
       and NumPy scalars are fine. (A 0-d NumPy array is accepted in comparisons only, as
       CuPy converts it there.) Lists are refused as ufunc operands too, as in CuPy.
    3. A NumPy array assigned into a device array: CuPy accepts it only through an array
       index (device[index_array] = numpy_values is copied to the device, a transfer). With
       basic indexing (device[...] = a, device[1:3] = a) CuPy calls fill(), which refuses
       a non-scalar: ValueError "non-scalar numpy.ndarray cannot be used for fill" (gh-2079).
       So does the stand-in. (CUPY_EXPERIMENTAL_SLICE_COPY=1 lets device[:] = a copy, in
       CuPy and here.) cupy.copyto(device, numpy_array) likewise: ValueError "non-scalar
       numpy.ndarray cannot be used for copyto".
    4. NumPy index arrays and lists inside device[...] are accepted and copied to the device
       (a transfer), as CuPy does; so are NumPy indices to take(), a NumPy condition to
       compress() and NumPy values to ufunc.at() (CuPy calls core.array on each).
    5. Iteration: CuPy allows it for n-d arrays (yielding self[i], one kernel launch per row)
       and raises TypeError "iteration over a 0-d array" for 0-d. The stand-in refuses every
       iteration with TypeError: DELIBERATELY STRICTER, because a Python loop over a device
       array is a loop of kernel launches (and `x in device` iterates too).
    6. json.dumps(device) is a TypeError, as with CuPy (no JSON encoder knows the type).
       Pickling: CuPy pickles a host copy (__reduce__ returns array, (self.get(),): a sync).
       The stand-in refuses with TypeError: DELIBERATELY STRICTER, because checkpoints must be
       written from explicit host copies. copy.copy and copy.deepcopy work (device copies).
    7. __index__: CuPy's ndarray has none, so range(device), a_list[device] and
       numpy_array[device] are TypeErrors, here too. Slice bounds of a device array may be
       device integers (device[:n]): CuPy reads them with int(), a sync, and so does this.
    8. Unsupported dtypes (object, strings, datetimes) are a ValueError in cupy.asarray.
    9. Integer index arrays (and lists) wrap around: an index i into an axis of size n reads
       or writes entry i mod n, in device[index], device[index] = v, take() and ufunc.at(),
       as CuPy's gather and scatter kernels do (_routines_indexing.pyx); NumPy would raise
       IndexError. So a label outside 0..classes-1 is silently another class on a GPU (the
       loaders in data.py refuse such labels). A single Python integer out of bounds is an
       IndexError, in CuPy too.

Deliberately stricter than CuPy, besides 5 and 6: functions other than the ones named in
    3 and 4 refuse NumPy arrays wherever they appear (CuPy lets a few through: for example
    cupy.zeros_like(numpy_array) only reads its shape, and cupy.copy(numpy_array) returns a
    NumPy array); a broadcast_to view is read-only (NumPy's rule; writing through one is
    undefined in CuPy); `x in device` is refused (CuPy iterates).
Not mirrored: CuPy's error messages for shape and dtype errors (NumPy's are raised), its
    type promotion where it differs from NumPy's, and the 0-d device array used as an index
    (CuPy copies, NumPy views).

Counting host synchronisations (cupy.strict)
    Each operation that makes the host wait for the device in CuPy is recorded as an event
    (kind="sync", what, where): float(), int(), complex(), bool(), .item(), .get(),
    cupy.asnumpy, .tolist(), .tobytes(), repr(), str(), format(), Stream.synchronize(),
    Device.synchronize(), runtime.deviceSynchronize(), a device slice bound, and every
    operation whose output size depends on the data: boolean-mask indexing, read
    (device[mask]) and write (device[mask] = v, which counts the mask too in
    _prepare_mask_indexing_single), nonzero, flatnonzero, argwhere, where(condition),
    compress, extract, unique and the set routines built on it, repeat with device repeats,
    bincount, histogram*, delete, place, nanmax/nanmin, unravel_index, trim_zeros,
    asarray_chkfinite, real_if_close, gradient, average with weights (each is marked
    "synchronize" in CuPy 14.2's source), and the printing functions array2string,
    array_repr, array_str. count_nonzero and reductions return 0-d device arrays and do not
    synchronise.
    Host-to-device copies are recorded as kind="transfer": cupy.asarray/array of host data
    with at least one dimension (a 0-d value is passed as a kernel argument), NumPy index
    arrays and lists, values accepted by setitem, ndarray.set().
    Does cupy.asarray(numpy_array) from ordinary (pageable) memory block the host? Not for
    the device: _array_default (core.pyx, blocking=False by default) copies the data into a
    pinned staging buffer on the host and queues cudaMemcpyAsync from it, so the host goes on
    while the GPU copies; only when no pinned memory can be had does it copy from pageable
    memory directly (which CUDA stages synchronously), and blocking=True adds
    stream.synchronize(). So asarray is a transfer, not a sync (blocking=True also records a
    sync). .get() is a sync: copy_to_host_async followed by stream.synchronize().
    `where` is "path/to/file.py:LINE in FUNCTION" of the first frame outside this package.
    strict.py has the API: counting() (a Record of the events in a block), total(), and the
    report file that SNIP_MIN_STRICT_REPORT asks for.

Memory: device memory is counted per NumPy buffer: an array that owns new memory is an
    allocation (malloc hooks), its buffer's death a free; views allocate nothing. See
    cuda/memory_hook.py. The pinned host memory that CuPy's host-to-device copies keep in
    its pinned pool is modelled too (cuda/memory.py; strict.pinned_host_bytes()).

Kernel launches: inside cupy.strict.counting(launches=True) every operation that computes
    into device memory is recorded as a launch, with the hidden copy CuPy makes of an input
    that overlaps its output (strict.py says which operations count).

CuPy 13 and 14: where they differ for this program, the stand-in mirrors 14 unless told 13
    (SNIP_MIN_STRICT_CUPY=13, or `with cupy.strict.mirroring(13):`): on 13 every Thrust call
    of a sort, argsort or (sorting) partition synchronises the stream (strict.py).

Cost: an operation takes about 0.3 to 2 microseconds more than NumPy's own (a wrapper
    object, a weak reference per new buffer); recording an event takes a few more.
"""

import sys as _sys
import types as _types

import numpy as _numpy

from . import _core, cuda, lib, linalg, strict
from ._core import (
    array,
    asanyarray,
    asarray,
    asnumpy,
    average,
    copyto,
    get_array_module,
    ndarray,
    repeat,
    take,
    ufunc,
    where,
)
from .cuda.memory import get_default_memory_pool, get_default_pinned_memory_pool

__version__ = "14.2.0+strict-stand-in"
STAND_IN = True

# The names CuPy 13.6 and 14.2 both export (cupy/__init__.py) that NumPy 2.x also has.
_CUPY_NAMES = """
abs absolute add arccos arccosh arcsin arcsinh arctan arctan2 arctanh bitwise_and bitwise_not
bitwise_or bitwise_xor cbrt ceil conj conjugate copysign cos cosh deg2rad degrees divide divmod
equal exp exp2 expm1 fabs float_power floor floor_divide fmax fmin fmod frexp gcd greater
greater_equal heaviside hypot invert isfinite isinf isnan lcm ldexp left_shift less less_equal
log log10 log1p log2 logaddexp logaddexp2 logical_and logical_not logical_or logical_xor matmul
maximum minimum mod modf multiply negative nextafter not_equal positive power rad2deg radians
reciprocal remainder right_shift rint sign signbit sin sinh sqrt square subtract tan tanh
true_divide trunc

bool_ byte cdouble complex128 complex64 complexfloating csingle double dtype finfo float16
float32 float64 floating generic half iinfo inexact int16 int32 int64 int8 int_ intc integer
intp longlong number short signedinteger single ubyte uint uint16 uint32 uint64 uint8 uintc
uintp ulonglong unsignedinteger ushort

e euler_gamma inf nan newaxis pi index_exp s_

all allclose amax amin angle any append arange argmax argmin argpartition argsort argwhere
around array2string array_equal array_equiv array_repr array_split array_str asarray_chkfinite
ascontiguousarray asfortranarray atleast_1d atleast_2d atleast_3d bartlett base_repr
binary_repr bincount blackman broadcast_arrays broadcast_to can_cast choose clip column_stack
common_type compress concatenate convolve copy corrcoef correlate count_nonzero cov cross
cumprod cumsum delete diag diag_indices diag_indices_from diagflat diagonal diff digitize dot
dsplit dstack ediff1d einsum empty empty_like expand_dims extract eye fill_diagonal fix
flatnonzero flip fliplr flipud format_float_positional format_float_scientific full full_like
get_printoptions gradient hamming hanning histogram histogram2d histogramdd hsplit hstack i0
identity imag indices inner interp intersect1d isclose iscomplex iscomplexobj isfortran isin
isneginf isposinf isreal isrealobj isscalar issubdtype iterable ix_ kaiser kron lexsort
linspace logspace mask_indices max may_share_memory mean median meshgrid min min_scalar_type
mintypecode moveaxis nan_to_num nanargmax nanargmin nancumprod nancumsum nanmax nanmean
nanmedian nanmin nanprod nanstd nansum nanvar ndim nonzero ones ones_like outer packbits pad
partition percentile place poly polyadd polyfit polymul polysub polyval printoptions prod
promote_types ptp put putmask quantile ravel ravel_multi_index real real_if_close require
reshape resize result_type roll rollaxis roots rot90 round searchsorted select
set_printoptions setdiff1d setxor1d shape shares_memory sinc size sort sort_complex split
squeeze stack std sum swapaxes take_along_axis tensordot tile trace transpose tri tril
tril_indices tril_indices_from trim_zeros triu triu_indices triu_indices_from typename
union1d unique unpackbits unravel_index unwrap vander var vdot vsplit vstack zeros zeros_like
""".split()
# Left out on purpose (an AttributeError here): file and buffer I/O (load, save, savez,
# loadtxt, fromfile, frombuffer, ...), fromfunction, fromiter, piecewise, apply_along_axis,
# vectorize, the r_/c_/mgrid/ogrid builders, CuPy's kernels (ElementwiseKernel, RawKernel,
# fuse), and the modules random, fft, polynomial, testing.

# Functions whose output size depends on the data: CuPy reads a count back (a sync).
_SYNC = {
    name: f"{name}()"
    for name in (
        "nonzero flatnonzero argwhere compress extract unique intersect1d setdiff1d setxor1d "
        "union1d bincount histogram histogram2d histogramdd delete place nanmax nanmin "
        "unravel_index trim_zeros asarray_chkfinite real_if_close gradient "
        "array2string array_repr array_str"
    ).split()
}
# Functions for which NumPy returns a Python scalar and CuPy a 0-d device array.
_SCALAR_TO_DEVICE = {"count_nonzero", "allclose", "array_equal", "array_equiv"}


def _build_namespace(names):
    for name in names:
        if name in globals():  # written out in _core (asarray, where, ...)
            continue
        value = getattr(_numpy, name)
        if isinstance(value, _numpy.ufunc):
            globals()[name] = _core._UFUNCS[name] = ufunc(value)
        elif isinstance(value, (type, float)) or value is None or name in ("s_", "index_exp"):
            globals()[name] = value  # dtypes, constants, index helpers: NumPy's own
        elif callable(value) and not isinstance(value, _types.ModuleType):
            globals()[name] = _core.function(
                name, value, sync=_SYNC.get(name), scalar_to_device=name in _SCALAR_TO_DEVICE
            )
        else:
            raise AssertionError(f"cupy.{name}: not sorted into a kind")


_build_namespace(_CUPY_NAMES)
is_available = cuda.is_available
_core.namespace = _sys.modules[__name__]  # where __array_function__ looks functions up
strict.write_report_at_exit(__version__)
