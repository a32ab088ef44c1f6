"""Tests of the strict CuPy stand-in (tests/strict_cupy/cupy) itself.

They import the stand-in directly, whatever backend the rest of the suite runs on, and
check that it refuses what CuPy refuses, computes what NumPy computes, keeps views views,
and counts host synchronisations and transfers where they happen.
"""

import copy
import gc
import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STAND_IN_DIR = os.path.join(HERE, "strict_cupy")

_already_imported = "cupy" in sys.modules
if _already_imported and getattr(sys.modules["cupy"], "STAND_IN", False) is not True:
    pytest.skip(
        "a real CuPy is imported: these tests are for the strict stand-in", allow_module_level=True
    )
_path_added = STAND_IN_DIR not in sys.path
if _path_added:
    sys.path.insert(0, STAND_IN_DIR)
import cupy  # noqa: E402  (found on the path just set)
from cupy.strict import Event  # noqa: E402

if _path_added and not _already_imported:
    # This module keeps its own reference; the rest of the session must not find a `cupy`
    # that the machine does not have (tests of "no CuPy installed" would be skipped).
    for _name in [name for name in sys.modules if name == "cupy" or name.startswith("cupy.")]:
        del sys.modules[_name]
    sys.path.remove(STAND_IN_DIR)

if getattr(cupy, "STAND_IN", False) is not True:
    pytest.skip("`import cupy` found a real CuPy, not the strict stand-in", allow_module_level=True)


def here(lines=0):
    """How the `where` of an event on the caller's line ends (the path before it is the
    file's, relative to the working directory the stand-in was imported in); lines=-1: of
    the line above the caller's, the statement whose event is checked."""
    frame = sys._getframe(1)
    return f"test_strict_backend.py:{frame.f_lineno + lines} in {frame.f_code.co_name}"


def host_and_device(shape=(3, 4), dtype=numpy.float32, seed=0):
    host = numpy.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return host, cupy.asarray(host)


# ======================================================================================
# What it is
# ======================================================================================


def test_it_is_the_stand_in_with_a_cupy_like_surface():
    assert cupy.STAND_IN is True and "strict" in cupy.__version__
    assert cupy.cuda.runtime.getDeviceCount() == 1
    assert float(cupy.arange(4, dtype=cupy.float32).sum()) == 6.0  # what use_device runs
    assert cupy.float32 is numpy.float32 and cupy.bool_ is numpy.bool_ and cupy.newaxis is None
    assert (
        cupy.inf == numpy.inf
        and numpy.isnan(cupy.nan)
        and cupy.pi == numpy.pi
        and cupy.e == numpy.e
    )
    assert cupy.dtype("float32") == numpy.float32
    device = cupy.zeros(3)
    assert isinstance(device, cupy.ndarray) and not isinstance(device, numpy.ndarray)
    assert cupy.get_array_module(device) is cupy
    assert cupy.get_array_module(numpy.zeros(3), 1.0) is numpy
    assert cupy.get_array_module(numpy.zeros(3), device) is cupy


def test_cuda_streams_devices_and_pools():
    assert cupy.cuda.Device(0).id == 0
    assert cupy.cuda.get_current_stream() is cupy.cuda.Stream.null
    stream = cupy.cuda.Stream()
    with stream:
        assert cupy.cuda.get_current_stream() is stream
    assert cupy.cuda.get_current_stream() is cupy.cuda.Stream.null
    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    assert pool.used_bytes() >= 0
    with pytest.raises(cupy.cuda.runtime.CUDARuntimeError):
        cupy.cuda.Device(1)


# ======================================================================================
# Refusals
# ======================================================================================


def test_implicit_conversion_to_numpy_is_refused():
    _, device = host_and_device()
    for convert in (numpy.asarray, numpy.array, lambda a: numpy.array(a, dtype=numpy.float64)):
        with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
            convert(device)
    with pytest.raises(TypeError, match="Implicit conversion"):
        numpy.asarray([device, device])


MIXED_WITH_NUMPY = {
    "device + numpy": lambda d, h: d + h,
    "numpy + device": lambda d, h: h + d,
    "numpy * device": lambda d, h: h * d,
    "device @ numpy": lambda d, h: d @ h.T,
    "device == numpy": lambda d, h: d == h,
    "device += numpy": lambda d, h: d.__iadd__(h),
    "cupy.maximum(device, numpy)": lambda d, h: cupy.maximum(d, h),
    "numpy.maximum(device, numpy)": lambda d, h: numpy.maximum(d, h),
    "cupy.concatenate([device, numpy])": lambda d, h: cupy.concatenate([d, h]),
    "numpy.concatenate([device, numpy])": lambda d, h: numpy.concatenate([d, h]),
    "cupy.stack([device, numpy])": lambda d, h: cupy.stack([d, h]),
    "numpy array as out=": lambda d, h: cupy.multiply(d, 2, out=h),
    "cupy.where(device, device, numpy)": lambda d, h: cupy.where(d > 0, d, h),
    "cupy.einsum with numpy": lambda d, h: cupy.einsum("ij,ij->", d, h),
    "cupy.zeros_like(numpy)": lambda d, h: cupy.zeros_like(h),  # stricter than CuPy
    "device.dot(numpy)": lambda d, h: d.dot(h.T),
}


@pytest.mark.parametrize("operation", MIXED_WITH_NUMPY.values(), ids=MIXED_WITH_NUMPY.keys())
def test_a_numpy_array_in_a_device_operation_fails(operation):
    """The proof that the stand-in can fail: code that mixes in a host array does not run."""
    host, device = host_and_device()
    with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
        operation(device, host)


def test_python_and_numpy_scalars_are_operands():
    host, device = host_and_device()
    for result, expected in (
        (device + 2, host + 2),
        (2.5 * device, 2.5 * host),
        (device * numpy.float32(2), host * numpy.float32(2)),
        (numpy.float32(2) * device, numpy.float32(2) * host),
        (cupy.maximum(device, 0), numpy.maximum(host, 0)),
        (device == numpy.array(0.0), host == 0.0),
    ):
        assert isinstance(result, cupy.ndarray)
        numpy.testing.assert_array_equal(result.get(), expected)


def test_a_numpy_array_assigned_with_basic_indexing_is_refused_as_cupy_does():
    host, device = host_and_device()
    for key in (Ellipsis, slice(None), slice(1, 3), 0, (0, slice(None))):
        with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
            device[key] = host[key]
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for copyto"):
        cupy.copyto(device, host)
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        device.fill(host)
    device[0, 0] = numpy.array(7.0)  # a 0-d NumPy array is a scalar
    cupy.copyto(device[1], numpy.array([8.0]))  # so is a one-element one, for copyto
    assert device[0, 0].item() == 7.0 and (device[1].get() == 8.0).all()


def test_a_numpy_array_assigned_through_an_index_array_is_a_transfer():
    host, device = host_and_device()
    values = numpy.full((2, 4), 5.0, dtype=numpy.float32)
    with cupy.strict.counting() as record:
        device[cupy.asarray([0, 2])] = values
        where = here(-1)
    expected = host.copy()
    expected[[0, 2]] = values
    numpy.testing.assert_array_equal(device.get(), expected)
    assert [(e.kind, e.what) for e in record.events] == [
        ("transfer", "asarray() from host"),
        ("transfer", "setitem value from host"),
    ]
    assert record.events[1].where.endswith(where)


def test_iteration_is_refused():
    _, device = host_and_device()
    with pytest.raises(TypeError, match="strict stand-in"):
        list(device)
    with pytest.raises(TypeError, match="strict stand-in"):
        for _ in device:
            pass
    with pytest.raises(TypeError, match="strict stand-in"):
        0.0 in device  # noqa: B015
    with pytest.raises(TypeError, match="iteration over a 0-d array"):
        iter(device.sum())


def test_pickling_and_json_are_refused():
    _, device = host_and_device()
    with pytest.raises(TypeError, match="pickl"):
        pickle.dumps(device)
    with pytest.raises(TypeError, match="pickl"):
        pickle.dumps({"weights": [device]})
    with pytest.raises(TypeError, match="not JSON serializable"):
        json.dumps(device.sum())
    with pytest.raises(TypeError, match="not JSON serializable"):
        json.dumps({"loss": device.sum()})
    duplicate = copy.deepcopy(device)  # copies are fine: they stay on the device
    assert isinstance(duplicate, cupy.ndarray) and duplicate is not device
    numpy.testing.assert_array_equal(duplicate.get(), device.get())


def test_a_device_integer_is_not_an_index_but_may_bound_a_device_slice():
    _, device = host_and_device()
    n = cupy.asarray(2)
    for use in (lambda: range(n), lambda: [1, 2, 3][n], lambda: numpy.arange(5)[:n]):
        with pytest.raises(TypeError):
            use()
    with cupy.strict.counting() as record:
        head = device[:n]
        where = here(-1)
    assert head.shape == (2, 4)
    (event,) = record.events
    assert (event.kind, event.what) == ("sync", "int() slice bound") and event.where.endswith(where)


def test_what_is_not_implemented_fails_loudly():
    _, device = host_and_device()
    for name in ("random", "fft", "save", "load", "fromfunction", "ElementwiseKernel", "mgrid"):
        with pytest.raises(AttributeError):
            getattr(cupy, name)
    with pytest.raises(AttributeError):
        device.ptp  # noqa: B018  (NumPy 2 has no ndarray.ptp)
    with pytest.raises(TypeError, match="no implementation found"):
        numpy.fft.fft(device)
    with pytest.raises(ValueError, match="Unsupported dtype"):
        cupy.asarray(["text"])
    with pytest.raises(NotImplementedError):
        cupy.ndarray((2,), memptr=object())


def test_truth_values_follow_cupy():
    with cupy.strict.counting() as record:
        with pytest.warns(DeprecationWarning):
            assert not bool(cupy.zeros(0))  # empty: a warning and False, no sync
        with pytest.raises(ValueError, match="ambiguous"):
            bool(cupy.zeros(3))
    assert record.syncs == 0


# ======================================================================================
# Indexing, views, results
# ======================================================================================


def test_numpy_index_arrays_are_accepted_and_counted_as_transfers():
    host, device = host_and_device((5, 4))
    rows, columns = numpy.array([4, 0, 2]), numpy.array([1, 3, 0])
    mask = numpy.array([True, False, True, False, True])
    with cupy.strict.counting() as record:
        numpy.testing.assert_array_equal(device[rows].get(), host[rows])
        numpy.testing.assert_array_equal(device[rows, columns].get(), host[rows, columns])
        numpy.testing.assert_array_equal(device[[4, 1]].get(), host[[4, 1]])
        numpy.testing.assert_array_equal(device[mask].get(), host[mask])
        numpy.testing.assert_array_equal(device.take(rows, axis=0).get(), host.take(rows, axis=0))
    counts = record.counts()
    assert sum(c for e, c in counts.items() if e.what == "index array from host") == 4
    assert sum(c for e, c in counts.items() if e.what == "index list from host") == 1
    assert sum(c for e, c in counts.items() if e.what == "take indices from host") == 1
    assert sum(c for e, c in counts.items() if e.what == "boolean mask index") == 1


def test_reductions_and_single_elements_are_0d_device_arrays():
    host, device = host_and_device()
    results = {
        "sum": device.sum(),
        "max": device.max(),
        "mean": cupy.mean(device),
        "numpy.sum": numpy.sum(device),
        "count_nonzero": cupy.count_nonzero(device),
        "allclose": cupy.allclose(device, device),
        "element": device[1, 2],
        "argmax": device.argmax(),
        "norm": cupy.linalg.norm(device),
    }
    for name, result in results.items():
        assert isinstance(result, cupy.ndarray) and result.shape == (), name
    assert results["sum"].get() == pytest.approx(host.sum(), rel=1e-6)
    assert int(results["count_nonzero"]) == numpy.count_nonzero(host)
    assert bool(results["allclose"]) is True
    assert results["element"].item() == host[1, 2]


def test_writes_through_views_reach_the_base():
    base = cupy.zeros((4, 6), dtype=cupy.float32)
    base[1:3, ::2] = 1.0  # slice
    base.reshape(24)[-1] = 2.0  # reshape
    base.T[0, 3] = 3.0  # transpose
    base[0, 5][...] = 4.0  # a single element is a 0-d view
    window = cupy.lib.stride_tricks.as_strided(base, shape=(2, 2), strides=(base.strides[0], 4))
    window += 10.0  # as_strided
    row = base[2]
    cupy.multiply(row, 0.5, out=row)  # out=
    expected = numpy.zeros((4, 6), dtype=numpy.float32)
    expected[1:3, ::2] = 1.0
    expected.reshape(24)[-1] = 2.0
    expected.T[0, 3] = 3.0
    expected[0, 5] = 4.0
    numpy.lib.stride_tricks.as_strided(expected, (2, 2), (expected.strides[0], 4))[...] += 10.0
    expected[2] *= 0.5
    numpy.testing.assert_array_equal(base.get(), expected)
    assert base.flags.owndata and not row.flags.owndata and row.base is not None


def test_out_returns_the_very_device_array_passed():
    host, device = host_and_device()
    out = cupy.empty_like(device)
    assert cupy.multiply(device, 2, out=out) is out
    assert numpy.multiply(device, 2, out=out) is out  # through __array_ufunc__
    assert cupy.maximum(out, device, out) is out  # out given by position
    column_sums = cupy.empty(4, dtype=cupy.float32)
    assert device.sum(axis=0, out=column_sums) is column_sums
    assert cupy.add.reduce(device, axis=0, out=column_sums) is column_sums
    numpy.testing.assert_allclose(column_sums.get(), host.sum(axis=0), rtol=1e-6)


def test_numpy_functions_dispatch_to_the_stand_in():
    host, device = host_and_device()
    for result, expected in (
        (numpy.exp(device), numpy.exp(host)),
        (numpy.concatenate([device, device]), numpy.concatenate([host, host])),
        (numpy.add.reduce(device, axis=1), numpy.add.reduce(host, axis=1)),
        (numpy.abs(device), numpy.abs(host)),
        (numpy.mean(device, axis=0), numpy.mean(host, axis=0)),
        (numpy.pad(device, 1), numpy.pad(host, 1)),
    ):
        assert isinstance(result, cupy.ndarray)
        numpy.testing.assert_allclose(result.get(), expected, rtol=1e-6)


def test_results_match_numpy():
    rng = numpy.random.default_rng(1)
    x = rng.standard_normal((2, 6, 6, 3)).astype(numpy.float32)
    w = rng.standard_normal((27, 5)).astype(numpy.float32)
    labels = numpy.array([1, 3])
    scores = rng.random(50)
    cases = {
        "elementwise": lambda xp, x, w: xp.tanh(xp.sqrt(xp.abs(x)) * 2 - xp.exp(-x) / 3),
        "matmul": lambda xp, x, w: x.reshape(-1, 3)[:27].T @ w[:27, :3],
        "einsum": lambda xp, x, w: xp.einsum("nhwc,nhwc->nc", x, x),
        "im2col": lambda xp, x, w: (
            xp.ascontiguousarray(
                xp.lib.stride_tricks.as_strided(
                    x, (2, 4, 4, 3, 3, 3), x.strides[:3] + x.strides[1:]
                )
            ).reshape(32, 27)
            @ w
        ),
        "reductions": lambda xp, x, w: xp.stack(
            [x.sum(), x.mean(), x.var(), x.std(), x.max(), x.min(), (x > 0).sum(), x.prod() * 0]
        ),
        "axis reductions": lambda xp, x, w: x.mean(axis=(0, 1, 2)) + x.var(axis=(0, 1, 2)),
        "argmax": lambda xp, x, w: x.reshape(2, -1).argmax(axis=1),
        "fancy": lambda xp, x, w: x.reshape(2, -1)[xp.arange(2), xp.asarray(labels)],
        "tile, pad, concatenate": lambda xp, x, w: xp.concatenate(
            [xp.tile(x[0, 0, 0], 4), xp.pad(x[0, :, :, 0], 1).ravel()]
        ),
        "where, cumsum, flatnonzero": lambda xp, x, w: xp.concatenate(
            [
                xp.where(x > 0, x, 0).ravel(),
                xp.cumsum(x.ravel() > 0),
                xp.flatnonzero(x.ravel() > 1).astype(xp.float32),
            ]
        ),
        "partition": lambda xp, x, w: xp.partition(xp.asarray(scores), 40)[40],
        "isnan, isfinite": lambda xp, x, w: xp.stack([xp.isnan(x).any(), xp.isfinite(x).all()]),
        "broadcast_to": lambda xp, x, w: xp.broadcast_to(
            x[:, None, :1, :1, :], (2, 3, 1, 1, 3)
        ).copy(),
        "repeat, clip, round": lambda xp, x, w: xp.round(x.clip(-1, 1).repeat(2, axis=0), 2),
    }
    for name, case in cases.items():
        expected = case(numpy, x, w)
        got = case(cupy, cupy.asarray(x), cupy.asarray(w))
        assert isinstance(got, cupy.ndarray), name
        assert got.dtype == numpy.asarray(expected).dtype, name
        numpy.testing.assert_allclose(got.get(), expected, rtol=1e-5, atol=1e-6, err_msg=name)


def test_in_place_updates_through_index_arrays():
    host, device = host_and_device((4, 5))
    rows, labels = numpy.arange(4), numpy.array([0, 4, 2, 2])
    host[rows, labels] -= 1
    device[cupy.asarray(rows), cupy.asarray(labels)] -= 1
    host[host > 0.5] = 0.5
    device[device > 0.5] = 0.5
    numpy.testing.assert_array_equal(device.get(), host)


# ======================================================================================
# Counting host synchronisations and transfers
# ======================================================================================


def _device_values():
    return cupy.asarray(numpy.array([[0.0, 1.5], [-2.0, 1.5]], dtype=numpy.float32))


SYNCS = {  # what -> an operation that makes the host wait once, in CuPy
    "float()": lambda d: float(d.sum()),
    "int()": lambda d: int(d.max()),
    "complex()": lambda d: complex(d[0, 0]),
    "bool()": lambda d: bool(d.any()),
    "item()": lambda d: d[0, 1].item(),
    "get()": lambda d: d.get(),
    "tolist()": lambda d: d.tolist(),
    "repr()": lambda d: repr(d),
    "str()": lambda d: str(d),
    "format()": lambda d: f"{d.sum():.3f}",
    "nonzero()": lambda d: d.nonzero(),
    "flatnonzero()": lambda d: cupy.flatnonzero(d),
    "argwhere()": lambda d: cupy.argwhere(d),
    "unique()": lambda d: cupy.unique(d),
    "where() with one argument": lambda d: cupy.where(d > 0),
    "compress()": lambda d: d.compress(d[0] > 0, axis=1),
    "boolean mask index": lambda d: d[d > 0],
    "boolean mask setitem": lambda d: d.__setitem__(d > 0, 0.0),
    "int() slice bound": lambda d: d[: cupy.asarray(1)],
    "Stream.synchronize()": lambda d: cupy.cuda.get_current_stream().synchronize(),
    "Device.synchronize()": lambda d: cupy.cuda.Device(0).synchronize(),
    "runtime.deviceSynchronize()": lambda d: cupy.cuda.runtime.deviceSynchronize(),
    "repeat() with device repeats": lambda d: d.ravel().repeat(cupy.arange(4) % 3),
}


@pytest.mark.parametrize("what", SYNCS.keys())
def test_each_kind_of_sync_is_counted_once_where_it_happens(what):
    operation = SYNCS[what]
    device = _device_values()
    where = f"test_strict_backend.py:{operation.__code__.co_firstlineno} in <lambda>"
    with cupy.strict.counting() as record:
        operation(device)
    assert record.syncs == 1 and record.transfers == 0, record.summary()
    (event,) = record.events
    assert isinstance(event, Event) and event.kind == "sync" and event.what == what
    assert event.where.endswith(where), (event.where, where)


def test_asnumpy_is_a_sync_and_host_arrays_are_not():
    device = _device_values()
    with cupy.strict.counting() as record:
        host = cupy.asnumpy(device)
        where = here(-1)
        again = cupy.asnumpy(host)
    assert isinstance(host, numpy.ndarray) and isinstance(again, numpy.ndarray)
    assert [(e.kind, e.what) for e in record.events] == [("sync", "get()")]
    assert record.events[0].where.endswith(where)


def test_device_work_does_not_sync():
    device = _device_values()
    with cupy.strict.counting() as record:
        total = device.sum() * 2 + device.max()
        count = cupy.count_nonzero(device > 0)
        kth = cupy.partition(device.ravel(), 2)[2]
        keep = device.ravel() > kth
        keep |= (device.ravel() == kth) & (cupy.cumsum(device.ravel() == kth) <= count - keep.sum())
        scaled = device / cupy.where(total > 0, total, 1)
        _ = (len(device), device.shape, device.dtype, device.size, device.strides, scaled.T, keep)
    assert record.events == [], record.summary()


def test_transfers_are_counted_and_are_not_syncs():
    host = numpy.arange(6.0)
    with cupy.strict.counting() as record:
        device = cupy.asarray(host)
        where = here(-1)
        assert cupy.asarray(device) is device  # already on the device
        cupy.asarray(3.0)  # a scalar: a kernel argument
        device.set(host * 2)
    assert record.syncs == 0
    assert [(e.kind, e.what) for e in record.events] == [
        ("transfer", "asarray() from host"),
        ("transfer", "set()"),
    ]
    assert record.events[0].where.endswith(where)
    host[0] = 100.0  # the device copy is separate
    assert device[0].item() == 0.0


def test_counting_blocks_nest_and_the_total_sees_everything():
    device = _device_values()
    before = cupy.strict.total().syncs
    with cupy.strict.counting() as outer:
        float(device.sum())
        first = here(-1)
        with cupy.strict.counting() as inner:
            int(device.max())
            second = here(-1)
        float(device.min())
    assert inner.syncs == 1 and inner.events[0].where.endswith(second)
    assert outer.syncs == 3 and outer.events[0].where.endswith(first)
    assert outer.events[1] == inner.events[0]
    assert cupy.strict.total().syncs == before + 3
    assert outer.by_location()[outer.events[0].where] == 1
    summary = outer.summary()
    assert summary.splitlines()[0] == "3 syncs, 0 transfers"
    assert "float()" in summary and "int()" in summary and first in summary
    saved = cupy.strict._total.copy()  # the session's own total is put back after
    try:
        cupy.strict.reset_total()
        assert cupy.strict.total().events == []
        float(device.sum())
        assert cupy.strict.total().syncs == 1
    finally:
        cupy.strict._total.clear()
        cupy.strict._total.update(saved)


def test_summary_puts_the_most_frequent_first():
    device = _device_values()
    with cupy.strict.counting() as record:
        for _ in range(3):
            float(device.sum())
        int(device.max())
    lines = record.summary().splitlines()
    assert lines[1].split()[:3] == ["3", "sync", "float()"]
    assert lines[2].split()[:3] == ["1", "sync", "int()"]


# ======================================================================================
# Memory hooks
# ======================================================================================


class PeakHook(cupy.cuda.memory_hook.MemoryHook):
    """The hook bench.py installs, with allocation and free counts."""

    name = "TestPeakHook"

    def __init__(self):
        self.in_use, self.peak, self.mallocs, self.frees = 0, 0, 0, 0

    def malloc_postprocess(self, device_id, size, mem_size, mem_ptr, pmem_id):
        self.in_use += mem_size
        self.peak = max(self.peak, self.in_use)
        self.mallocs += 1

    def free_postprocess(self, device_id, mem_size, mem_ptr, pmem_id):
        self.in_use -= mem_size
        self.frees += 1


@pytest.fixture
def no_garbage_collection():
    """No cyclic garbage collection during the test: it could free others' device arrays."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()


def test_the_memory_hook_sees_allocations_and_frees(no_garbage_collection):
    pool = cupy.get_default_memory_pool()
    used = pool.used_bytes()
    with PeakHook() as hook:
        a = cupy.zeros((1000,), dtype=cupy.float32)  # 4000 bytes -> 4096
        views = [
            a[10:20],
            a.reshape(10, 100),
            a.T,
            a[::2],
            cupy.lib.stride_tricks.as_strided(a, (10, 10), (4, 4)),
        ]
        assert (hook.mallocs, hook.in_use) == (1, 4096)  # views allocate nothing
        b = a + 1  # a second 4096
        assert (hook.mallocs, hook.in_use, pool.used_bytes() - used) == (2, 8192, 8192)
        del b
        assert (hook.frees, hook.in_use) == (1, 4096)
        del a
        assert hook.frees == 1  # the views keep it alive
        del views
        assert (hook.frees, hook.in_use, hook.peak) == (2, 0, 8192)
        small = cupy.ones(3)  # rounded to 512 bytes
        assert hook.in_use == 512
        del small
    assert pool.used_bytes() == used
    assert "TestPeakHook" not in cupy.cuda.memory_hook.get_memory_hooks()


def test_a_hook_name_is_installed_once():
    with PeakHook():
        with pytest.raises(KeyError, match="already exists"):
            PeakHook().__enter__()


# ======================================================================================
# Kernel launches
# ======================================================================================


def _launches(operation):
    """The launch events of operation() as (what, count) in order of first appearance."""
    with cupy.strict.counting(launches=True) as record:
        operation()
    assert record.syncs == record.transfers == 0, record.summary()
    return [(event.what, count) for event, count in record.counts().items()]


def test_every_computing_operation_is_one_launch_and_a_view_none():
    a = cupy.zeros((4, 6), dtype=cupy.float32)
    b = cupy.ones((4, 6), dtype=cupy.float32)
    assert _launches(lambda: (a + b, a * 2, -a, a == b)) == [
        ("add", 1),
        ("mul", 1),
        ("neg", 1),
        ("eq", 1),
    ]
    assert _launches(lambda: (cupy.tanh(a), cupy.multiply(a, b, out=a), a @ b.T)) == [
        ("tanh", 1),
        ("multiply", 1),
        ("matmul", 1),
    ]
    assert _launches(lambda: (a.sum(), a.max(axis=0), a.copy(), a.astype(cupy.float64))) == [
        ("sum", 1),
        ("max", 1),
        ("copy", 1),
        ("astype", 1),
    ]
    assert _launches(lambda: (cupy.zeros(3), cupy.full(3, 2.0), cupy.concatenate([a, b]))) == [
        ("zeros", 1),
        ("full", 1),
        ("concatenate", 1),
    ]

    def views():
        return (
            a[1:3],
            a[:, ::2],
            a.T,
            a.reshape(6, 4),
            a.ravel(),
            cupy.broadcast_to(a[0], (3, 6)),
            cupy.lib.stride_tricks.as_strided(a, (2, 2), (4, 4)),
            cupy.empty((5, 5)),
            cupy.empty_like(a),
            cupy.ascontiguousarray(a),
        )

    assert _launches(views) == []


def test_in_place_writes_and_gathers_are_launches():
    a = cupy.zeros((4, 6), dtype=cupy.float32)

    def writes():
        a[1] = 3.0  # a fill
        a[2:] += 1.0  # the add; storing the view back onto itself launches nothing
        a[0] = a[3]  # a contiguous copy (CuPy: a memcpy)
        a[:, 0] = a[:, 1]  # an elementwise copy (the two columns' bounds overlap)
        a[cupy.asarray(numpy.array([0, 2]))] = 1.0  # a scatter
        a[cupy.asarray(numpy.array([1, 3]))]  # a gather

    with cupy.strict.counting(launches=True) as record:
        writes()
    assert [(e.kind, e.what) for e in record.events] == [
        ("launch", "setitem"),
        ("launch", "iadd"),
        ("launch", "setitem (memcpy)"),
        ("launch", "copy: input overlaps out="),
        ("launch", "setitem"),
        ("transfer", "asarray() from host"),
        ("launch", "setitem"),
        ("transfer", "asarray() from host"),
        ("launch", "gather (getitem)"),
    ]


def test_an_input_that_overlaps_the_output_costs_a_copy_as_in_cupy():
    block = cupy.zeros((4, 9), dtype=cupy.float32)
    first, last = block[:, :3], block[:, 6:]  # distinct views of one block: bounds overlap
    other = cupy.ones((4, 3), dtype=cupy.float32)
    rows = cupy.zeros((3, 4, 3), dtype=cupy.float32)
    assert _launches(lambda: cupy.multiply(first, other, out=last)) == [
        ("multiply", 1),
        ("copy: input overlaps out=", 1),
    ]
    assert _launches(lambda: last.__iadd__(first)) == [
        ("copy: input overlaps out=", 1),
        ("iadd", 1),
    ]
    # the same object as input and output, another array, or rows that only touch: no copy
    assert _launches(lambda: cupy.tanh(last, out=last)) == [("tanh", 1)]
    assert _launches(lambda: cupy.multiply(other, other, out=last)) == [("multiply", 1)]
    assert _launches(lambda: cupy.multiply(rows[0], rows[1], out=rows[2])) == [("multiply", 1)]


def test_launches_are_counted_only_where_asked_and_never_in_the_total():
    cupy.strict.reset_total()
    a = cupy.zeros(5)
    with cupy.strict.counting() as plain, cupy.strict.counting(launches=True) as counted:
        a + 1
    assert plain.launches == 0 and counted.launches == 1
    assert cupy.strict.total().events == [] and "1 launches" in counted.summary()


# ======================================================================================
# CuPy 13's waits in Thrust sorts
# ======================================================================================


def test_on_cupy_13_every_thrust_sort_waits_and_on_14_none():
    values = cupy.asarray(numpy.random.default_rng(0).random(10_000, dtype=numpy.float32))
    table = cupy.asarray(numpy.random.default_rng(1).random((3, 5), dtype=numpy.float32))

    def sorts():
        cupy.sort(values)  # one stable_sort
        cupy.argsort(values)  # an index transform and a stable_sort_by_key
        cupy.sort(table)  # 2-d: a key transform and a stable_sort
        cupy.argsort(table, axis=0)  # 2-d: two transforms and a stable_sort_by_key
        values.copy().sort()
        cupy.partition(values, 9_000)  # kth + 1 above 512: CuPy sorts the whole array
        cupy.partition(values[:20], 5)  # fewer than 32 entries: sorted too
        cupy.argpartition(values, 5)  # always a full argsort

    for series, expected in ((14, 0), (13, 1 + 2 + 2 + 3 + 1 + 1 + 1 + 2)):
        with cupy.strict.mirroring(series), cupy.strict.counting() as record:
            sorts()
        assert record.syncs == expected, (series, record.summary())
    with cupy.strict.mirroring(13), cupy.strict.counting() as record:
        cupy.partition(values, 10)  # small kth, long array: CuPy's own selection kernels
        cupy.partition(cupy.asarray(numpy.arange(100_000.0)), 50)
    assert record.syncs == 1, record.summary()  # 10_000 entries: its subarrays are too few
    with pytest.raises(ValueError, match="13 or 14"):
        with cupy.strict.mirroring(12):
            pass
    assert cupy.strict.SERIES == 14


# ======================================================================================
# Integer index arrays wrap around, as CuPy's gather and scatter do
# ======================================================================================


def test_integer_index_arrays_wrap_around_as_cupy_does():
    host, device = host_and_device((4, 5))
    index = numpy.array([1, 5, -1, 9, -6])  # 5 -> 1, -1 -> 3, 9 -> 1, -6 -> 2 on an axis of 4
    wrapped = index % 4
    numpy.testing.assert_array_equal(device[cupy.asarray(index)].get(), host[wrapped])
    numpy.testing.assert_array_equal(device[index].get(), host[wrapped])  # a host index too
    numpy.testing.assert_array_equal(device[:, cupy.asarray([7, -8])].get(), host[:, [2, 2]])
    numpy.testing.assert_array_equal(
        device[..., cupy.asarray([5])].get(), host[..., [0]]
    )  # Ellipsis first
    numpy.testing.assert_array_equal(
        device[cupy.asarray([4]), cupy.asarray([6])].get(), host[[0], [1]]
    )
    numpy.testing.assert_array_equal(device.take(cupy.asarray([21])).get(), host.ravel()[[1]])
    device[cupy.asarray([4])] = 7.0  # row 0
    assert (device[0].get() == 7.0).all()
    counts = cupy.zeros(3)
    cupy.add.at(counts, cupy.asarray([3, 4, 0]), 1.0)
    numpy.testing.assert_array_equal(counts.get(), [2.0, 1.0, 0.0])
    labels = cupy.asarray([0, 10, 3])  # a label of 10 among 10 classes is class 0 on a GPU
    logits = cupy.asarray(numpy.arange(30.0).reshape(3, 10))
    numpy.testing.assert_array_equal(logits[cupy.arange(3), labels].get(), [0.0, 10.0, 23.0])
    with pytest.raises(IndexError):
        device[4]  # a single Python integer out of bounds is an error, in CuPy too
    mask = cupy.asarray(numpy.array([True, False, True, False]))
    numpy.testing.assert_array_equal(device[mask].get(), device.get()[[0, 2]])


# ======================================================================================
# The pinned staging memory of host-to-device copies
# ======================================================================================


def test_host_copies_hold_pinned_memory_until_they_have_finished_and_the_pool_is_emptied():
    pool = cupy.get_default_pinned_memory_pool()
    cupy.cuda.get_current_stream().synchronize()
    pool.free_all_blocks()
    assert cupy.strict.pinned_host_bytes() == 0
    a = cupy.asarray(numpy.zeros(1000, dtype=numpy.float32))  # 4,000 bytes, a 4,096 block
    cupy.asarray(numpy.float32(1.0))  # a 0-d value is a kernel argument: no staging
    assert cupy.strict.pinned_host_bytes() == 4096 and pool.n_free_blocks() == 0
    pool.free_all_blocks()  # the copy may still be running: its block stays
    assert cupy.strict.pinned_host_bytes() == 4096
    float(a.sum())  # the host waited for the device: the copy has finished
    assert pool.n_free_blocks() == 1 and cupy.strict.pinned_host_bytes() == 4096  # kept
    cupy.asarray(numpy.ones(1000, dtype=numpy.float32))  # reuses that block
    assert cupy.strict.pinned_host_bytes() == 4096 and pool.n_free_blocks() == 0
    cupy.cuda.get_current_stream().synchronize()
    pool.free_all_blocks()
    assert cupy.strict.pinned_host_bytes() == 0 and pool.n_free_blocks() == 0


# ======================================================================================
# The report file of a child process
# ======================================================================================


def _child_environment(report):
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [STAND_IN_DIR, ROOT] + [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    environment["SNIP_MIN_STRICT_REPORT"] = str(report)
    return environment


def test_a_child_process_writes_the_report_file(tmp_path):
    report = tmp_path / "strict.json"
    code = textwrap.dedent("""\
        import cupy
        x = cupy.asarray([1.0, 2.0, 3.0])
        for _ in range(2):
            float(x.sum())
        print(cupy.__version__)
        """)
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=_child_environment(report),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    contents = json.loads(report.read_text())
    assert contents["stand_in"] == cupy.__version__ == result.stdout.strip()
    assert contents["mirrors"] == "CuPy 14"
    assert (contents["syncs"], contents["transfers"]) == (2, 1)
    assert contents["events"][0] == {
        "kind": "sync",
        "what": "float()",
        "where": "<string>:4 in <module>",
        "count": 2,
    }
    assert not [name for name in os.listdir(tmp_path) if name != "strict.json"]  # no temp left


def test_each_child_process_may_write_its_own_report(tmp_path):
    code = "import os, cupy; print(os.getpid())"
    children = [
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            env=_child_environment(tmp_path / "strict-{pid}.json"),
        )
        for _ in range(2)
    ]
    for child in children:
        assert child.returncode == 0, child.stderr
        report = json.loads((tmp_path / f"strict-{child.stdout.strip()}.json").read_text())
        assert report["stand_in"] == cupy.__version__ and report["events"] == []


def test_snip_min_trains_on_the_stand_in_as_on_numpy(tmp_path):
    """End to end in a child process (the backend switch stays untouched here): one SNIP
    and a few training steps of lenet300 give the same numbers on the stand-in as on NumPy."""
    report = tmp_path / "strict.json"
    code = textwrap.dedent("""\
        import json, numpy, cupy, models, snip_min as sm
        out = {}
        for device in ("cpu", "gpu"):
            sm.use_device(device)
            rng = numpy.random.default_rng(0)
            model = models.build("lenet300")
            sm.initialise(model, "vs-h", rng)
            images = sm.xp.asarray(rng.standard_normal((20, 28, 28, 1)), dtype=sm.xp.float32)
            labels = sm.xp.asarray(rng.integers(0, 10, 20))
            sm.snip(model, images, labels, 0.9)
            optimiser = sm.SGD(sm.parameters_of(model))
            losses = [
                float(sm.train_step(model, optimiser, images, labels, 0.05)[0]) for _ in range(3)
            ]
            out[device] = losses
            assert isinstance(images, cupy.ndarray) == (device == "gpu")
        print(json.dumps(out))
        """)
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=_child_environment(report),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    losses = json.loads(result.stdout.strip().splitlines()[-1])
    numpy.testing.assert_allclose(losses["gpu"], losses["cpu"], rtol=1e-5)
    assert json.loads(report.read_text())["syncs"] >= 3  # at least the three float(loss)
