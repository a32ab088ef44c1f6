"""Test set-up: choose the backend once for the whole suite.

    pytest                          NumPy (the default)
    pytest --device gpu             CuPy; the same tests prove the GPU path
    SNIP_MIN_DEVICE=gpu pytest      the same, for CI systems that set variables
"""

import os

import pytest
from hypothesis import HealthCheck, settings

import snip_min as sm

settings.register_profile(
    "default", deadline=None, max_examples=30,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_addoption(parser):
    parser.addoption("--device", default=os.environ.get("SNIP_MIN_DEVICE", "cpu"),
                     choices=("cpu", "gpu"), help="backend for the whole suite (snip-min)")


def pytest_configure(config):
    try:
        sm.use_device(config.getoption("--device"))
    except sm.UsageError as error:
        raise pytest.UsageError(str(error))


@pytest.fixture
def device(request):
    """'cpu' or 'gpu': the backend this run tests (pass it on to subprocesses)."""
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
            images[labels == k, row:row + 3, col:col + 3] = 250
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
