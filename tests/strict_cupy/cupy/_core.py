"""The device array of the stand-in and the machinery every function shares.

A device array (`ndarray`) wraps a NumPy array, its `_host`, which plays the device memory.
Functions unwrap device arguments, refuse NumPy arrays, call NumPy, and wrap the results.
See the package docstring (cupy/__init__.py) for the rules and where they come from.
"""

import operator
import os
import warnings
import weakref

import numpy

from . import cuda, strict
from .cuda import memory, memory_hook

_np_ndarray = numpy.ndarray
_np_generic = numpy.generic
_PYTHON_SCALARS = frozenset((int, float, bool, complex))
_SUPPORTED_KINDS = frozenset("biufcV")  # bool, integers, floats, complex (and records)
_PLAIN_TYPES = frozenset(
    (int, float, bool, complex, str, type(None), type(Ellipsis), slice, type, numpy.dtype)
)  # arguments that never hold an array

namespace = None  # the cupy module, set by cupy/__init__.py (for __array_function__)


def _unsupported(value):
    """CuPy's error for an argument it cannot pass to a kernel (a NumPy array, a list)."""
    return TypeError(f"Unsupported type {type(value)}")


# ======================================================================================
# Kernel launches (counted only inside strict.counting(launches=True)) and CuPy 13's waits
# ======================================================================================

_launch_records = strict._launch_records  # the open blocks that count launches


def _launch(what):
    if _launch_records:
        strict.launch(what)


def _overlap_copies(inputs, out):
    """CuPy copies an input of an elementwise kernel that is not the output array itself but
    whose memory bounds overlap the output's (_kernel.pyx: _copy_in_args_if_needed): one more
    launch each."""
    if not _launch_records or type(out) is not ndarray:
        return
    for each in inputs:
        if (
            type(each) is ndarray
            and each is not out
            and numpy.may_share_memory(each._host, out._host)
        ):
            strict.launch("copy: input overlaps out=")


def _new_device_memory(result):
    """Did NumPy's `result` land in new memory (computed), not in a view of a device array?"""
    if type(result) is _np_ndarray:
        return id(_root(result)) not in _buffers
    if type(result) in (tuple, list):
        return any(_new_device_memory(each) for each in result)
    return isinstance(result, _np_generic)


def _sort_calls(shape):
    """Thrust calls of CuPy's sort of a C-contiguous array along its last axis (cupy_thrust.cu):
    one stable_sort for a 1-d array; a key transform and a stable_sort per chunk of at most
    2**22 entries of whole rows otherwise."""
    size = int(numpy.prod(shape))
    if size == 0:
        return 0
    if len(shape) == 1:
        return 1
    last = shape[-1]
    rows_per_chunk = max(min(1 << 22, size) // last, 1)
    return 2 * -(-(size // last) // rows_per_chunk)


def _partition_sorts(length, size, kth):
    """Does CuPy's partition sort the whole array (_routines_sorting.pyx, _ndarray_partition)?"""
    kths = [kth] if isinstance(kth, (int, numpy.integer)) else list(kth)
    max_k = max([0] + [k + length if k < 0 else k for k in kths])
    max_k = max(32, 1 << int(max_k).bit_length())
    t, sz = 4, 512
    while sz > 0 and length // sz < max_k + 32 * t:
        sz //= 2
    sz *= size // max(length, 1)
    return length < 32 or sz <= 32 or max_k >= 1024


def _thrust_waits(name, host, args, kwargs):
    """On CuPy 13.x every Thrust call ends in a stream synchronisation (the `par` policy; 14.0
    uses `par_nosync`): one sync per Thrust call of a sort, argsort or partition of `host`.
    args, kwargs: the call's arguments after the array, (axis) or (kth, axis)."""
    if strict.SERIES != 13 or host.size == 0:
        return
    if name in ("partition", "argpartition"):
        kth = kwargs.get("kth", args[0] if args else 0)
        axis = kwargs.get("axis", args[1] if len(args) > 1 else -1)
    else:
        kth, axis = None, kwargs.get("axis", args[0] if args else -1)
    if axis is None:
        shape = (host.size,)  # flattened
    else:
        axis = axis % host.ndim  # the sorted axis is moved last (a copy)
        shape = host.shape[:axis] + host.shape[axis + 1 :] + (host.shape[axis],)
    if name in ("argsort", "argpartition"):  # argpartition sorts fully, as argsort
        calls = 2 if len(shape) == 1 else 3
    elif name == "partition":
        calls = _sort_calls(shape) if _partition_sorts(shape[-1], host.size, kth) else 0
    else:
        calls = _sort_calls(shape)
    for _ in range(calls):
        strict.sync(f"{name}(): Thrust (CuPy 13.x)")


_THRUST = frozenset(("sort", "argsort", "partition", "argpartition"))


# ======================================================================================
# Device memory: which NumPy buffers are "device memory", for the memory hooks
# ======================================================================================

ALLOCATION_UNIT = 512  # CuPy rounds every allocation up to this (cuda/memory.pyx)
DEVICE_ID = 0
_hooks = memory_hook._hooks
_buffers = {}  # id(buffer) -> _BufferRef, every live buffer that is device memory
_in_use = memory._in_use  # bytes (rounded) in those buffers


class _BufferRef(weakref.ref):
    """A weak reference to a NumPy buffer that is device memory; it reports the free."""

    __slots__ = ("key", "mem_size")


def _freed(ref):
    """Called as the buffer dies: its memory goes back (free hooks)."""
    if _buffers.get(ref.key) is ref:
        del _buffers[ref.key]
    _in_use[0] -= ref.mem_size
    if _hooks:
        for hook in list(_hooks.values()):
            hook.free_preprocess(
                device_id=DEVICE_ID, mem_size=ref.mem_size, mem_ptr=ref.key, pmem_id=ref.key
            )
            hook.free_postprocess(
                device_id=DEVICE_ID, mem_size=ref.mem_size, mem_ptr=ref.key, pmem_id=ref.key
            )


def _track(buffer):
    """Count `buffer` (a NumPy array owning its memory) as a new device allocation."""
    size = buffer.nbytes
    if size == 0:
        return
    key = id(buffer)
    ref = _BufferRef(buffer, _freed)
    ref.key = key
    ref.mem_size = mem_size = -(-size // ALLOCATION_UNIT) * ALLOCATION_UNIT
    _buffers[key] = ref
    _in_use[0] += mem_size
    if _hooks:
        for hook in list(_hooks.values()):
            hook.malloc_preprocess(device_id=DEVICE_ID, size=size, mem_size=mem_size)
            hook.malloc_postprocess(
                device_id=DEVICE_ID, size=size, mem_size=mem_size, mem_ptr=key, pmem_id=key
            )


def _root(host):
    """The NumPy array that owns the memory `host` looks at (itself if it owns it)."""
    root, base = host, host.base
    while base is not None:  # a view: follow .base (through as_strided's DummyArray)
        if isinstance(base, _np_ndarray):
            root = base
        base = getattr(base, "base", None)
    return root


# ======================================================================================
# Wrapping and unwrapping
# ======================================================================================


def _wrap(host):
    """A device array around the NumPy array `host`; a NumPy scalar becomes a 0-d array."""
    if type(host) is not _np_ndarray:
        host = numpy.array(host)  # a NumPy scalar: CuPy returns 0-d arrays
    array = _new(ndarray)
    array._host = host
    base = host.base
    if base is None:  # owns its memory: new, or already device memory
        if id(host) not in _buffers:
            _track(host)
    elif type(base) is not _np_ndarray or base.base is not None or id(base) not in _buffers:
        root = _root(host)  # a view of memory not yet counted (a NumPy temporary)
        if id(root) not in _buffers:
            _track(root)
    return array


def _wrap_result(result, out=None):
    """Wrap whatever NumPy returned: arrays and scalars become device arrays; the array
    passed as out= comes back as the very device object that was passed."""
    t = type(result)
    if t is _np_ndarray:
        if out is not None:
            if type(out) is ndarray and out._host is result:
                return out
            if type(out) is tuple:
                for each in out:
                    if type(each) is ndarray and each._host is result:
                        return each
        return _wrap(result)
    if isinstance(result, _np_generic):
        return _wrap(result)
    if t is tuple or t is list:
        return t(_wrap_result(each, out) for each in result)
    return result


def _unwrap(value):
    """A device array -> its host array; lists and tuples element by element; a NumPy
    array is refused, as CuPy refuses every implicit host-to-device conversion."""
    t = type(value)
    if t is ndarray:
        return value._host
    if t in _PLAIN_TYPES:
        return value
    if t is tuple:
        for each in value:
            if type(each) not in _PLAIN_TYPES:
                return tuple([_unwrap(each) for each in value])
        return value  # a shape, an axis tuple: nothing to unwrap
    if t is list:
        return [_unwrap(each) for each in value]
    if isinstance(value, _np_ndarray):
        raise _unsupported(value)
    return value


def _unwrap_kwargs(kwargs):
    if not kwargs:
        return kwargs
    return {key: _unwrap(value) for key, value in kwargs.items()}


def _operand(value):
    """An operand of a ufunc: a device array, or a Python or NumPy scalar."""
    t = type(value)
    if t is ndarray:
        return value._host
    if t in _PYTHON_SCALARS or isinstance(value, _np_generic):
        return value
    raise _unsupported(value)


def _binary_operand(value):
    """Like _operand, but NotImplemented for an unknown type (Python then tries the other side)."""
    t = type(value)
    if t is ndarray:
        return value._host
    if t in _PYTHON_SCALARS or isinstance(value, _np_generic):
        return value
    if isinstance(value, _np_ndarray):
        raise _unsupported(value)
    return NotImplemented


def _contains_device(value):
    t = type(value)
    if t is ndarray:
        return True
    if t is list or t is tuple:
        return any(_contains_device(each) for each in value)
    return False


def _unwrap_device_only(value):
    """Device arrays inside a nested list -> host arrays; everything else unchanged."""
    t = type(value)
    if t is ndarray:
        return value._host
    if t is list or t is tuple:
        return t(_unwrap_device_only(each) for each in value)
    return value


# ======================================================================================
# Indexing
# ======================================================================================


def _slice_bound(bound):
    if type(bound) is ndarray:  # CuPy reads it with int(): a sync (internal.pyx)
        strict.sync("int() slice bound")
        return int(bound._host)
    return bound


def _index_item(item, writing):
    """(host index, is it an array index?) for one entry of an index."""
    t = type(item)
    if t is int or item is None or item is Ellipsis:
        return item, False
    if t is slice:
        if type(item.start) is ndarray or type(item.stop) is ndarray or type(item.step) is ndarray:
            item = slice(_slice_bound(item.start), _slice_bound(item.stop), _slice_bound(item.step))
        return item, False
    if t is ndarray:
        host = item._host
        if host.dtype.kind == "b" and host.size:
            strict.sync("boolean mask setitem" if writing else "boolean mask index")
        return host, True
    if isinstance(item, _np_ndarray) or t is list or t is tuple:
        # CuPy copies NumPy index arrays and lists to the device (_prepare_slice_list)
        strict.transfer("index array from host" if t is not list else "index list from host")
        host = numpy.asarray(item)
        if host.dtype.kind == "b" and host.size:
            strict.sync("boolean mask setitem" if writing else "boolean mask index")
        return item, True
    if isinstance(item, numpy.bool_) or t is bool:
        return item, True
    return item, False  # NumPy integers and anything NumPy will judge


def _plain_key(key):
    """Does the tuple `key` hold only integers, None, Ellipsis and slices of integers?"""
    for item in key:
        t = type(item)
        if t is slice:
            if (
                type(item.start) is ndarray
                or type(item.stop) is ndarray
                or type(item.step) is ndarray
            ):
                return False
        elif t is not int and item is not None and item is not Ellipsis:
            return False
    return True


def _index(key, writing=False):
    """(host key, does it hold an array index?)"""
    if type(key) is tuple:
        parts, advanced = [], False
        for item in key:
            host, is_array = _index_item(item, writing)
            parts.append(host)
            advanced = advanced or is_array
        return tuple(parts), advanced
    return _index_item(key, writing)


def _count_setitem(host, key, value, advanced):
    """The launches of device[key] = value, as CuPy's _scatter_op makes them: a scatter for an
    array index, a fill for a scalar; for a device array into a view of the same shape and
    strides, nothing if it is that very memory (a[i] += b stores a[i] back onto itself), a
    memcpy if the view is contiguous, else an elementwise copy (which first copies a value
    that overlaps the view)."""
    if advanced or value is None:
        _launch("setitem")
        return
    target, source = host[key], value._host
    if type(target) is not _np_ndarray:
        _launch("setitem")
        return
    if target.shape == source.shape and target.strides == source.strides:
        if target.ctypes.data == source.ctypes.data:
            return  # "Skip since x and y are the same array"
        if target.flags.c_contiguous and target.dtype == source.dtype:
            _launch("setitem (memcpy)")
            return
    if numpy.may_share_memory(source, target):
        strict.launch("copy: input overlaps out=")
    _launch("setitem")


def _wrapped_indices(key, shape):
    """The host key with every integer index array taken modulo the size of the axis it
    indexes, as CuPy's gather and scatter kernels do (_routines_indexing.pyx: _take kernel,
    _prepare_array_indexing: "wrap all out-of-bound indices"); NumPy would raise IndexError.
    A single Python integer out of bounds stays an IndexError, in CuPy too."""
    items = key if type(key) is tuple else (key,)

    def axes_taken(item):
        if item is None or item is Ellipsis or isinstance(item, (bool, numpy.bool_)):
            return 0
        if isinstance(item, (_np_ndarray, list)):
            array = numpy.asarray(item)
            return array.ndim if array.dtype.kind == "b" else 1
        return 1

    fixed = sum(axes_taken(item) for item in items)
    wrapped, axis = [], 0
    for item in items:
        if item is Ellipsis:
            axis += len(shape) - fixed
        elif isinstance(item, (_np_ndarray, list)) and axis < len(shape):
            array = numpy.asarray(item)
            if array.dtype.kind in "iu" and shape[axis] > 0:
                item = array % shape[axis]
        axis += axes_taken(item)
        wrapped.append(item)
    return tuple(wrapped) if type(key) is tuple else wrapped[0]


SLICE_COPY = bool(int(os.environ.get("CUPY_EXPERIMENTAL_SLICE_COPY", 0)))  # as cupy/_util.pyx


# ======================================================================================
# The device array
# ======================================================================================


def _binary(op):
    name = op.__name__

    def method(self, other):
        other = _binary_operand(other)
        if other is NotImplemented:
            return NotImplemented
        _launch(name)
        return _wrap(op(self._host, other))

    return method


def _reflected(op):
    name = op.__name__

    def method(self, other):
        other = _binary_operand(other)
        if other is NotImplemented:
            return NotImplemented
        _launch(name)
        return _wrap(op(other, self._host))

    return method


def _inplace(op):
    name = op.__name__

    def method(self, other):
        host = _binary_operand(other)
        if host is NotImplemented:
            return NotImplemented
        _overlap_copies((other,), self)
        _launch(name)
        op(self._host, host)  # NumPy's in-place operator writes into _host
        return self

    return method


def _comparison(op):
    name = op.__name__

    def method(self, other):
        if type(other) is _np_ndarray and other.ndim == 0:
            other = other.item()  # CuPy's workaround for numpy/numpy#12142 (core.pyx)
        other = _binary_operand(other)
        if other is NotImplemented:
            return NotImplemented
        _launch(name)
        return _wrap(op(self._host, other))

    return method


def _unary(op):
    name = op.__name__

    def method(self):
        _launch(name)
        return _wrap(op(self._host))

    return method


def _method(name):
    """An ndarray method that runs NumPy's method of the same name on the host array."""
    numpy_method = getattr(_np_ndarray, name)

    def method(self, *args, **kwargs):
        host = self._host
        if name in _THRUST:
            _thrust_waits(name, host, args, kwargs)
        if not args and not kwargs:
            result = numpy_method(host)
        else:
            result = numpy_method(host, *_unwrap(args), **_unwrap_kwargs(kwargs))
        if result is host:  # e.g. astype(same dtype, copy=False): self, as CuPy
            return self
        if _launch_records and (
            result is None  # in place (sort, partition)
            or kwargs.get("out") is not None
            or _new_device_memory(result)
        ):
            _launch(name)
        return _wrap_result(result, kwargs.get("out"))

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"numpy.ndarray.{name} on the device array."
    return method


class Flags:
    """The flags CuPy's ndarray has: c_contiguous, f_contiguous, owndata."""

    __slots__ = ("c_contiguous", "f_contiguous", "owndata")

    def __init__(self, host):
        flags = host.flags
        self.c_contiguous, self.f_contiguous = flags.c_contiguous, flags.f_contiguous
        self.owndata = host.base is None

    def __getitem__(self, name):
        return {
            "C_CONTIGUOUS": self.c_contiguous,
            "F_CONTIGUOUS": self.f_contiguous,
            "OWNDATA": self.owndata,
        }[name]

    def __repr__(self):
        return (
            f"  C_CONTIGUOUS : {self.c_contiguous}\n  F_CONTIGUOUS : {self.f_contiguous}\n"
            f"  OWNDATA : {self.owndata}"
        )


class ndarray:
    """A device array: CuPy's ndarray, its memory played by a NumPy array (`_host`).

    ndarray(shape, dtype=float, memptr=None, strides=None, order='C') makes a new,
    uninitialised array, as CuPy's constructor does.
    """

    __slots__ = ("_host", "__weakref__")
    __array_priority__ = 100  # as CuPy's
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotImplementedError(
                "the strict stand-in has no device pointers (memptr, strides)"
            )
        host = numpy.empty(shape, dtype=dtype, order=order)
        self._host = host
        _track(host)

    # ------------------------------------------------------------------ attributes
    @property
    def shape(self):
        return self._host.shape

    @shape.setter
    def shape(self, value):
        self._host.shape = value

    dtype = property(lambda self: self._host.dtype)
    size = property(lambda self: self._host.size)
    ndim = property(lambda self: self._host.ndim)
    strides = property(lambda self: self._host.strides)
    itemsize = property(lambda self: self._host.itemsize)
    nbytes = property(lambda self: self._host.nbytes)
    flags = property(lambda self: Flags(self._host))
    T = property(lambda self: _wrap(self._host.T))
    real = property(lambda self: _wrap(self._host.real))
    imag = property(lambda self: _wrap(self._host.imag))

    @property
    def base(self):
        """None if this array owns its memory, else an array of the memory it views."""
        if self._host.base is None:
            return None
        return _wrap(_root(self._host))

    @property
    def device(self):
        return cuda.Device(DEVICE_ID)

    # ------------------------------------------------------------------ refusals
    def __array__(self, dtype=None, copy=None):
        # core.pyx, ndarray.__array__ (CuPy 13.6 and 14.2)
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. "
            "Please use `.get()` to construct a NumPy array explicitly."
        )

    def __iter__(self):
        if self._host.ndim == 0:
            raise TypeError("iteration over a 0-d array")  # CuPy's message
        # Stricter than CuPy, which yields self[i], one kernel launch per row.
        raise TypeError(
            "iterating over a device array is refused by the strict stand-in "
            "(CuPy would launch one kernel per row): use array operations, "
            "or .get() first"
        )

    def __contains__(self, value):
        # CuPy has no __contains__ and iterates (see __iter__)
        raise TypeError(
            "`in` iterates over a device array, which the strict stand-in refuses: "
            "compare with array operations, e.g. (a == value).any()"
        )

    def __reduce__(self):
        # Stricter than CuPy, which pickles a host copy (a sync): array, (self.get(),)
        raise TypeError(
            "pickling a device array is refused by the strict stand-in (CuPy "
            "would copy it to the host): pickle an explicit .get() copy"
        )

    def __reduce_ex__(self, protocol):
        return self.__reduce__()

    # ------------------------------------------------------------------ host synchronisations
    def __float__(self):
        strict.sync("float()")
        return float(self._host)

    def __int__(self):
        strict.sync("int()")
        return int(self._host)

    def __complex__(self):
        strict.sync("complex()")
        return complex(self._host)

    def __bool__(self):
        host = self._host
        if host.size == 0:  # CuPy 13/14: a warning, no sync
            warnings.warn(
                "The truth value of an empty array is ambiguous. Returning False, but "
                "in future this will result in an error. Use `array.size > 0` to "
                "check that an array is not empty.",
                DeprecationWarning,
                stacklevel=2,
            )
            return False
        if host.size == 1:
            strict.sync("bool()")
            return bool(host.reshape(()))
        raise ValueError(
            "The truth value of an array with more than one element is "
            "ambiguous. Use a.any() or a.all()"
        )

    def __bytes__(self):
        strict.sync("bytes()")
        return bytes(self._host)

    def __repr__(self):
        strict.sync("repr()")
        return repr(self._host)

    def __str__(self):
        strict.sync("str()")
        return str(self._host)

    def __format__(self, format_spec):
        strict.sync("format()")
        return format(self._host, format_spec)

    def item(self):
        host = self._host
        if host.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        strict.sync("item()")
        return host.item()

    def tolist(self):
        strict.sync("tolist()")
        return self._host.tolist()

    def tobytes(self, order="C"):
        strict.sync("tobytes()")
        return self._host.tobytes(order)

    def get(self, stream=None, order="C", out=None, blocking=True):
        """A NumPy copy (waits for the device unless blocking=False)."""
        host = self._host
        if out is not None:
            if not isinstance(out, _np_ndarray):
                raise TypeError("Only numpy.ndarray can be obtained from cupy.ndarray")
            if out.dtype != host.dtype:
                raise TypeError(f"{out.dtype} array cannot be obtained from {host.dtype} array")
            if out.shape != host.shape:
                raise ValueError(
                    f"Shape mismatch. Expected shape: {host.shape}, actual shape: {out.shape}"
                )
            if blocking:
                strict.sync("get()")
            numpy.copyto(out, host)
            return out
        if host.size == 0:  # CuPy returns before it synchronises
            return numpy.ndarray(host.shape, dtype=host.dtype)
        if blocking:
            strict.sync("get()")
        order = order.upper()
        if order == "A":
            order = "F" if host.flags.f_contiguous and not host.flags.c_contiguous else "C"
        return numpy.array(host, order=order, copy=True)

    def set(self, arr, stream=None):
        """Copy the NumPy array `arr` into this device array (a host-to-device transfer)."""
        if not isinstance(arr, _np_ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        host = self._host
        if host.dtype != arr.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {host.dtype} array")
        if host.shape != arr.shape:
            raise ValueError(f"Shape mismatch. Old shape: {host.shape}, new shape: {arr.shape}")
        if not (host.flags.c_contiguous or host.flags.f_contiguous):
            raise RuntimeError("Cannot set to non-contiguous array")
        strict.transfer("set()")
        numpy.copyto(host, arr)

    # ------------------------------------------------------------------ container
    def __len__(self):
        return len(self._host)

    def __getitem__(self, key):
        host = self._host
        t = type(key)
        if t is int or (
            t is slice
            and type(key.start) is not ndarray
            and type(key.stop) is not ndarray
            and type(key.step) is not ndarray
        ):
            result = host[key]
        else:
            if t is not tuple or not _plain_key(key):
                key, advanced = _index(key)
                if advanced:
                    key = _wrapped_indices(key, host.shape)
                    _launch("gather (getitem)")
            result = host[key]
        if type(result) is not _np_ndarray:
            # every index an integer: NumPy gives a scalar, CuPy a 0-d view
            result = host[(key if type(key) is tuple else (key,)) + (Ellipsis,)]
        return _wrap(result)

    def __setitem__(self, key, value):
        host_key, advanced = _index(key, writing=True)
        if advanced:
            host_key = _wrapped_indices(host_key, self._host.shape)
        t = type(value)
        if _launch_records:
            _count_setitem(self._host, host_key, value if t is ndarray else None, advanced)
        if t is ndarray:
            value = value._host
        elif t in _PYTHON_SCALARS or isinstance(value, _np_generic):
            pass
        elif advanced:
            # CuPy copies the values to the device (_scatter_op_single: core.array(value))
            strict.transfer("setitem value from host")
            value = numpy.asarray(value)
        elif (
            SLICE_COPY
            and type(key) is slice
            and key == slice(None)
            and isinstance(value, _np_ndarray)
        ):
            if value.dtype != self._host.dtype or value.shape != self._host.shape:
                raise ValueError(
                    "copying a numpy.ndarray to a cupy.ndarray by empty slice "
                    "assignment must ensure arrays have same shape and dtype"
                )
            strict.transfer("setitem value from host")
        else:
            # Basic indexing: CuPy fills with the value, which must be a scalar (gh-2079)
            value = numpy.asarray(value)
            if value.shape != ():
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
            value = value[()]
        self._host[host_key] = value

    # ------------------------------------------------------------------ NumPy protocols
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # As CuPy's (core.pyx): run cupy's ufunc of the same name, or NotImplemented
        func = _UFUNCS.get(ufunc.__name__)
        if func is None:
            return NotImplemented
        if method != "__call__":
            func = getattr(func, method, None)
            if func is None:
                return NotImplemented
        inout = inputs
        if "out" in kwargs:
            out = kwargs["out"]
            if len(out) != 1:
                raise ValueError("The 'out' parameter must have exactly one array value")
            inout = inputs + out
            kwargs["out"] = out[0]
        for x in inout:
            if not (
                type(x) in _PYTHON_SCALARS or isinstance(x, (_np_generic, ndarray, _np_ndarray))
            ):
                return NotImplemented
        if ufunc.__name__ in _COMPARISONS:
            inputs = tuple(
                x.item() if type(x) is _np_ndarray and x.ndim == 0 else x for x in inputs
            )
        return func(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        # As CuPy's (core.pyx): cupy's function of the same module path and name
        try:
            module = namespace
            for part in func.__module__.split(".")[1:]:
                module = getattr(module, part)
            cupy_func = getattr(module, func.__name__)
        except AttributeError:
            return NotImplemented
        if cupy_func is func:
            return NotImplemented
        for t in types:
            if not issubclass(t, (ndarray, _np_ndarray)):
                return NotImplemented
        return cupy_func(*args, **kwargs)

    # ------------------------------------------------------------------ copies
    def __copy__(self):
        _launch("copy")
        return _wrap(self._host.copy())

    def __deepcopy__(self, memo):
        _launch("copy")
        return _wrap(self._host.copy())

    # ------------------------------------------------------------------ methods with rules
    def fill(self, value):
        if type(value) is ndarray:
            if value._host.shape != ():
                raise ValueError("non-scalar cupy.ndarray cannot be used for fill")
            value = value._host[()]
        elif isinstance(value, _np_ndarray):
            if value.shape != ():
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
            value = value[()]
        _launch("fill")
        self._host.fill(value)

    def nonzero(self):
        if self._host.size:
            strict.sync("nonzero()")
        _launch("nonzero")
        return _wrap_result(self._host.nonzero())

    def compress(self, condition, axis=None, out=None):
        if type(condition) is not ndarray:
            strict.transfer("compress condition from host")
            condition = numpy.asarray(condition)
        else:
            condition = condition._host
        strict.sync("compress()")
        _launch("compress")
        return _wrap_result(self._host.compress(condition, axis, _unwrap(out)), out)

    def repeat(self, repeats, axis=None):
        if type(repeats) is ndarray:
            strict.sync("repeat() with device repeats")
            repeats = repeats._host
        elif isinstance(repeats, _np_ndarray):
            raise TypeError(
                "'repeats' does not accept numpy.ndarray; convert with cupy.array() first"
            )
        _launch("repeat")
        return _wrap(self._host.repeat(repeats, axis))

    def take(self, indices, axis=None, out=None):
        if type(indices) is ndarray:
            indices = indices._host
        elif not isinstance(indices, (int, _np_generic)):
            strict.transfer("take indices from host")  # CuPy: core.array(indices)
            indices = numpy.asarray(indices)
        _launch("take")
        # CuPy's take wraps out-of-bounds indices around (its _take kernel), as indexing does
        return _wrap_result(self._host.take(indices, axis, _unwrap(out), mode="wrap"), out)

    def dot(self, b, out=None):
        if type(b) is not ndarray:
            raise _unsupported(b)
        _launch("dot")
        return _wrap_result(self._host.dot(b._host, _unwrap(out)), out)

    # ------------------------------------------------------------------ operators
    __add__ = _binary(operator.add)
    __sub__ = _binary(operator.sub)
    __mul__ = _binary(operator.mul)
    __truediv__ = _binary(operator.truediv)
    __floordiv__ = _binary(operator.floordiv)
    __mod__ = _binary(operator.mod)
    __pow__ = _binary(operator.pow)
    __matmul__ = _binary(operator.matmul)
    __and__ = _binary(operator.and_)
    __or__ = _binary(operator.or_)
    __xor__ = _binary(operator.xor)
    __lshift__ = _binary(operator.lshift)
    __rshift__ = _binary(operator.rshift)
    __divmod__ = _binary(divmod)

    __radd__ = _reflected(operator.add)
    __rsub__ = _reflected(operator.sub)
    __rmul__ = _reflected(operator.mul)
    __rtruediv__ = _reflected(operator.truediv)
    __rfloordiv__ = _reflected(operator.floordiv)
    __rmod__ = _reflected(operator.mod)
    __rpow__ = _reflected(operator.pow)
    __rmatmul__ = _reflected(operator.matmul)
    __rand__ = _reflected(operator.and_)
    __ror__ = _reflected(operator.or_)
    __rxor__ = _reflected(operator.xor)
    __rlshift__ = _reflected(operator.lshift)
    __rrshift__ = _reflected(operator.rshift)
    __rdivmod__ = _reflected(divmod)

    __iadd__ = _inplace(operator.iadd)
    __isub__ = _inplace(operator.isub)
    __imul__ = _inplace(operator.imul)
    __itruediv__ = _inplace(operator.itruediv)
    __ifloordiv__ = _inplace(operator.ifloordiv)
    __imod__ = _inplace(operator.imod)
    __ipow__ = _inplace(operator.ipow)
    __iand__ = _inplace(operator.iand)
    __ior__ = _inplace(operator.ior)
    __ixor__ = _inplace(operator.ixor)
    __ilshift__ = _inplace(operator.ilshift)
    __irshift__ = _inplace(operator.irshift)

    __eq__ = _comparison(operator.eq)
    __ne__ = _comparison(operator.ne)
    __lt__ = _comparison(operator.lt)
    __le__ = _comparison(operator.le)
    __gt__ = _comparison(operator.gt)
    __ge__ = _comparison(operator.ge)

    __neg__ = _unary(operator.neg)
    __pos__ = _unary(operator.pos)
    __abs__ = _unary(operator.abs)
    __invert__ = _unary(operator.invert)


# Methods that are NumPy's own, run on the host array (no rule of their own).
for _name in (
    "all any argmax argmin argpartition argsort astype clip conj conjugate copy "
    "cumprod cumsum diagonal flatten max mean min partition prod ravel reshape "
    "round sort squeeze std sum swapaxes trace transpose var view"
).split():
    setattr(ndarray, _name, _method(_name))
del _name

ndarray.__module__ = "cupy"
_new = object.__new__


# ======================================================================================
# ufuncs
# ======================================================================================

_COMPARISONS = frozenset(("greater", "greater_equal", "less", "less_equal", "equal", "not_equal"))


class ufunc:
    """A CuPy ufunc: NumPy's ufunc of the same name on device operands.

    Operands may be device arrays and Python or NumPy scalars; anything else (a NumPy
    array above all) is refused with CuPy's "Unsupported type" TypeError.
    """

    def __init__(self, numpy_ufunc):
        self._ufunc = numpy_ufunc
        self.__name__ = self.name = numpy_ufunc.__name__
        self.nin, self.nout, self.nargs = numpy_ufunc.nin, numpy_ufunc.nout, numpy_ufunc.nargs
        self.types = numpy_ufunc.types
        self.__doc__ = numpy_ufunc.__doc__

    def __repr__(self):
        return f"<ufunc '{self.__name__}'>"

    def __call__(self, *args, **kwargs):
        if _launch_records:
            _launch(self.__name__)
            out = kwargs.get("out", args[self.nin] if len(args) > self.nin else None)
            for each in out if type(out) is tuple else (out,):
                _overlap_copies(args[: self.nin], each)
        if not kwargs and len(args) == self.nin:  # the common case: inputs only
            if self.nin == 2:
                return _wrap_result(self._ufunc(_operand(args[0]), _operand(args[1])))
            return _wrap_result(self._ufunc(*[_operand(each) for each in args]))
        if len(args) > self.nin:  # outputs given by position, as CuPy allows
            if "out" in kwargs:
                raise TypeError("cannot specify 'out' as both a positional and keyword argument")
            outs = args[self.nin :]
            kwargs["out"] = outs[0] if len(outs) == 1 else outs
            args = args[: self.nin]
        hosts = [_operand(each) for each in args]
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = (
                tuple([_operand(each) for each in out]) if type(out) is tuple else _operand(out)
            )
        where = kwargs.get("where")
        if where is not None and where is not True:
            kwargs["where"] = _operand(where)
        return _wrap_result(self._ufunc(*hosts, **kwargs), out)

    def _method(self, name, args, kwargs):
        _launch(f"{self.__name__}.{name}")
        out = kwargs.get("out")
        return _wrap_result(
            getattr(self._ufunc, name)(*_unwrap(args), **_unwrap_kwargs(kwargs)), out
        )

    def reduce(self, *args, **kwargs):
        return self._method("reduce", args, kwargs)

    def accumulate(self, *args, **kwargs):
        return self._method("accumulate", args, kwargs)

    def reduceat(self, *args, **kwargs):
        return self._method("reduceat", args, kwargs)

    def outer(self, *args, **kwargs):
        return self._method("outer", args, kwargs)

    def at(self, a, indices, b=None):
        if type(a) is not ndarray:
            raise _unsupported(a)
        _launch(f"{self.__name__}.at")
        host_indices, advanced = _index(indices, writing=True)
        if advanced:
            host_indices = _wrapped_indices(host_indices, a._host.shape)
        if b is None:
            self._ufunc.at(a._host, host_indices)
            return
        if isinstance(b, (_np_ndarray, list, tuple)):
            strict.transfer("ufunc.at values from host")  # CuPy: core.array(value) (_scatter_op)
            b = numpy.asarray(b)
        self._ufunc.at(a._host, host_indices, _operand(b) if type(b) is not _np_ndarray else b)


_UFUNCS = {}  # name -> ufunc, filled by cupy/__init__.py


# ======================================================================================
# Functions
# ======================================================================================


def function(name, numpy_function, sync=None, scalar_to_device=False):
    """A CuPy function: `numpy_function` on the host arrays of device arguments.

    NumPy arrays among the arguments are refused. sync: the event to record (the output
    size depends on the data, so CuPy reads a count back to the host). scalar_to_device:
    a Python scalar result becomes a 0-d device array, as CuPy returns.
    """

    thrust = name in _THRUST
    computes = name not in _ALLOCATE_ONLY

    def wrapper(*args, **kwargs):
        if sync is not None and not (args and type(args[0]) is ndarray and args[0]._host.size == 0):
            strict.sync(sync)
        if thrust and args and type(args[0]) is ndarray:
            _thrust_waits(name, args[0]._host, args[1:], kwargs)
        out = kwargs.get("out") if kwargs else None
        result = numpy_function(*_unwrap(args), **_unwrap_kwargs(kwargs))
        if scalar_to_device and type(result) in _PYTHON_SCALARS:
            result = numpy.asarray(result)
        elif args and type(args[0]) is ndarray and result is args[0]._host:
            return args[0]  # nothing to do (ascontiguousarray of a C array)
        if _launch_records and computes and (out is not None or _new_device_memory(result)):
            _launch(name)
        return _wrap_result(result, out)

    wrapper.__name__ = wrapper.__qualname__ = name
    wrapper.__module__ = "cupy"
    wrapper.__doc__ = f"numpy.{name} on device arrays (strict stand-in)."
    return wrapper


_ALLOCATE_ONLY = frozenset(("empty", "empty_like"))  # memory, no kernel


def _check_dtype(host):
    if host.dtype.kind not in _SUPPORTED_KINDS:
        raise ValueError(f"Unsupported dtype {host.dtype}")


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    """A new device array from a device array (a device copy) or host data (a transfer)."""
    if type(obj) is ndarray:
        host = numpy.array(obj._host, dtype=dtype, copy=copy or None, order=order, ndmin=ndmin)
        if host is obj._host:
            return obj
        _launch("copy")
        return _wrap(host)
    if _contains_device(obj):  # a list of device arrays: stacked on the device
        _launch("stack")
        host = numpy.array(_unwrap_device_only(obj), dtype=dtype, order=order, ndmin=ndmin)
    else:
        # Host data: always a copy (device memory is never host memory)
        host = numpy.array(obj, dtype=dtype, copy=True, order=order, ndmin=ndmin)
        if host.ndim > 0:  # a 0-d value is a kernel argument (fill)
            strict.transfer("asarray() from host")
            memory.stage_host_copy(host.nbytes)  # through a pinned staging block
            if blocking:
                strict.sync("asarray(blocking=True)")
        else:
            _launch("fill")
    _check_dtype(host)
    return _wrap(host)


def asarray(a, dtype=None, order=None, *, copy=None, blocking=False):
    if type(a) is ndarray:
        host = numpy.asarray(a._host, dtype=dtype, order=order, copy=copy)
        if host is a._host:
            return a
        _launch("copy")
        return _wrap(host)
    if copy is False:
        raise ValueError("a host array cannot become a device array without a copy")
    return array(a, dtype, True, order or "K", blocking=blocking)


def asanyarray(a, dtype=None, order=None, *, copy=None, blocking=False):
    return asarray(a, dtype, order, copy=copy, blocking=blocking)


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    if type(a) is ndarray:
        return a.get(stream=stream, order=order, out=out, blocking=blocking)
    result = numpy.asarray(a, order=order)
    if out is not None:
        out[...] = result
        return out
    return result


def get_array_module(*args):
    for each in args:
        if type(each) is ndarray:
            return namespace
    return numpy


def copyto(dst, src, casting="same_kind", where=None):
    if type(dst) is not ndarray:
        raise _unsupported(dst)
    if isinstance(src, _np_ndarray):
        # cupy/_manipulation/basic.py: a NumPy source must be a single value
        if src.size != 1:
            raise ValueError("non-scalar numpy.ndarray cannot be used for copyto")
        src = src.squeeze()[()]
    _overlap_copies((src,), dst)
    _launch("copyto")
    numpy.copyto(
        dst._host, _unwrap(src), casting=casting, where=True if where is None else _operand(where)
    )


def where(condition, x=None, y=None):
    if x is None and y is None:
        if type(condition) is ndarray and condition._host.size:
            strict.sync("where() with one argument")
        _launch("where")
        return _wrap_result(numpy.where(_unwrap(condition)))
    _launch("where")
    return _wrap(numpy.where(_operand(condition), _operand(x), _operand(y)))


def repeat(a, repeats, axis=None):
    if type(a) is not ndarray:
        raise _unsupported(a)
    return a.repeat(repeats, axis)


def take(a, indices, axis=None, out=None):
    if type(a) is not ndarray:
        raise _unsupported(a)
    return a.take(indices, axis, out)


def average(a, axis=None, weights=None, returned=False, *, keepdims=False):
    if weights is not None:
        strict.sync("average() with weights")
    _launch("average")
    return _wrap_result(
        numpy.average(_unwrap(a), axis, _unwrap(weights), returned, keepdims=keepdims)
    )


def as_strided(x, shape=None, strides=None):
    """A view of x's memory with the given shape and strides (in bytes)."""
    if type(x) is not ndarray:
        raise _unsupported(x)
    return _wrap(numpy.lib.stride_tricks.as_strided(x._host, shape, strides))
