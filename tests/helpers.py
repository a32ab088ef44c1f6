"""Shared tools for the tests: the backend (and the strict CuPy stand-in) for subprocesses,
float64 arrays on the current backend, and finite differences."""

import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy
from hypothesis import assume

import snip_min as sm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tests that need the real MNIST (its IDX .gz files: the notebook, the loader's checks on
# real files) read it from this folder, never from the network; without it they are skipped.
REAL_MNIST_VARIABLE = "SNIP_MIN_REAL_MNIST"
STAND_IN = os.path.join(ROOT, "tests", "strict_cupy")  # holds the stand-in package `cupy`
USING_STAND_IN = False  # set by use_stand_in (--device strict)


# --- the backend, here and in subprocesses --------------------------------------------------


def use_stand_in():
    """Make `import cupy` find the strict stand-in, here and in every child process."""
    global USING_STAND_IN
    if STAND_IN not in sys.path:
        sys.path.insert(0, STAND_IN)
    USING_STAND_IN = True


def on_stand_in():
    """True while snip_min computes on the strict stand-in."""
    return getattr(sm.xp, "STAND_IN", False) is True


def child_environment(**extra):
    """os.environ for a test's child process, on the test's backend: under --device strict
    the stand-in comes first on PYTHONPATH, so that the child's `--device gpu` imports it."""
    environment = dict(os.environ, **extra)
    if USING_STAND_IN:
        paths = [STAND_IN, ROOT] + (
            [environment["PYTHONPATH"]] if environment.get("PYTHONPATH") else []
        )
        environment["PYTHONPATH"] = os.pathsep.join(paths)
    return environment


def run_python(arguments, *, timeout=600, env=None, **options):
    """subprocess.run([python, *arguments]) on the test's backend (text output captured).

    Under --device strict, a child given `--device gpu` that exits with status 0 must have
    computed on the stand-in: it writes a report when it exits (SNIP_MIN_STRICT_REPORT),
    and this checks that the report is there."""
    with tempfile.TemporaryDirectory() as folder:
        report = os.path.join(folder, "report.json")
        environment = child_environment(**(env or {}), SNIP_MIN_STRICT_REPORT=report)
        result = subprocess.run(
            [sys.executable, *map(str, arguments)],
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
            **options,
        )
        on_gpu = any(a == "--device" and b == "gpu" for a, b in zip(arguments, arguments[1:]))
        if USING_STAND_IN and on_gpu and result.returncode == 0:
            assert os.path.exists(report), f"{arguments}: the child did not run on the stand-in"
            with open(report) as f:
                assert json.load(f)["stand_in"], (
                    f"{arguments}: the child did not run on the stand-in"
                )
    return result


def real_mnist_folder():
    """The folder $SNIP_MIN_REAL_MNIST names (holding MNIST's four IDX .gz files), or None
    when the variable is not set."""
    folder = os.environ.get(REAL_MNIST_VARIABLE)
    return pathlib.Path(folder) if folder else None


# --- arrays and finite differences -----------------------------------------------------------


def array(rng, shape, scale=1.0):
    """A float64 normal array on the current backend, drawn from a NumPy Generator."""
    return sm.xp.asarray(scale * rng.standard_normal(shape), dtype=sm.xp.float64)


def initialised(layer, rng, dtype=None):
    """Give every Param of `layer` random values (also biases and batch-norm scales, so that
    the gradient checks exercise every term), float64 unless told otherwise."""
    dtype = dtype or sm.xp.float64
    for p in sm.parameters_of(layer):
        values = rng.standard_normal(p.shape)
        if p.kind == "running_var":
            values = 0.5 + rng.random(p.shape)
        p.value = sm.xp.asarray(values, dtype=dtype)
        p.mask, p.grad = None, None
    return layer


def nudged_values(f, x, eps):
    """(plus, minus): f() with entry k of x moved by +eps and by -eps, for every k, as arrays
    shaped like x. f() is a scalar function that reads x, which is modified in place and restored.
    """
    plus, minus = numpy.zeros(x.shape), numpy.zeros(x.shape)
    assert x.flags.c_contiguous, "x must be contiguous so that reshape(-1) is a view"
    flat = x.reshape(-1)
    for k in range(flat.size):
        original = float(flat[k])
        flat[k] = original + eps
        plus.reshape(-1)[k] = float(f())
        flat[k] = original - eps
        minus.reshape(-1)[k] = float(f())
        flat[k] = original
    return plus, minus


def numerical_gradient(f, x, eps=1e-6):
    """Central differences (f(x + eps e_k) - f(x - eps e_k)) / 2 eps for every entry k of x."""
    plus, minus = nudged_values(f, x, eps)
    return (plus - minus) / (2 * eps)


def smooth_along_every_entry(f, x, eps=1e-6, tolerance=1e-4):
    """True unless f has a kink within eps of x along some entry of x (a ReLU input or a
    max-pool's winner switching there): the one-sided differences f(x + eps) - f(x) and
    f(x) - f(x - eps) then differ by much more than a smooth function's eps * f''.

    A gradient check that fails can ask this before blaming the backward pass: at a kink
    there is no derivative for the finite differences to estimate.
    """
    centre = float(f())
    plus, minus = nudged_values(f, x, eps)
    forward, backward = (plus - centre) / eps, (centre - minus) / eps
    largest = max(
        1e-8,
        float(numpy.abs(forward).max(initial=0.0)),
        float(numpy.abs(backward).max(initial=0.0)),
    )
    return float(numpy.abs(forward - backward).max(initial=0.0)) <= tolerance * largest


def relative_error(analytic, numeric, scale=0.0):
    """max |a - n| / max(|a|, |n|, scale, 1e-8), on the host.

    `scale` lets a tensor whose true gradient is 0 (a conv bias before a batch norm, say) be
    judged against the size of the other gradients instead of against rounding noise.
    """
    a, n = sm.to_host(analytic).astype(numpy.float64), sm.to_host(numeric).astype(numpy.float64)
    assert a.shape == n.shape, (a.shape, n.shape)
    scale = max(numpy.abs(a).max(initial=0.0), numpy.abs(n).max(initial=0.0), scale, 1e-8)
    return numpy.abs(a - n).max(initial=0.0) / scale


def check_layer_gradients(layer, x, rng, train=True, tolerance=1e-6):
    """Check dL/dx and dL/d(every learned Param) of L = sum(layer(x) * R) for a random R."""
    out = layer.forward(x, train)
    weights_of_loss = array(rng, out.shape)

    def loss():
        return (layer.forward(x, train) * weights_of_loss).sum()

    layer.forward(x, train)
    dx = layer.backward(weights_of_loss)
    learned = [p for p in sm.parameters_of(layer) if p.learned]
    analytic = {"x": dx}
    analytic.update({f"{i}:{p.name}": p.grad for i, p in enumerate(learned)})
    numeric = {"x": numerical_gradient(loss, x)}
    numeric.update(
        {f"{i}:{p.name}": numerical_gradient(loss, p.value) for i, p in enumerate(learned)}
    )
    largest = max(float(numpy.abs(sm.to_host(g)).max(initial=0.0)) for g in analytic.values())
    inputs = {"x": x, **{f"{i}:{p.name}": p.value for i, p in enumerate(learned)}}
    for name in analytic:
        assert_close_unless_kink(
            analytic[name], numeric[name], loss, inputs[name], largest, tolerance, name
        )


def assert_close_unless_kink(analytic, numeric, f, x, scale, tolerance, name):
    """A gradient check: analytic and finite-difference gradients of f with respect to x
    agree to `tolerance` (relative, see relative_error), unless f has a kink within one step
    of x (a ReLU or max-pool switch, where there is no derivative to check): hypothesis then
    discards the example. A wrong gradient at a smooth point still fails."""
    error = relative_error(analytic, numeric, scale=scale)
    if error >= tolerance:
        assume(smooth_along_every_entry(f, x))
    assert error < tolerance, f"gradient of {name}: relative error {error:.2e}"
