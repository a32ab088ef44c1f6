"""Tests for data.py: IDX reading and writing, downloading, and loading MNIST.

Everything runs offline: the IDX files are written here (by write_idx and by hand), and
downloads use file:// URLs. The last test reads the real MNIST subset (24,345 training
images) in ../shared/data/mnist beside the repository, or in $SNIP_MIN_REAL_MNIST, when present.
"""

import gzip
import hashlib
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

import data
from data import DataError, load_dataset, read_idx, write_idx

REPOSITORY = Path(__file__).resolve().parent.parent
REAL_MNIST_FOLDER = Path(os.environ.get("SNIP_MIN_REAL_MNIST",
                                        REPOSITORY.parent / "shared" / "data" / "mnist"))


# ----------------------------------------------------------------------------------------
# Helpers: hand-written IDX bytes and a tiny MNIST folder
# ----------------------------------------------------------------------------------------

def idx_bytes(shape, payload, type_code=0x08):
    """IDX bytes written by hand: two zero bytes, type code, ndim, big-endian dims, payload."""
    header = bytes([0, 0, type_code, len(shape)])
    for size in shape:
        header += size.to_bytes(4, "big")
    return header + bytes(payload)


def md5_of(path):
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def make_mnist_folder(folder, train_images, train_labels, test_images, test_labels, compressed=True):
    """Write the four MNIST files into folder (a path ending in /mnist)."""
    suffix = ".gz" if compressed else ""
    write_idx(folder / f"train-images-idx3-ubyte{suffix}", train_images)
    write_idx(folder / f"train-labels-idx1-ubyte{suffix}", train_labels)
    write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", test_images)
    write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", test_labels)


def random_mnist_arrays(train_count=50, test_count=20, seed=0):
    """(train_images, train_labels, test_images, test_labels) as uint8 arrays, labels 0..9."""
    rng = np.random.default_rng(seed)
    train_images = rng.integers(0, 256, size=(train_count, 28, 28), dtype=np.uint8)
    test_images = rng.integers(0, 256, size=(test_count, 28, 28), dtype=np.uint8)
    train_labels = (np.arange(train_count) % 10).astype(np.uint8)
    test_labels = (np.arange(test_count) % 10).astype(np.uint8)
    return train_images, train_labels, test_images, test_labels


# ----------------------------------------------------------------------------------------
# read_idx and write_idx
# ----------------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(array=arrays(np.uint8, array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=6)),
       compressed=st.booleans())
def test_read_idx_inverts_write_idx(tmp_path_factory, array, compressed):
    path = tmp_path_factory.mktemp("round_trip") / ("array.idx.gz" if compressed else "array.idx")
    write_idx(path, array)
    result = read_idx(path)
    assert result.dtype == np.uint8
    assert result.shape == array.shape
    np.testing.assert_array_equal(result, array)


def test_write_idx_writes_the_documented_bytes(tmp_path):
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    write_idx(tmp_path / "raw.idx", array)
    write_idx(tmp_path / "compressed.idx.gz", array)
    expected = bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 0, 1, 2, 3, 4, 5])
    assert (tmp_path / "raw.idx").read_bytes() == expected
    assert gzip.decompress((tmp_path / "compressed.idx.gz").read_bytes()) == expected
    assert sorted(os.listdir(tmp_path)) == ["compressed.idx.gz", "raw.idx"]  # no temporary files left


def test_read_idx_reads_hand_written_files(tmp_path):
    contents = idx_bytes((2, 2, 3), range(12))
    (tmp_path / "hand.idx").write_bytes(contents)
    (tmp_path / "hand.idx.gz").write_bytes(gzip.compress(contents))
    for name in ("hand.idx", "hand.idx.gz"):
        array = read_idx(tmp_path / name)
        assert array.dtype == np.uint8
        assert array.shape == (2, 2, 3)
        assert array[1, 0, 2] == 8  # C order: index 1*6 + 0*3 + 2


def test_write_idx_rejects_non_uint8_arrays(tmp_path):
    with pytest.raises(ValueError):
        write_idx(tmp_path / "floats.idx", np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError):
        write_idx(tmp_path / "scalar.idx", np.uint8(3))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("claimed_shape, reason", [
    ((4_000_000_000, 28, 28), "more than"),   # rejected from the header alone
    ((2_000_000_000,), "truncated"),          # plausible size: found out while reading in chunks
])
def test_huge_header_fails_fast_without_allocating(tmp_path, claimed_shape, reason):
    path = tmp_path / "huge.idx"
    path.write_bytes(idx_bytes(claimed_shape, bytes(100)))
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(DataError, match=reason) as error:
            read_idx(path)
        assert str(path) in str(error.value)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1.0
    assert peak_bytes < 16 * 2**20


def bad_file_cases():
    """(file name, file bytes) pairs that read_idx must reject."""
    valid = idx_bytes((3, 4), range(12))
    compressed = gzip.compress(valid)
    crc_broken = bytearray(compressed)
    crc_broken[-8] ^= 0xFF  # the gzip trailer: CRC-32 (4 bytes) then length (4 bytes)
    return {
        "empty": ("empty.idx", b""),
        "short header": ("short.idx", valid[:3]),
        "wrong magic": ("magic.idx", b"\x01" + valid[1:]),
        "wrong type code (float)": ("float.idx", idx_bytes((3, 4), bytes(48), type_code=0x0D)),
        "zero dimensions": ("zero_dims.idx", bytes([0, 0, 8, 0])),
        "five dimensions": ("five_dims.idx", idx_bytes((1, 1, 1, 1, 1), [7])),
        "truncated dims": ("dims.idx", valid[:9]),
        "truncated payload": ("truncated.idx", valid[:-1]),
        "trailing bytes": ("trailing.idx", valid + b"\x00"),
        "truncated gzip stream": ("truncated.idx.gz", compressed[:-10]),
        "gzip CRC error": ("crc.idx.gz", bytes(crc_broken)),
        "garbage named .gz": ("garbage.idx.gz", b"this is not gzip at all"),
        "garbage": ("garbage.idx", b"\xff" * 40),
        "gzip data in a raw name": ("gzipped.idx", compressed),
        "truncated payload inside gzip": ("short_payload.idx.gz", gzip.compress(valid[:-2])),
    }


@pytest.mark.parametrize("case", sorted(bad_file_cases()))
def test_read_idx_rejects_bad_file_naming_it(tmp_path, case):
    name, contents = bad_file_cases()[case]
    path = tmp_path / name
    path.write_bytes(contents)
    with pytest.raises(DataError) as error:
        read_idx(path)
    message = str(error.value)
    assert str(path) in message
    assert "\n" not in message


def test_read_idx_of_missing_file_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="missing.idx"):
        read_idx(tmp_path / "missing.idx")


@settings(max_examples=150, deadline=None)
@given(compressed=st.booleans(), edit=st.sampled_from(["flip", "truncate", "insert"]),
       position=st.integers(min_value=0), value=st.integers(min_value=0, max_value=255))
def test_mutated_file_gives_uint8_array_or_data_error(tmp_path_factory, compressed, edit, position, value):
    contents = idx_bytes((2, 3, 4), range(24))
    if compressed:
        contents = gzip.compress(contents)
    contents = bytearray(contents)
    position %= len(contents)
    if edit == "flip":
        contents[position] ^= value or 1
    elif edit == "truncate":
        del contents[position:]
    else:
        contents.insert(position, value)
    path = tmp_path_factory.mktemp("mutated") / ("file.idx.gz" if compressed else "file.idx")
    path.write_bytes(bytes(contents))
    try:
        array = read_idx(path)
    except DataError as error:
        assert str(path) in str(error)
    else:
        assert isinstance(array, np.ndarray) and array.dtype == np.uint8


# ----------------------------------------------------------------------------------------
# load_dataset on small generated MNIST folders
# ----------------------------------------------------------------------------------------

def test_load_dataset_returns_normalised_float32_nhwc(tmp_path):
    train_images, train_labels, test_images, test_labels = random_mnist_arrays()
    make_mnist_folder(tmp_path / "mnist", train_images, train_labels, test_images, test_labels)
    notices = []
    dataset = load_dataset("mnist", tmp_path, download=False, notice=notices.append)

    assert dataset.name == "mnist"
    assert dataset.num_classes == 10
    assert dataset.description == "MNIST, 50 training images"
    assert dataset.train_images.shape == (50, 28, 28, 1)
    assert dataset.test_images.shape == (20, 28, 28, 1)
    assert dataset.train_images.dtype == np.float32 and dataset.test_images.dtype == np.float32
    assert dataset.train_labels.dtype == np.int64 and dataset.test_labels.dtype == np.int64
    np.testing.assert_array_equal(dataset.train_labels, train_labels)
    np.testing.assert_array_equal(dataset.test_labels, test_labels)
    assert abs(dataset.train_images.mean()) < 1e-5
    assert abs(dataset.train_images.std() - 1) < 1e-5

    train_scaled = train_images / 255.0
    expected_test = (test_images / 255.0 - train_scaled.mean()) / train_scaled.std()
    np.testing.assert_allclose(dataset.test_images[..., 0], expected_test, atol=1e-5)

    # every generated file differs from the official one: one notice each
    assert len(notices) == 4
    for file_name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                      "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        matching = [line for line in notices if str(tmp_path / "mnist" / file_name) in line]
        assert len(matching) == 1 and "not the official MNIST file" in matching[0]
    assert "(50 images)" in notices[0] and "(20 labels)" in notices[3]


def test_test_images_use_training_statistics_computed_by_hand(tmp_path):
    # Half the training images are black (0), half white (255): mean 0.5, std 0.5 in [0, 1].
    train_images = np.zeros((1000, 28, 28), dtype=np.uint8)
    train_images[500:] = 255
    test_images = np.full((3, 28, 28), 51, dtype=np.uint8)   # 51/255 = 0.2
    test_images[1] = 255
    test_images[2] = 0
    labels = (np.arange(1000) % 10).astype(np.uint8)
    make_mnist_folder(tmp_path / "mnist", train_images, labels, test_images, labels[:3])
    dataset = load_dataset("mnist", tmp_path, download=False, notice=lambda line: None)

    assert dataset.description == "MNIST, 1,000 training images"
    assert set(np.unique(dataset.train_images)) == {-1.0, 1.0}
    np.testing.assert_allclose(dataset.test_images[0], -0.6, atol=1e-6)  # (0.2 - 0.5) / 0.5
    np.testing.assert_allclose(dataset.test_images[1], 1.0, atol=1e-6)   # (1.0 - 0.5) / 0.5
    np.testing.assert_allclose(dataset.test_images[2], -1.0, atol=1e-6)  # (0.0 - 0.5) / 0.5


def test_uncompressed_files_are_accepted(tmp_path):
    make_mnist_folder(tmp_path / "mnist", *random_mnist_arrays(), compressed=False)
    notices = []
    dataset = load_dataset("mnist", tmp_path, download=False, notice=notices.append)
    assert dataset.train_images.shape == (50, 28, 28, 1)
    assert notices == []  # official checksums are of the .gz files, so there is nothing to compare


@pytest.mark.parametrize("problem", ["count mismatch", "label 10", "27x28 images", "flat images",
                                     "2-D labels", "test count mismatch", "no images"])
def test_inconsistent_mnist_files_raise_data_error(tmp_path, problem):
    train_images, train_labels, test_images, test_labels = random_mnist_arrays()
    named_file = "train-images-idx3-ubyte.gz"
    if problem == "count mismatch":
        train_labels = train_labels[:49]
    elif problem == "label 10":
        train_labels[7] = 10
        named_file = "train-labels-idx1-ubyte.gz"
    elif problem == "27x28 images":
        train_images = train_images[:, :27, :]
    elif problem == "flat images":
        train_images = train_images.reshape(50, 784)
    elif problem == "2-D labels":
        train_labels = train_labels.reshape(50, 1)
        named_file = "train-labels-idx1-ubyte.gz"
    elif problem == "test count mismatch":
        test_images = test_images[:19]
        named_file = "t10k-images-idx3-ubyte.gz"
    elif problem == "no images":
        train_images, train_labels = train_images[:0], train_labels[:0]
    make_mnist_folder(tmp_path / "mnist", train_images, train_labels, test_images, test_labels)
    with pytest.raises(DataError) as error:
        load_dataset("mnist", tmp_path, download=False, notice=lambda line: None)
    assert str(tmp_path / "mnist" / named_file) in str(error.value)
    assert "\n" not in str(error.value)


def test_damaged_mnist_file_error_says_to_delete_it(tmp_path):
    make_mnist_folder(tmp_path / "mnist", *random_mnist_arrays())
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError) as error:
        load_dataset("mnist", tmp_path, download=False, notice=lambda line: None)
    assert str(path) in str(error.value)
    assert "delete it" in str(error.value)


def test_unknown_dataset_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet", tmp_path, download=False)


def test_default_data_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SNIP_MIN_DATA", str(tmp_path / "chosen"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data.default_data_dir() == str(tmp_path / "chosen")
    monkeypatch.delenv("SNIP_MIN_DATA")
    assert data.default_data_dir() == str(tmp_path / "cache" / "snip-min")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.default_data_dir() == str(tmp_path / "home" / ".cache" / "snip-min")


# ----------------------------------------------------------------------------------------
# Missing files and downloading (file:// URLs only)
# ----------------------------------------------------------------------------------------

def test_missing_file_without_download_names_file_and_what_to_do(tmp_path):
    with pytest.raises(DataError) as error:
        load_dataset("mnist", tmp_path, download=False, notice=lambda line: None)
    message = str(error.value)
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") in message
    assert "place the file there" in message
    assert not (tmp_path / "mnist").exists()


def test_download_fetches_verified_file_atomically(tmp_path):
    source = tmp_path / "server" / "file.bin"
    source.parent.mkdir()
    source.write_bytes(b"some bytes" * 1000)
    destination = tmp_path / "cache" / "deep" / "file.bin"
    notices = []
    data.download([source.as_uri()], str(destination), md5_of(source), notice=notices.append)
    assert destination.read_bytes() == source.read_bytes()
    assert os.listdir(destination.parent) == ["file.bin"]  # no .part left behind
    assert notices == [f"downloading {source.as_uri()}"]


def test_download_with_wrong_checksum_leaves_nothing(tmp_path):
    source = tmp_path / "server" / "file.bin"
    source.parent.mkdir()
    source.write_bytes(b"tampered")
    destination = tmp_path / "cache" / "file.bin"
    with pytest.raises(DataError) as error:
        data.download([source.as_uri()], str(destination), "0" * 32, notice=lambda line: None)
    assert source.as_uri() in str(error.value)
    assert str(destination) in str(error.value)
    assert os.listdir(destination.parent) == []


def test_download_tries_the_next_url_after_a_failure(tmp_path):
    server = tmp_path / "server"
    server.mkdir()
    (server / "file.bin").write_bytes(b"payload")
    missing_url = (server / "absent.bin").as_uri()
    destination = tmp_path / "file.bin"
    data.download([missing_url, (server / "file.bin").as_uri()], str(destination),
                  md5_of(server / "file.bin"), retries=1, notice=lambda line: None)
    assert destination.read_bytes() == b"payload"


def test_download_failing_everywhere_names_every_url(tmp_path):
    urls = [(tmp_path / "a.bin").as_uri(), (tmp_path / "b.bin").as_uri()]
    with pytest.raises(DataError) as error:
        data.download(urls, str(tmp_path / "out.bin"), "0" * 32, retries=1, notice=lambda line: None)
    for url in urls:
        assert url in str(error.value)
    assert "by hand" in str(error.value)
    assert sorted(os.listdir(tmp_path)) == []


def serve_mnist_from(monkeypatch, server_folder, md5_overrides=None):
    """Point MNIST's mirror list at a local folder; the official md5s become those of its files."""
    monkeypatch.setattr(data, "MNIST_MIRRORS", [server_folder.as_uri() + "/"])
    files = {role: (name, md5_of(server_folder / name)) for role, (name, _) in data.MNIST_FILES.items()}
    files.update(md5_overrides or {})
    monkeypatch.setattr(data, "MNIST_FILES", files)


def test_load_dataset_downloads_missing_files_into_data_dir(tmp_path, monkeypatch):
    server = tmp_path / "server"
    make_mnist_folder(server, *random_mnist_arrays())
    serve_mnist_from(monkeypatch, server)
    notices = []
    dataset = load_dataset("mnist", tmp_path / "cache", download=True, notice=notices.append)
    assert dataset.train_images.shape == (50, 28, 28, 1)
    cached = sorted(os.listdir(tmp_path / "cache" / "mnist"))
    assert cached == sorted(os.listdir(server))  # the four files, no .part
    for name in cached:
        assert (tmp_path / "cache" / "mnist" / name).read_bytes() == (server / name).read_bytes()
    assert not [line for line in notices if "not the official" in line]  # checksums matched


def test_load_dataset_with_wrong_checksum_caches_nothing(tmp_path, monkeypatch):
    server = tmp_path / "server"
    make_mnist_folder(server, *random_mnist_arrays())
    serve_mnist_from(monkeypatch, server, {"train_images": ("train-images-idx3-ubyte.gz", "0" * 32)})
    with pytest.raises(DataError) as error:
        load_dataset("mnist", tmp_path / "cache", download=True, notice=lambda line: None)
    assert (server / "train-images-idx3-ubyte.gz").as_uri() in str(error.value)
    assert os.listdir(tmp_path / "cache" / "mnist") == []


# ----------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------

def test_command_line_summarises_dataset(tmp_path, capsys):
    make_mnist_folder(tmp_path / "mnist", *random_mnist_arrays())
    assert data.main(["mnist", "--data-dir", str(tmp_path)]) == 0
    output = capsys.readouterr()
    assert output.out.startswith("MNIST, 50 training images, 20 test images")
    assert len(output.err.splitlines()) == 4  # the four notices


def test_command_line_error_is_one_line_with_status_2(tmp_path):
    result = subprocess.run([sys.executable, str(REPOSITORY / "data.py"), "mnist",
                             "--data-dir", str(tmp_path), "--no-download"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


# ----------------------------------------------------------------------------------------
# The real MNIST subset (24,345 training images) beside the repository
# ----------------------------------------------------------------------------------------

@pytest.mark.skipif(not REAL_MNIST_FOLDER.is_dir(), reason=f"no real MNIST in {REAL_MNIST_FOLDER}")
def test_real_mnist_subset_loads_with_expected_counts():
    notices = []
    dataset = load_dataset("mnist", REAL_MNIST_FOLDER.parent, download=False, notice=notices.append)
    assert dataset.train_images.shape == (24_345, 28, 28, 1)
    assert dataset.test_images.shape == (10_000, 28, 28, 1)
    assert dataset.description == "MNIST, 24,345 training images"
    assert np.bincount(dataset.train_labels, minlength=10).tolist() == [
        2406, 2770, 2381, 2524, 2386, 2181, 2401, 2524, 2328, 2444]
    assert abs(dataset.train_images.mean()) < 1e-4 and abs(dataset.train_images.std() - 1) < 1e-4
    assert len(notices) == 2
    assert str(REAL_MNIST_FOLDER / "train-images-idx3-ubyte.gz") in notices[0]
    assert "(24,345 images)" in notices[0]
    assert str(REAL_MNIST_FOLDER / "train-labels-idx1-ubyte.gz") in notices[1]
    assert not [line for line in notices if "t10k" in line]
