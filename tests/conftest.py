"""Test set-up: choose the backend once for the whole suite, and hold every test to it.

    pytest                          NumPy (the default)
    pytest --device strict          the GPU code path on a strict CPU stand-in for CuPy
                                    (tests/strict_cupy): it refuses what CuPy refuses and
                                    counts every wait for the device
    pytest --device gpu             CuPy on a real GPU; the same tests prove the GPU path
    SNIP_MIN_DEVICE=strict pytest   the same, for CI systems that set variables

Every test runs on the chosen backend: a test that leaves another one behind fails, and a
test's subprocesses get the backend too (helpers.run_python, helpers.child_environment).
"""

import os
import sys

import pytest
from hypothesis import HealthCheck, settings

import helpers
import snip_min as sm

settings.register_profile(
    "default",
    deadline=None,
    max_examples=30,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

DEVICES = ("cpu", "strict", "gpu")


def pytest_addoption(parser):
    parser.addoption(
        "--device",
        default=os.environ.get("SNIP_MIN_DEVICE", "cpu"),
        choices=DEVICES,
        help="backend for the whole suite (snip-min): cpu, strict (the CuPy stand-in) or gpu",
    )


def pytest_configure(config):
    device = config.getoption("--device")
    if device == "strict":
        helpers.use_stand_in()
    try:
        sm.use_device("cpu" if device == "cpu" else "gpu")
    except sm.UsageError as error:
        raise pytest.UsageError(str(error))
    if device == "strict" and not helpers.on_stand_in():
        raise pytest.UsageError("--device strict: a real CuPy was imported before the stand-in")
    config.snip_min_backend = sm.xp
    config.backend_switches = []


@pytest.fixture(autouse=True)
def stays_on_the_chosen_backend(request):
    """Fail a test that leaves snip_min on another backend than the one chosen for the suite
    (and put the chosen one back, so that the tests after it are not affected)."""
    chosen = request.config.snip_min_backend
    yield
    if sm.xp is not chosen:
        left = sm.xp.__name__
        sm.xp = chosen
        request.config.backend_switches.append(request.node.nodeid)
        pytest.fail(f"the test left snip_min on {left}, not on the chosen {chosen.__name__}")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    switches = getattr(config, "backend_switches", [])
    if switches:
        terminalreporter.write_line(
            f"{len(switches)} test(s) switched the backend: {', '.join(switches)}", red=True
        )


@pytest.fixture
def stand_in(backend):
    """The strict CuPy stand-in as snip_min's backend for one test (the suite's own under
    --device strict; switched to, and back, under plain pytest); yields its counting API,
    cupy.strict. On a real GPU the test is skipped: only the stand-in can count."""
    if backend == "gpu":
        pytest.skip("waits for the device are counted on the strict stand-in (--device strict)")
    if backend == "strict":
        yield sm.xp.strict
        return

    def cupy_modules():
        return {
            name: module
            for name, module in sys.modules.items()
            if name == "cupy" or name.startswith("cupy.")
        }

    saved_path, saved_modules = list(sys.path), cupy_modules()  # a real CuPy, if one was imported
    for name in saved_modules:
        del sys.modules[name]
    sys.path.insert(0, helpers.STAND_IN)
    try:
        sm.use_device("gpu")
        assert helpers.on_stand_in()
        yield sm.xp.strict
    finally:
        sm.use_device("cpu")
        sys.path[:] = saved_path
        for name in cupy_modules():
            del sys.modules[name]  # a later `import cupy` finds what it found before
        sys.modules.update(saved_modules)


@pytest.fixture
def device(request):
    """The --device flag a test passes on to snip-min (cpu or gpu; the strict stand-in is
    the GPU path, so 'gpu', with the stand-in found first by helpers.child_environment)."""
    return "cpu" if request.config.getoption("--device") == "cpu" else "gpu"


@pytest.fixture
def backend(request):
    """The suite's backend as chosen: 'cpu', 'strict' or 'gpu'."""
    return request.config.getoption("--device")


def write_tiny_mnist(folder, n_train=300, n_test=100, seed=0):
    """A small, learnable MNIST look-alike in the official IDX .gz format: class k is a bright
    3x3 square at a position that depends on k, plus noise. Returns the data folder."""
    import numpy

    import data

    rng = numpy.random.default_rng(seed)

    def images_and_labels(n):
        labels = numpy.arange(n) % 10
        rng.shuffle(labels)
        images = rng.integers(0, 60, (n, 28, 28)).astype(numpy.uint8)
        for k in range(10):
            row, col = 4 + 7 * (k // 4), 3 + 7 * (k % 4)
            images[labels == k, row : row + 3, col : col + 3] = 250
        return images, labels.astype(numpy.uint8)

    mnist = os.path.join(folder, "mnist")
    for split, n in (("train", n_train), ("t10k", n_test)):
        images, labels = images_and_labels(n)
        data.write_idx(os.path.join(mnist, f"{split}-images-idx3-ubyte.gz"), images)
        data.write_idx(os.path.join(mnist, f"{split}-labels-idx1-ubyte.gz"), labels)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory):
    """The data folder of a tiny generated MNIST (300 training, 100 test images)."""
    return write_tiny_mnist(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def tiny_cifar(tmp_path_factory):
    """The data folder of a small generated CIFAR-10 in the official binary layout."""
    import data

    folder = tmp_path_factory.mktemp("cifar")
    data.write_synthetic_dataset("cifar10", folder, train_count=60, test_count=20, seed=0)
    return str(folder)
