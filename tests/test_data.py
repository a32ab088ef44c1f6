"""Tests for data.py: IDX reading and writing, downloading, MNIST, safe extraction, CIFAR-10,
Tiny-ImageNet, augmentation, synthetic datasets and the command line.

Everything runs offline: the data files and archives are written here (by the writers in
data.py and by hand), and downloads use file:// URLs. The Tiny-ImageNet tests need Pillow
and are skipped without it. The last test reads the real MNIST subset (24,345 training
images) from the folder $SNIP_MIN_REAL_MNIST names (tests/helpers.py), when it is set.
"""

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

import data
import helpers
from data import DataError, load_dataset, read_idx, standardise, write_idx

REPOSITORY = Path(__file__).resolve().parent.parent
REAL_MNIST_FOLDER = helpers.real_mnist_folder()


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


def make_mnist_folder(
    folder, train_images, train_labels, test_images, test_labels, compressed=True
):
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
@given(
    array=arrays(np.uint8, array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=6)),
    compressed=st.booleans(),
)
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
    assert sorted(os.listdir(tmp_path)) == [
        "compressed.idx.gz",
        "raw.idx",
    ]  # no temporary files left


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


@pytest.mark.parametrize(
    "claimed_shape, reason",
    [
        ((4_000_000_000, 28, 28), "more than"),  # rejected from the header alone
        ((2_000_000_000,), "truncated"),  # plausible size: found out while reading in chunks
    ],
)
def test_huge_header_fails_fast_without_allocating(tmp_path, claimed_shape, reason):
    path = tmp_path / "huge.idx"
    path.write_bytes(idx_bytes(claimed_shape, bytes(100)))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=reason) as error:
            read_idx(path)
        assert str(path) in str(error.value)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 16 * 2**20  # neither the claimed size nor a chunk of it was allocated


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
@given(
    compressed=st.booleans(),
    edit=st.sampled_from(["flip", "truncate", "insert"]),
    position=st.integers(min_value=0),
    value=st.integers(min_value=0, max_value=255),
)
def test_mutated_file_gives_uint8_array_or_data_error(
    tmp_path_factory, compressed, edit, position, value
):
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


def test_load_dataset_returns_uint8_nhwc_and_training_statistics(tmp_path):
    train_images, train_labels, test_images, test_labels = random_mnist_arrays()
    make_mnist_folder(tmp_path / "mnist", train_images, train_labels, test_images, test_labels)
    notices = []
    dataset = load_dataset("mnist", tmp_path, download=False, notice=notices.append)

    assert dataset.name == "mnist"
    assert dataset.num_classes == 10
    assert dataset.augment is None  # the paper does not augment MNIST
    assert dataset.description == "MNIST, 50 training images"
    assert dataset.train_images.shape == (50, 28, 28, 1)
    assert dataset.test_images.shape == (20, 28, 28, 1)
    assert dataset.train_images.dtype == np.uint8 and dataset.test_images.dtype == np.uint8
    assert dataset.train_labels.dtype == np.int64 and dataset.test_labels.dtype == np.int64
    np.testing.assert_array_equal(dataset.train_images[..., 0], train_images)
    np.testing.assert_array_equal(dataset.test_images[..., 0], test_images)
    np.testing.assert_array_equal(dataset.train_labels, train_labels)
    np.testing.assert_array_equal(dataset.test_labels, test_labels)

    # one global mean and std of the training pixels in [0, 1], as the authors do
    assert dataset.mean.shape == (1,) and dataset.std.shape == (1,)
    assert dataset.mean.dtype == np.float32 and dataset.std.dtype == np.float32
    train_scaled = train_images / 255.0
    np.testing.assert_allclose(dataset.mean, [train_scaled.mean()], rtol=1e-6)
    np.testing.assert_allclose(dataset.std, [train_scaled.std()], rtol=1e-6)
    standardised_train = standardise(dataset.train_images, dataset.mean, dataset.std)
    assert standardised_train.dtype == np.float32 and standardised_train.shape == (50, 28, 28, 1)
    assert abs(standardised_train.mean()) < 1e-5
    assert abs(standardised_train.std() - 1) < 1e-5
    expected_test = (test_images / 255.0 - train_scaled.mean()) / train_scaled.std()
    np.testing.assert_allclose(
        standardise(dataset.test_images, dataset.mean, dataset.std)[..., 0],
        expected_test,
        atol=1e-5,
    )

    # every generated file differs from the official one: one notice each
    assert len(notices) == 4
    for file_name in (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ):
        matching = [line for line in notices if str(tmp_path / "mnist" / file_name) in line]
        assert len(matching) == 1 and "not the official MNIST file" in matching[0]
    assert "(50 images)" in notices[0] and "(20 labels)" in notices[3]


def test_test_images_use_training_statistics_computed_by_hand(tmp_path):
    # Half the training images are black (0), half white (255): mean 0.5, std 0.5 in [0, 1].
    train_images = np.zeros((1000, 28, 28), dtype=np.uint8)
    train_images[500:] = 255
    test_images = np.full((3, 28, 28), 51, dtype=np.uint8)  # 51/255 = 0.2
    test_images[1] = 255
    test_images[2] = 0
    labels = (np.arange(1000) % 10).astype(np.uint8)
    make_mnist_folder(tmp_path / "mnist", train_images, labels, test_images, labels[:3])
    dataset = load_dataset("mnist", tmp_path, download=False, notice=lambda line: None)

    assert dataset.description == "MNIST, 1,000 training images"
    np.testing.assert_array_equal(dataset.mean, [0.5])
    np.testing.assert_array_equal(dataset.std, [0.5])
    assert set(np.unique(standardise(dataset.train_images, dataset.mean, dataset.std))) == {
        -1.0,
        1.0,
    }
    test = standardise(dataset.test_images, dataset.mean, dataset.std)
    np.testing.assert_allclose(test[0], -0.6, atol=1e-6)  # (0.2 - 0.5) / 0.5
    np.testing.assert_allclose(test[1], 1.0, atol=1e-6)  # (1.0 - 0.5) / 0.5
    np.testing.assert_allclose(test[2], -1.0, atol=1e-6)  # (0.0 - 0.5) / 0.5


def test_constant_training_images_cannot_be_standardised(tmp_path):
    train_images, train_labels, test_images, test_labels = random_mnist_arrays()
    train_images[:] = 17
    make_mnist_folder(tmp_path / "mnist", train_images, train_labels, test_images, test_labels)
    with pytest.raises(DataError, match="same value") as error:
        load_dataset("mnist", tmp_path, download=False, notice=lambda line: None)
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") in str(error.value)


@settings(max_examples=40, deadline=None)
@given(
    images=arrays(
        np.uint8,
        st.tuples(
            st.integers(1, 600), st.integers(1, 3), st.integers(1, 3), st.sampled_from([1, 3])
        ),
    )
)
def test_pixel_statistics_equal_float64_numpy_per_channel(images):
    pixels = images.reshape(-1, images.shape[-1])  # (pixels, C)
    if (pixels.min(axis=0) == pixels.max(axis=0)).any():  # a constant channel has no std
        with pytest.raises(DataError):
            data.pixel_statistics(images, source="generated")
        return
    mean, std = data.pixel_statistics(images, source="generated")  # in chunks of 256 images
    scaled = images.astype(np.float64) / 255
    assert mean.dtype == np.float32 and mean.shape == (images.shape[-1],)
    np.testing.assert_allclose(mean, scaled.mean(axis=(0, 1, 2)), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(std, scaled.std(axis=(0, 1, 2)), rtol=1e-6, atol=1e-7)


def test_uncompressed_files_are_accepted(tmp_path):
    make_mnist_folder(tmp_path / "mnist", *random_mnist_arrays(), compressed=False)
    notices = []
    dataset = load_dataset("mnist", tmp_path, download=False, notice=notices.append)
    assert dataset.train_images.shape == (50, 28, 28, 1)
    assert notices == []  # official checksums are of the .gz files, so there is nothing to compare


@pytest.mark.parametrize(
    "problem",
    [
        "count mismatch",
        "label 10",
        "27x28 images",
        "flat images",
        "2-D labels",
        "test count mismatch",
        "no images",
    ],
)
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
    assert not destination.parent.exists()  # nothing: not even the folder made for the file


def test_download_tries_the_next_url_after_a_failure(tmp_path):
    server = tmp_path / "server"
    server.mkdir()
    (server / "file.bin").write_bytes(b"payload")
    missing_url = (server / "absent.bin").as_uri()
    destination = tmp_path / "file.bin"
    data.download(
        [missing_url, (server / "file.bin").as_uri()],
        str(destination),
        md5_of(server / "file.bin"),
        retries=1,
        notice=lambda line: None,
    )
    assert destination.read_bytes() == b"payload"


def test_download_failing_everywhere_names_every_url(tmp_path):
    urls = [(tmp_path / "a.bin").as_uri(), (tmp_path / "b.bin").as_uri()]
    with pytest.raises(DataError) as error:
        data.download(
            urls, str(tmp_path / "out.bin"), "0" * 32, retries=1, notice=lambda line: None
        )
    for url in urls:
        assert url in str(error.value)
    assert "by hand" in str(error.value)
    assert sorted(os.listdir(tmp_path)) == []


def test_a_download_failing_everywhere_removes_the_folders_it_made(tmp_path):
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "other.txt").write_text("a user's file")
    for destination in (tmp_path / "misspelt" / "mnist" / "a.bin", tmp_path / "kept" / "a.bin"):
        with pytest.raises(DataError, match="could not download a.bin"):
            data.download(
                [(tmp_path / "absent.bin").as_uri()],
                str(destination),
                "0" * 32,
                retries=1,
                notice=lambda line: None,
            )
    assert sorted(os.listdir(tmp_path)) == ["kept"]  # misspelt/mnist/ made and removed again
    assert os.listdir(tmp_path / "kept") == ["other.txt"]  # a folder that was there stays


def test_an_empty_data_folder_name_is_refused_not_taken_for_the_current_folder(tmp_path):
    for empty in ("", "  "):
        with pytest.raises(DataError, match="would mean the current folder"):
            load_dataset("mnist", empty, download=False)


def serve_mnist_from(monkeypatch, server_folder, md5_overrides=None):
    """Point MNIST's mirror list at a local folder; the official md5s become those of its files."""
    monkeypatch.setattr(data, "MNIST_MIRRORS", [server_folder.as_uri() + "/"])
    files = {
        role: (name, md5_of(server_folder / name)) for role, (name, _) in data.MNIST_FILES.items()
    }
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
    serve_mnist_from(
        monkeypatch, server, {"train_images": ("train-images-idx3-ubyte.gz", "0" * 32)}
    )
    with pytest.raises(DataError) as error:
        load_dataset("mnist", tmp_path / "cache", download=True, notice=lambda line: None)
    assert (server / "train-images-idx3-ubyte.gz").as_uri() in str(error.value)
    assert not (tmp_path / "cache").exists()  # nor the folders made for the download


# ----------------------------------------------------------------------------------------
# Fashion-MNIST: MNIST's four files and format, its own checksums, statistics and name
# ----------------------------------------------------------------------------------------


def test_fashion_mnist_loads_from_its_own_folder_with_its_own_statistics(tmp_path):
    arrays = random_mnist_arrays(seed=5)
    make_mnist_folder(tmp_path / "fashion-mnist", *arrays)
    notices = []
    dataset = load_dataset("fashion-mnist", tmp_path, download=False, notice=notices.append)
    assert dataset.name == "fashion-mnist" and dataset.num_classes == 10 and dataset.augment is None
    assert dataset.description == "Fashion-MNIST, 50 training images"
    assert dataset.train_images.shape == (50, 28, 28, 1) and dataset.test_images.shape == (
        20,
        28,
        28,
        1,
    )
    np.testing.assert_array_equal(dataset.train_images[..., 0], arrays[0])
    np.testing.assert_allclose(
        dataset.mean, [arrays[0].mean() / 255], rtol=1e-6
    )  # its own, not MNIST's
    np.testing.assert_allclose(dataset.std, [(arrays[0] / 255).std()], rtol=1e-5)
    assert len(notices) == 4 and all(
        "not the official Fashion-MNIST file" in line for line in notices
    )
    with pytest.raises(DataError, match="mnist"):
        load_dataset("mnist", tmp_path, download=False)  # MNIST's folder stays its own


def test_a_recompressed_copy_with_the_official_counts_is_named_as_such(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "OFFICIAL_COUNTS", {"train": 50, "test": 20})
    make_mnist_folder(tmp_path / "fashion-mnist", *random_mnist_arrays())
    notices = []
    load_dataset("fashion-mnist", tmp_path, download=False, notice=notices.append)
    assert len(notices) == 4
    assert all("the official number of" in line and "not byte for byte" in line for line in notices)


def test_fashion_mnist_downloads_with_its_checksums(tmp_path, monkeypatch):
    server = tmp_path / "server"
    make_mnist_folder(server, *random_mnist_arrays(seed=1))
    monkeypatch.setattr(data, "FASHION_MNIST_MIRRORS", [server.as_uri() + "/"])
    official = {
        role: (name, md5_of(server / name)) for role, (name, _) in data.FASHION_MNIST_FILES.items()
    }
    monkeypatch.setattr(data, "FASHION_MNIST_FILES", official)
    notices = []
    dataset = load_dataset(
        "fashion-mnist", tmp_path / "cache", download=True, notice=notices.append
    )
    assert dataset.train_images.shape == (50, 28, 28, 1)
    assert sorted(os.listdir(tmp_path / "cache" / "fashion-mnist")) == sorted(os.listdir(server))
    assert not [line for line in notices if "not the official" in line]
    wrong = dict(official, test_labels=("t10k-labels-idx1-ubyte.gz", "0" * 32))
    monkeypatch.setattr(data, "FASHION_MNIST_FILES", wrong)
    with pytest.raises(DataError) as error:
        load_dataset("fashion-mnist", tmp_path / "other", download=True, notice=lambda line: None)
    assert (server / "t10k-labels-idx1-ubyte.gz").as_uri() in str(error.value)
    assert "t10k-labels" not in " ".join(os.listdir(tmp_path / "other" / "fashion-mnist"))


# ----------------------------------------------------------------------------------------
# Safe extraction: archives written here, with and without hostile entries
# ----------------------------------------------------------------------------------------


def tar_archive(path, entries):
    """Write a tar archive (gzip-compressed if path ends in .gz) from (TarInfo, bytes or None)."""
    with tarfile.open(path, "w:gz" if str(path).endswith(".gz") else "w") as archive:
        for info, contents in entries:
            if contents is None:
                archive.addfile(info)
            else:
                info.size = len(contents)
                archive.addfile(info, io.BytesIO(contents))


def tar_entry(name, kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def zip_archive(path, entries):
    """Write a zip archive from (name or ZipInfo, bytes) pairs."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, contents in entries:
            archive.writestr(name, contents)


def zip_symlink(name, target):
    info = zipfile.ZipInfo(name)
    info.external_attr = 0o120777 << 16  # Unix mode of a symbolic link
    return info, target


def every_path_under(folder):
    return sorted(str(path.relative_to(folder)) for path in Path(folder).rglob("*"))


def test_safe_extract_writes_tar_and_zip_contents(tmp_path):
    for archive_name in ("a.tar.gz", "a.zip"):
        target = tmp_path / archive_name.replace(".", "_")
        target.mkdir()
        if archive_name.endswith(".zip"):
            zip_archive(
                target / archive_name,
                [
                    ("top/", b""),
                    ("top/sub/file.bin", b"\x00\x01\x02"),
                    ("./top/other.txt", b"hello"),
                ],
            )
        else:
            tar_archive(
                target / archive_name,
                [
                    (tar_entry("top", tarfile.DIRTYPE), None),
                    (tar_entry("top/sub/file.bin"), b"\x00\x01\x02"),
                    (tar_entry("./top/other.txt"), b"hello"),
                ],
            )
        data.safe_extract(target / archive_name, target, required_files=["top/sub/file.bin"])
        assert (target / "top" / "sub" / "file.bin").read_bytes() == b"\x00\x01\x02"
        assert (target / "top" / "other.txt").read_bytes() == b"hello"
        assert every_path_under(target) == [
            archive_name,
            "top",
            "top/other.txt",
            "top/sub",
            "top/sub/file.bin",
        ]


UNSAFE_TAR_ENTRIES = {
    "parent folder": (tar_entry("../x"), b"evil"),
    "parent inside a path": (tar_entry("top/../../x"), b"evil"),
    "absolute path": (tar_entry("/tmp/snip-min-absolute-x"), b"evil"),
    "windows drive": (tar_entry("C:/x"), b"evil"),
    "backslash parent": (tar_entry("top\\..\\..\\x"), b"evil"),
    "symbolic link": (tar_entry("top/link", tarfile.SYMTYPE, "/etc/passwd"), None),
    "hard link": (tar_entry("top/hard", tarfile.LNKTYPE, "top/a.bin"), None),
    "character device": (tar_entry("top/device", tarfile.CHRTYPE), None),
    "fifo": (tar_entry("top/fifo", tarfile.FIFOTYPE), None),
}


@pytest.mark.parametrize("case", sorted(UNSAFE_TAR_ENTRIES))
def test_unsafe_tar_entry_is_refused_and_nothing_is_written(tmp_path, case):
    target = tmp_path / "data" / "cifar10"
    target.mkdir(parents=True)
    archive = target / "archive.tar.gz"
    info, contents = UNSAFE_TAR_ENTRIES[case]
    tar_archive(
        archive,
        [(tar_entry("top/a.bin"), b"fine"), (info, contents), (tar_entry("top/z.bin"), b"fine")],
    )
    with pytest.raises(DataError) as error:
        data.safe_extract(archive, target)
    assert str(archive) in str(error.value) and repr(info.name) in str(error.value)
    assert every_path_under(tmp_path) == ["data", "data/cifar10", "data/cifar10/archive.tar.gz"]
    assert not Path("/tmp/snip-min-absolute-x").exists()


UNSAFE_ZIP_ENTRIES = {
    "parent folder": ("../x", b"evil"),
    "parent inside a path": ("top/../../x", b"evil"),
    "absolute path": ("/tmp/snip-min-absolute-x", b"evil"),
    "windows drive": ("C:\\x", b"evil"),
    "backslash parent": ("..\\x", b"evil"),
    "symbolic link": zip_symlink("top/link", b"/etc/passwd"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE_ZIP_ENTRIES))
def test_unsafe_zip_entry_is_refused_and_nothing_is_written(tmp_path, case):
    target = tmp_path / "data" / "tiny-imagenet"
    target.mkdir(parents=True)
    archive = target / "archive.zip"
    zip_archive(archive, [("top/a.bin", b"fine"), UNSAFE_ZIP_ENTRIES[case], ("top/z.bin", b"fine")])
    with pytest.raises(DataError, match="refusing to extract") as error:
        data.safe_extract(archive, target)
    assert str(archive) in str(error.value)
    assert every_path_under(tmp_path) == [
        "data",
        "data/tiny-imagenet",
        "data/tiny-imagenet/archive.zip",
    ]


def test_entry_claiming_more_than_4_gib_is_refused_before_reading(tmp_path):
    huge = tar_entry("top/huge.bin")
    huge.size = 5 * 2**30  # only the header is written: the claim alone is refused
    tar_archive(tmp_path / "huge.tar", [(huge, None)])
    with pytest.raises(DataError, match="claims 5,368,709,120 bytes"):
        data.safe_extract(tmp_path / "huge.tar", tmp_path)
    assert every_path_under(tmp_path) == ["huge.tar"]


@pytest.mark.parametrize("archive_name", ["a.tar.gz", "a.zip"])
@pytest.mark.parametrize("kept_fraction", [0.3, 0.9])
def test_truncated_archive_raises_data_error_naming_it(tmp_path, archive_name, kept_fraction):
    rng = np.random.default_rng(0)
    entries = [
        (f"top/{number}.bin", rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes())
        for number in range(4)
    ]
    archive = tmp_path / archive_name
    if archive_name.endswith(".zip"):
        zip_archive(archive, entries)
    else:
        tar_archive(archive, [(tar_entry(name), contents) for name, contents in entries])
    contents = archive.read_bytes()
    archive.write_bytes(contents[: int(len(contents) * kept_fraction)])
    with pytest.raises(DataError) as error:
        data.safe_extract(archive, tmp_path)
    assert str(archive) in str(error.value) and "\n" not in str(error.value)
    assert every_path_under(tmp_path) == [archive_name]


def test_interrupted_extraction_leaves_no_half_extracted_tree(tmp_path, monkeypatch):
    tar_archive(
        tmp_path / "a.tar.gz", [(tar_entry(f"top/{number}.bin"), b"x") for number in range(5)]
    )
    copied = []

    def copy_then_interrupt(source, path):
        if len(copied) == 3:
            raise KeyboardInterrupt
        copied.append(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as file:
            file.write(source.read())

    monkeypatch.setattr(data, "_copy_entry", copy_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        data.safe_extract(tmp_path / "a.tar.gz", tmp_path)
    assert len(copied) == 3
    assert every_path_under(tmp_path) == ["a.tar.gz"]


def test_missing_required_file_or_existing_folder_extracts_nothing(tmp_path):
    tar_archive(tmp_path / "a.tar.gz", [(tar_entry("top/a.bin"), b"x")])
    with pytest.raises(DataError, match="does not contain top/b.bin"):
        data.safe_extract(tmp_path / "a.tar.gz", tmp_path, required_files=["top/b.bin"])
    assert every_path_under(tmp_path) == ["a.tar.gz"]
    (tmp_path / "top").mkdir()
    with pytest.raises(DataError, match="already exists"):
        data.safe_extract(tmp_path / "a.tar.gz", tmp_path)
    assert every_path_under(tmp_path) == ["a.tar.gz", "top"]


@settings(max_examples=80, deadline=None)
@given(
    archive_name=st.sampled_from(["a.tar.gz", "a.tar", "a.zip"]),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["flip", "truncate", "insert"]),
            st.integers(min_value=0),
            st.integers(min_value=1, max_value=255),
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_mutated_archive_extracts_cleanly_or_raises_data_error(
    tmp_path_factory, archive_name, edits
):
    folder = tmp_path_factory.mktemp("mutated_archive")
    archive = folder / archive_name
    entries = [("top/a.bin", bytes(range(256)) * 3), ("top/sub/b.txt", b"hello " * 100)]
    if archive_name.endswith(".zip"):
        zip_archive(archive, entries)
    else:
        tar_archive(archive, [(tar_entry(name), contents) for name, contents in entries])
    contents = bytearray(archive.read_bytes())
    for edit, position, value in edits:
        position %= max(len(contents), 1)
        if edit == "flip" and contents:
            contents[position] ^= value
        elif edit == "truncate":
            del contents[position:]
        else:
            contents.insert(position, value)
    archive.write_bytes(bytes(contents))
    try:
        data.safe_extract(archive, folder)
    except DataError as error:
        assert str(archive) in str(error) and "\n" not in str(error)
        assert every_path_under(folder) == [archive_name]  # nothing half-extracted
    else:
        assert not [path for path in every_path_under(folder) if ".extracting" in path]
        assert all(
            Path(folder, path).is_dir() or Path(folder, path).is_file()
            for path in every_path_under(folder)
        )


# ----------------------------------------------------------------------------------------
# CIFAR-10: binary batch files and archives written here
# ----------------------------------------------------------------------------------------

CIFAR_FILE_NAMES = [f"data_batch_{number}.bin" for number in range(1, 6)] + ["test_batch.bin"]


def random_cifar_arrays(train_count=23, test_count=7, seed=0):
    """(train_images, train_labels, test_images, test_labels): uint8 NHWC images, labels 0..9."""
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (train_count, 32, 32, 3), dtype=np.uint8),
        rng.integers(0, 10, train_count),
        rng.integers(0, 256, (test_count, 32, 32, 3), dtype=np.uint8),
        rng.integers(0, 10, test_count),
    )


def cifar_record_by_hand(label, seed):
    """One 3,073-byte record: the label byte, then the red, green and blue planes (1,024 bytes
    each)."""
    rng = np.random.default_rng(seed)
    red, green, blue = (bytes(rng.integers(0, 256, 1024, dtype=np.uint8)) for _ in range(3))
    return bytes([label]) + red + green + blue, (red, green, blue)


def test_cifar_record_layout_written_by_hand_loads_as_nhwc(tmp_path):
    batches = tmp_path / "cifar10" / "cifar-10-batches-bin"
    batches.mkdir(parents=True)
    planes_of = {}
    for number, file_name in enumerate(CIFAR_FILE_NAMES):
        record, planes_of[file_name] = cifar_record_by_hand(label=number, seed=number)
        (batches / file_name).write_bytes(record)
    notices = []
    dataset = load_dataset("cifar10", tmp_path, download=False, notice=notices.append)
    assert dataset.train_images.shape == (5, 32, 32, 3) and dataset.train_images.dtype == np.uint8
    assert (
        dataset.train_labels.tolist() == [0, 1, 2, 3, 4] and dataset.train_labels.dtype == np.int64
    )
    assert dataset.test_labels.tolist() == [5]
    red, green, blue = planes_of["data_batch_3.bin"]
    y, x = 2, 5  # byte 32 * 2 + 5 = 69 of each plane
    assert dataset.train_images[2, y, x].tolist() == [red[69], green[69], blue[69]]
    red, green, blue = planes_of["test_batch.bin"]
    assert dataset.test_images[0, 31, 0].tolist() == [red[992], green[992], blue[992]]
    # and write_cifar_batches writes exactly these bytes back
    data.write_cifar_batches(
        tmp_path / "copy",
        dataset.train_images,
        dataset.train_labels,
        dataset.test_images,
        dataset.test_labels,
    )
    for file_name in CIFAR_FILE_NAMES:
        copy = tmp_path / "copy" / "cifar-10-batches-bin" / file_name
        assert copy.read_bytes() == (batches / file_name).read_bytes()


def test_write_cifar_batches_round_trips_with_per_channel_statistics(tmp_path):
    train_images, train_labels, test_images, test_labels = random_cifar_arrays(train_count=23)
    data.write_cifar_batches(
        tmp_path / "cifar10", train_images, train_labels, test_images, test_labels
    )
    batches = tmp_path / "cifar10" / "cifar-10-batches-bin"
    assert sorted(os.listdir(batches)) == sorted(CIFAR_FILE_NAMES)  # no temporary files left
    sizes = [(batches / name).stat().st_size // 3073 for name in CIFAR_FILE_NAMES]
    assert sizes == [5, 5, 5, 4, 4, 7]  # 23 split as evenly as possible

    notices = []
    dataset = load_dataset("cifar10", tmp_path, download=False, notice=notices.append)
    assert dataset.name == "cifar10" and dataset.num_classes == 10
    assert dataset.augment == data.Augmentation(flip=True, max_shift=4)
    assert dataset.description == "CIFAR-10, 23 training images"
    np.testing.assert_array_equal(dataset.train_images, train_images)
    np.testing.assert_array_equal(dataset.train_labels, train_labels)
    np.testing.assert_array_equal(dataset.test_images, test_images)
    np.testing.assert_array_equal(dataset.test_labels, test_labels)
    scaled = train_images / 255.0
    assert (
        dataset.mean.shape == (3,)
        and dataset.mean.dtype == np.float32
        and dataset.std.dtype == np.float32
    )
    np.testing.assert_allclose(dataset.mean, scaled.mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(dataset.std, scaled.std(axis=(0, 1, 2)), rtol=1e-6)
    assert (
        abs(standardise(dataset.train_images, dataset.mean, dataset.std)[..., 1].std() - 1) < 1e-5
    )

    assert len(notices) == 6  # one per file, none of them official
    for name, count, line in zip(CIFAR_FILE_NAMES, sizes, notices):
        assert str(batches / name) in line and f"({count} images, not 10,000)" in line


def write_cifar_folder(folder, **counts):
    data.write_cifar_batches(folder, *random_cifar_arrays(**counts))
    return folder / "cifar-10-batches-bin"


@pytest.mark.parametrize("size", [0, 3072, 3074, 3073 * 2 + 1])
def test_cifar_file_of_wrong_size_raises_data_error_naming_it(tmp_path, size):
    batches = write_cifar_folder(tmp_path / "cifar10")
    (batches / "data_batch_4.bin").write_bytes(bytes(size))
    with pytest.raises(DataError, match="not a positive multiple of the 3,073-byte") as error:
        load_dataset("cifar10", tmp_path, download=False, notice=lambda line: None)
    assert str(batches / "data_batch_4.bin") in str(error.value) and "\n" not in str(error.value)


def test_cifar_label_10_raises_data_error_naming_the_file(tmp_path):
    batches = write_cifar_folder(tmp_path / "cifar10")
    contents = bytearray((batches / "test_batch.bin").read_bytes())
    contents[3073 * 2] = 10  # the label byte of record 2
    (batches / "test_batch.bin").write_bytes(bytes(contents))
    with pytest.raises(DataError, match="label 10 in record 2") as error:
        load_dataset("cifar10", tmp_path, download=False, notice=lambda line: None)
    assert str(batches / "test_batch.bin") in str(error.value)


def test_cifar_missing_batch_file_says_to_extract_again(tmp_path):
    batches = write_cifar_folder(tmp_path / "cifar10")
    (batches / "data_batch_2.bin").unlink()
    with pytest.raises(DataError, match="delete the folder") as error:
        load_dataset("cifar10", tmp_path, download=False, notice=lambda line: None)
    assert str(batches / "data_batch_2.bin") in str(error.value)


def make_cifar_archive(path, **counts):
    """A cifar-10-binary.tar.gz in the official layout; returns the arrays it holds."""
    arrays = random_cifar_arrays(**counts)
    staging = path.parent / "staging"
    data.write_cifar_batches(staging, *arrays)
    with tarfile.open(path, "w:gz") as archive:
        archive.add(staging / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    shutil.rmtree(staging)
    return arrays


def test_cifar_archive_is_extracted_once_then_the_files_are_used(tmp_path):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    train_images, train_labels, test_images, test_labels = make_cifar_archive(
        folder / "cifar-10-binary.tar.gz"
    )
    notices = []
    dataset = load_dataset("cifar10", tmp_path, download=False, notice=notices.append)
    np.testing.assert_array_equal(dataset.train_images, train_images)
    np.testing.assert_array_equal(dataset.test_labels, test_labels)
    assert "not the official archive" in notices[0] and notices[1].startswith("extracting ")
    assert sorted(os.listdir(folder)) == [
        "cifar-10-batches-bin",
        "cifar-10-binary.tar.gz",
    ]  # no temporary folder

    (folder / "cifar-10-binary.tar.gz").write_bytes(b"damaged, but no longer needed")
    notices = []
    again = load_dataset("cifar10", tmp_path, download=False, notice=notices.append)
    np.testing.assert_array_equal(again.train_images, train_images)
    assert not [line for line in notices if "extracting" in line]


def test_cifar_truncated_archive_raises_data_error_and_extracts_nothing(tmp_path):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    archive = folder / "cifar-10-binary.tar.gz"
    make_cifar_archive(archive, train_count=200, test_count=50)
    archive.write_bytes(archive.read_bytes()[:-5000])
    with pytest.raises(DataError) as error:
        load_dataset("cifar10", tmp_path, download=False, notice=lambda line: None)
    assert str(archive) in str(error.value)
    assert os.listdir(folder) == ["cifar-10-binary.tar.gz"]


def test_cifar_archive_without_a_batch_file_extracts_nothing(tmp_path):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    staging = write_cifar_folder(tmp_path / "staging")
    with tarfile.open(folder / "cifar-10-binary.tar.gz", "w:gz") as archive:
        for name in CIFAR_FILE_NAMES[:-1]:
            archive.add(staging / name, arcname=f"cifar-10-batches-bin/{name}")
    with pytest.raises(DataError, match="does not contain cifar-10-batches-bin/test_batch.bin"):
        load_dataset("cifar10", tmp_path, download=False, notice=lambda line: None)
    assert os.listdir(folder) == ["cifar-10-binary.tar.gz"]


def test_cifar_is_downloaded_checked_and_extracted(tmp_path, monkeypatch):
    server = tmp_path / "server"
    server.mkdir()
    arrays = make_cifar_archive(server / "cifar-10-binary.tar.gz")
    monkeypatch.setattr(data, "CIFAR10_URL", (server / "cifar-10-binary.tar.gz").as_uri())
    monkeypatch.setattr(data, "CIFAR10_MD5", md5_of(server / "cifar-10-binary.tar.gz"))
    notices = []
    dataset = load_dataset("cifar10", tmp_path / "cache", download=True, notice=notices.append)
    np.testing.assert_array_equal(dataset.train_images, arrays[0])
    assert notices[0].startswith("downloading file://") and notices[1].startswith("extracting ")
    assert sorted(os.listdir(tmp_path / "cache" / "cifar10")) == [
        "cifar-10-batches-bin",
        "cifar-10-binary.tar.gz",
    ]


def test_cifar_missing_without_download_names_archive_and_url(tmp_path):
    with pytest.raises(DataError) as error:
        load_dataset("cifar10", tmp_path, download=False, notice=lambda line: None)
    assert str(tmp_path / "cifar10" / "cifar-10-binary.tar.gz") in str(error.value)
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz" in str(error.value)
    assert not (tmp_path / "cifar10").exists()


@settings(max_examples=100, deadline=None)
@given(
    edit=st.sampled_from(["random bytes", "flip", "truncate", "insert"]),
    random_bytes=st.binary(max_size=3 * 3073 + 10),
    position=st.integers(min_value=0),
    value=st.integers(min_value=0, max_value=255),
)
def test_fuzzed_cifar_file_gives_data_error_or_valid_dataset(
    tmp_path_factory, edit, random_bytes, position, value
):
    data_dir = tmp_path_factory.mktemp("fuzz")
    batches = write_cifar_folder(data_dir / "cifar10", train_count=10, test_count=2)
    contents = bytearray((batches / "data_batch_1.bin").read_bytes())  # two records
    position %= len(contents)
    if edit == "random bytes":
        contents = bytearray(random_bytes)
    elif edit == "flip":
        contents[position] ^= value or 1
    elif edit == "truncate":
        del contents[position:]
    else:
        contents.insert(position, value)
    (batches / "data_batch_1.bin").write_bytes(bytes(contents))
    try:
        dataset = load_dataset("cifar10", data_dir, download=False, notice=lambda line: None)
    except DataError as error:
        assert str(batches / "data_batch_1.bin") in str(error)
    else:
        assert dataset.train_images.dtype == np.uint8 and dataset.train_images.shape[1:] == (
            32,
            32,
            3,
        )
        assert len(dataset.train_images) == len(dataset.train_labels) == 8 + len(contents) // 3073
        assert 0 <= dataset.train_labels.min() and dataset.train_labels.max() <= 9


# ----------------------------------------------------------------------------------------
# Tiny-ImageNet: small zips in the official layout with real JPEG files (needs Pillow)
# ----------------------------------------------------------------------------------------

TINY_WNIDS = ["n03", "n01", "n02"]  # deliberately not sorted: class index follows sorted order
TINY_COLOURS = {"n01": (200, 30, 30), "n02": (30, 200, 30), "n03": (30, 30, 200)}


def jpeg_bytes(colour=None, size=(64, 64), grey_level=None):
    """A solid-colour JPEG (or a greyscale one) encoded by Pillow."""
    Image = pytest.importorskip("PIL.Image")
    image = (
        Image.new("L", size, grey_level)
        if grey_level is not None
        else Image.new("RGB", size, colour)
    )
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def tiny_imagenet_entries(per_class=2, annotations=None, replace=None):
    """(name, bytes) entries of a tiny-imagenet-200.zip: 3 classes, per_class training images each,
    4 validation images (val_0 greyscale). replace: {entry name: bytes} to swap in damaged ones."""
    root = "tiny-imagenet-200/"
    entries = {root + "wnids.txt": "".join(f"{wnid}\n" for wnid in TINY_WNIDS).encode()}
    for wnid in TINY_WNIDS:
        entries[f"{root}train/{wnid}/{wnid}_boxes.txt"] = b""
        for k in range(per_class):
            entries[f"{root}train/{wnid}/images/{wnid}_{k}.JPEG"] = jpeg_bytes(TINY_COLOURS[wnid])
    val_wnids = ["n02", "n03", "n01", "n02"]
    for k, wnid in enumerate(val_wnids):
        entries[f"{root}val/images/val_{k}.JPEG"] = (
            jpeg_bytes(grey_level=128) if k == 0 else jpeg_bytes(TINY_COLOURS[wnid])
        )
    if annotations is None:
        annotations = "".join(
            f"val_{k}.JPEG\t{wnid}\t0\t0\t63\t63\n" for k, wnid in enumerate(val_wnids)
        )
    entries[root + "val/val_annotations.txt"] = annotations.encode()
    entries[root + "test/images/test_0.JPEG"] = b"not even a JPEG: test/ is ignored"
    entries.update(replace or {})
    return list(entries.items())


def make_tiny_imagenet_zip(data_dir, **options):
    folder = Path(data_dir) / "tiny-imagenet"
    folder.mkdir(parents=True, exist_ok=True)
    zip_archive(folder / "tiny-imagenet-200.zip", tiny_imagenet_entries(**options))
    return folder


def test_tiny_imagenet_zip_loads_with_sorted_wnid_labels(tmp_path):
    folder = make_tiny_imagenet_zip(tmp_path)
    notices = []
    dataset = load_dataset("tiny-imagenet", tmp_path, download=False, notice=notices.append)
    assert dataset.name == "tiny-imagenet" and dataset.num_classes == 200
    assert dataset.augment == data.Augmentation(flip=True, max_shift=4)
    assert dataset.description == "Tiny-ImageNet, 6 training images"
    assert dataset.train_images.shape == (6, 64, 64, 3) and dataset.train_images.dtype == np.uint8
    assert dataset.test_images.shape == (4, 64, 64, 3) and dataset.test_images.dtype == np.uint8
    assert dataset.train_labels.dtype == np.int64 and dataset.test_labels.dtype == np.int64
    assert dataset.train_labels.tolist() == [0, 0, 1, 1, 2, 2]  # n01, n02, n03
    assert dataset.test_labels.tolist() == [1, 2, 0, 1]  # n02, n03, n01, n02 from the annotations
    for image, label in zip(dataset.train_images, dataset.train_labels):
        colour = TINY_COLOURS[sorted(TINY_WNIDS)[label]]
        assert (
            np.abs(image.astype(int) - colour).max() <= 8
        )  # JPEG is lossy, but barely on flat colour
    grey = dataset.test_images[0].astype(int)
    assert (grey[..., 0] == grey[..., 1]).all() and (
        grey[..., 1] == grey[..., 2]
    ).all()  # greyscale -> RGB
    assert np.abs(grey - 128).max() <= 2
    np.testing.assert_allclose(
        dataset.mean, (dataset.train_images / 255.0).mean(axis=(0, 1, 2)), rtol=1e-6
    )
    assert dataset.mean.shape == (3,) and dataset.std.shape == (3,)

    assert "not the official archive" in notices[0] and notices[1].startswith("extracting ")
    assert notices[2].startswith("decoding 10 Tiny-ImageNet JPEG files")
    assert (
        "6 training and 4 validation images, not the official" in notices[3] and len(notices) == 4
    )
    assert sorted(os.listdir(folder)) == sorted(
        ["tiny-imagenet-200", "tiny-imagenet-200.zip", *data.TINY_IMAGENET_CACHE_FILES.values()]
    )


def test_tiny_imagenet_cache_is_reused_without_the_jpeg_files(tmp_path):
    folder = make_tiny_imagenet_zip(tmp_path)
    first = load_dataset("tiny-imagenet", tmp_path, download=False, notice=lambda line: None)
    shutil.rmtree(folder / "tiny-imagenet-200")
    (folder / "tiny-imagenet-200.zip").unlink()
    notices = []
    second = load_dataset("tiny-imagenet", tmp_path, download=False, notice=notices.append)
    for field in ("train_images", "train_labels", "test_images", "test_labels", "mean", "std"):
        np.testing.assert_array_equal(getattr(second, field), getattr(first, field))
    assert len(notices) == 1 and "not the official" in notices[0]  # no extracting, no decoding


@pytest.mark.parametrize(
    "damage", ["garbage", "truncated", "wrong dtype", "pickled objects", "npz"]
)
def test_tiny_imagenet_damaged_cache_is_deleted_and_rebuilt(tmp_path, damage):
    folder = make_tiny_imagenet_zip(tmp_path)
    first = load_dataset("tiny-imagenet", tmp_path, download=False, notice=lambda line: None)
    cache = folder / "decoded-train-images.npy"
    if damage == "garbage":
        cache.write_bytes(b"\x93NUMPY garbage")
    elif damage == "truncated":
        cache.write_bytes(cache.read_bytes()[:-100])
    elif damage == "wrong dtype":
        np.save(cache, first.train_images.astype(np.float32))
    elif damage == "pickled objects":
        np.save(cache, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        np.savez(cache, first.train_images)
        os.replace(str(cache) + ".npz", cache)
    notices = []
    second = load_dataset("tiny-imagenet", tmp_path, download=False, notice=notices.append)
    np.testing.assert_array_equal(second.train_images, first.train_images)
    assert "the decoded cache is damaged" in notices[0] and str(cache) in notices[0]
    assert notices[1].startswith("decoding ")
    assert data.read_npy(str(cache)).dtype == np.uint8


def test_tiny_imagenet_without_pillow_says_how_to_install_it(tmp_path, monkeypatch):
    (tmp_path / "tiny-imagenet").mkdir()
    monkeypatch.setitem(sys.modules, "PIL", None)  # makes `from PIL import Image` fail
    with pytest.raises(DataError) as error:
        load_dataset("tiny-imagenet", tmp_path, download=False, notice=lambda line: None)
    assert (
        str(error.value)
        == "Tiny-ImageNet needs Pillow to decode its JPEG files: pip install pillow"
    )


def test_tiny_imagenet_zip_with_parent_folder_entry_writes_nothing(tmp_path):
    folder = tmp_path / "data" / "tiny-imagenet"
    folder.mkdir(parents=True)
    zip_archive(folder / "tiny-imagenet-200.zip", tiny_imagenet_entries() + [("../x", b"evil")])
    with pytest.raises(DataError, match="'../x'"):
        load_dataset("tiny-imagenet", tmp_path / "data", download=False, notice=lambda line: None)
    assert every_path_under(tmp_path) == [
        "data",
        "data/tiny-imagenet",
        "data/tiny-imagenet/tiny-imagenet-200.zip",
    ]


def test_tiny_imagenet_truncated_zip_raises_data_error(tmp_path):
    folder = make_tiny_imagenet_zip(tmp_path)
    archive = folder / "tiny-imagenet-200.zip"
    archive.write_bytes(archive.read_bytes()[:-300])
    with pytest.raises(DataError) as error:
        load_dataset("tiny-imagenet", tmp_path, download=False, notice=lambda line: None)
    assert str(archive) in str(error.value)
    assert os.listdir(folder) == ["tiny-imagenet-200.zip"]


@pytest.mark.parametrize(
    "problem, named_file",
    [
        ("wrong size", "tiny-imagenet-200/train/n02/images/n02_1.JPEG"),
        ("unreadable", "tiny-imagenet-200/val/images/val_2.JPEG"),
        ("png named JPEG", "tiny-imagenet-200/train/n01/images/n01_0.JPEG"),
        ("unknown wnid", "tiny-imagenet-200/val/val_annotations.txt"),
        ("five fields", "tiny-imagenet-200/val/val_annotations.txt"),
        ("path as file name", "tiny-imagenet-200/val/val_annotations.txt"),
        ("missing val image", "tiny-imagenet-200/val/images/val_9.JPEG"),
        ("bad wnid", "tiny-imagenet-200/wnids.txt"),
        ("class without images", "tiny-imagenet-200/train/n03/images"),
    ],
)
def test_tiny_imagenet_problem_raises_data_error_naming_the_file(tmp_path, problem, named_file):
    pytest.importorskip("PIL")
    root = "tiny-imagenet-200/"
    good_lines = "".join(
        f"val_{k}.JPEG\t{wnid}\t0\t0\t63\t63\n"
        for k, wnid in enumerate(["n02", "n03", "n01", "n02"])
    )
    replace, annotations = {}, None
    if problem == "wrong size":
        replace = {named_file: jpeg_bytes(TINY_COLOURS["n02"], size=(32, 64))}
    elif problem == "unreadable":
        replace = {named_file: jpeg_bytes(TINY_COLOURS["n01"])[:200]}
    elif problem == "png named JPEG":
        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", (64, 64)).save(buffer, format="PNG")
        replace = {named_file: buffer.getvalue()}
    elif problem == "unknown wnid":
        annotations = good_lines.replace("val_2.JPEG\tn01", "val_2.JPEG\tn99")
    elif problem == "five fields":
        annotations = good_lines.replace(
            "val_1.JPEG\tn03\t0\t0\t63\t63", "val_1.JPEG\tn03\t0\t0\t63"
        )
    elif problem == "path as file name":
        annotations = good_lines.replace("val_3.JPEG", "../../wnids.txt")
    elif problem == "missing val image":
        annotations = good_lines.replace("val_3.JPEG", "val_9.JPEG")
    elif problem == "bad wnid":
        replace = {root + "wnids.txt": b"n01\nn02\n../n03\n"}
    elif problem == "class without images":
        replace = {root + "wnids.txt": b"n01\nn02\nn03\nn04\n"}
        annotations = good_lines
    entries = tiny_imagenet_entries(annotations=annotations, replace=replace)
    if problem == "class without images":
        named_file = "tiny-imagenet-200/train/n04/images"
        entries.append((root + "train/n04/images/", b""))
    folder = tmp_path / "tiny-imagenet"
    folder.mkdir()
    zip_archive(folder / "tiny-imagenet-200.zip", entries)
    with pytest.raises(DataError) as error:
        load_dataset("tiny-imagenet", tmp_path, download=False, notice=lambda line: None)
    assert str(folder / named_file) in str(error.value) and "\n" not in str(error.value)
    assert not [
        name for name in os.listdir(folder) if name.startswith("decoded-")
    ]  # nothing cached


@pytest.fixture(scope="module")
def extracted_tiny_imagenet(tmp_path_factory):
    """An extracted tiny-imagenet-200/ folder (no archive, no cache) to copy and damage."""
    pytest.importorskip("PIL")
    folder = tmp_path_factory.mktemp("tiny") / "tiny-imagenet"
    folder.mkdir()
    zip_archive(folder / "source.zip", tiny_imagenet_entries())
    data.safe_extract(folder / "source.zip", folder)
    (folder / "source.zip").unlink()
    return folder


@settings(max_examples=60, deadline=None)
@given(
    edit=st.sampled_from(["flip", "truncate", "insert", "replace"]),
    position=st.integers(min_value=0),
    text=st.text(max_size=12),
)
def test_mutated_annotations_give_data_error_or_a_dataset(
    tmp_path_factory, extracted_tiny_imagenet, edit, position, text
):
    data_dir = tmp_path_factory.mktemp("mutated")
    shutil.copytree(extracted_tiny_imagenet, data_dir / "tiny-imagenet")
    annotations_path = (
        data_dir / "tiny-imagenet" / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    )
    annotations = annotations_path.read_text()
    position %= len(annotations)
    if edit == "flip":
        annotations = (
            annotations[:position]
            + chr(ord(annotations[position]) ^ 1)
            + annotations[position + 1 :]
        )
    elif edit == "truncate":
        annotations = annotations[:position]
    elif edit == "insert":
        annotations = annotations[:position] + text + annotations[position:]
    else:
        annotations = text
    annotations_path.write_text(annotations)
    try:
        dataset = load_dataset("tiny-imagenet", data_dir, download=False, notice=lambda line: None)
    except DataError as error:
        assert "\n" not in str(error)
    else:
        assert dataset.test_images.shape[1:] == (64, 64, 3) and len(dataset.test_images) == len(
            dataset.test_labels
        )
        assert set(dataset.test_labels.tolist()) <= {0, 1, 2}


# ----------------------------------------------------------------------------------------
# Augmentation: random flips and translations, checked against a pixel-by-pixel reference
# ----------------------------------------------------------------------------------------


def flip_and_translate_by_hand(images, flips, shifts_y, shifts_x):
    """The reference: a loop over every image and pixel."""
    expected = np.zeros_like(images)
    count, height, width, _ = images.shape
    for i in range(count):
        flipped = images[i, :, ::-1] if flips[i] else images[i]
        for y in range(height):
            for x in range(width):
                source_y, source_x = y - shifts_y[i], x - shifts_x[i]
                if 0 <= source_y < height and 0 <= source_x < width:
                    expected[i, y, x] = flipped[source_y, source_x]
    return expected


@settings(max_examples=50, deadline=None)
@given(
    shape=st.tuples(st.integers(0, 4), st.integers(1, 7), st.integers(1, 7), st.integers(1, 3)),
    seed=st.integers(0, 2**32 - 1),
    max_shift=st.integers(0, 9),
)
def test_flip_and_translate_matches_pixel_by_pixel_reference(shape, seed, max_shift):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal(shape).astype(np.float32)
    flips = rng.random(shape[0]) < 0.5
    shifts_y = rng.integers(-max_shift, max_shift + 1, shape[0])
    shifts_x = rng.integers(-max_shift, max_shift + 1, shape[0])
    result = data.flip_and_translate(images, flips, shifts_y, shifts_x)
    assert result.shape == images.shape and result.dtype == images.dtype
    np.testing.assert_array_equal(
        result, flip_and_translate_by_hand(images, flips, shifts_y, shifts_x)
    )


def test_no_shift_no_flip_is_identity_and_flip_reverses_columns():
    images = np.random.default_rng(0).standard_normal((5, 8, 6, 3))
    zeros = np.zeros(5, dtype=int)
    unchanged = data.flip_and_translate(images, np.zeros(5, dtype=bool), zeros, zeros)
    np.testing.assert_array_equal(unchanged, images)
    assert unchanged is not images
    flipped = data.flip_and_translate(images, np.ones(5, dtype=bool), zeros, zeros)
    np.testing.assert_array_equal(flipped, images[:, :, ::-1])


def test_shift_moves_content_by_exactly_dy_dx_with_zeros_entering():
    images = np.arange(1, 1 + 2 * 6 * 7 * 2, dtype=np.float64).reshape(
        2, 6, 7, 2
    )  # no zeros inside
    result = data.flip_and_translate(images, [False, False], shifts_y=[2, -1], shifts_x=[-3, 1])
    np.testing.assert_array_equal(result[0, 2:, :4], images[0, :4, 3:])  # down 2, left 3
    assert (result[0, :2] == 0).all() and (result[0, :, 4:] == 0).all()
    np.testing.assert_array_equal(result[1, :5, 1:], images[1, 1:, :6])  # up 1, right 1
    assert (result[1, 5] == 0).all() and (result[1, :, 0] == 0).all()


def test_random_flip_and_translate_draws_every_shift_and_flips_about_half():
    # A single bright pixel at (10, 10) of a 32x32 image lands at (10 + dy, 10 + dx), or at
    # (10 + dy, 21 + dx) if flipped: the ranges do not overlap, so each draw can be read back.
    images = np.zeros((2000, 32, 32, 1), dtype=np.float32)
    images[:, 10, 10] = 1
    result = data.random_flip_and_translate(images, np.random.default_rng(0), max_shift=4)
    assert result.shape == images.shape and result.dtype == np.float32
    assert (result.sum(axis=(1, 2, 3)) == 1).all()  # the pixel never leaves the image
    _, rows, columns, _ = np.nonzero(result)
    flipped = columns > 15
    shifts_y = rows - 10
    shifts_x = np.where(flipped, columns - 21, columns - 10)
    assert 0.45 < flipped.mean() < 0.55
    assert sorted(set(shifts_y.tolist())) == list(range(-4, 5))
    assert sorted(set(shifts_x.tolist())) == list(range(-4, 5))
    assert len(set(zip(flipped.tolist(), shifts_y.tolist(), shifts_x.tolist()))) == 2 * 9 * 9


def test_random_flip_and_translate_same_seed_same_output_different_per_image():
    images = np.repeat(np.random.default_rng(1).standard_normal((1, 16, 16, 3)), 32, axis=0)
    first = data.random_flip_and_translate(images, np.random.default_rng(7))
    second = data.random_flip_and_translate(images, np.random.default_rng(7))
    other = data.random_flip_and_translate(images, np.random.default_rng(8))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)
    distinct = {first[i].tobytes() for i in range(32)}
    assert len(distinct) > 16  # copies of one image, transformed differently


def test_random_flip_without_shift_gives_each_image_or_its_mirror_image():
    images = np.random.default_rng(2).standard_normal((64, 9, 9, 2))
    result = data.random_flip_and_translate(images, np.random.default_rng(5), max_shift=0)
    flipped = [np.array_equal(out, image[:, ::-1]) for out, image in zip(result, images)]
    unchanged = [np.array_equal(out, image) for out, image in zip(result, images)]
    assert all(f != u for f, u in zip(flipped, unchanged))  # exactly one of the two, every time
    assert 16 < sum(flipped) < 48


def test_without_flips_every_image_is_only_moved():
    # the bright pixel of the test above, now never mirrored: it stays within max_shift of (10, 10)
    images = np.zeros((1000, 32, 32, 1), dtype=np.float32)
    images[:, 10, 10] = 1
    result = data.random_flip_and_translate(
        images, np.random.default_rng(0), max_shift=2, flip=False
    )
    assert (result.sum(axis=(1, 2, 3)) == 1).all()
    _, rows, columns, _ = np.nonzero(result)
    moves = set(zip((rows - 10).tolist(), (columns - 10).tolist()))
    assert moves == {
        (dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
    }  # every move, no mirror


def test_a_training_split_is_standardised_then_augmented_as_asked():
    import snip_min as sm

    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (20, 10, 10, 1)).astype(np.uint8)
    labels = rng.integers(0, 10, 20)
    index = sm.xp.asarray(np.array([3, 0, 7, 7, 12]))
    moved = sm.DeviceSplit(
        images, labels, [0.3], [0.2], augment=data.Augmentation(flip=False, max_shift=1)
    )
    plain = sm.DeviceSplit(images, labels, [0.3], [0.2])
    assert plain.draw_moves(np.random.default_rng(9)) is None  # not augmented
    epoch_moves = moved.draw_moves(np.random.default_rng(9))  # (3, 20): one per image
    assert epoch_moves.shape == (3, 20)
    np.testing.assert_array_equal(
        epoch_moves, data.draw_moves(np.random.default_rng(9), 20, 1, flip=False)
    )
    assert not epoch_moves[0].any() and set(np.unique(epoch_moves[1:])) <= {-1, 0, 1}
    moves = sm.xp.asarray(epoch_moves[:, :5])
    standardised, batch_labels = plain.batch(index, moves)  # moves ignored
    np.testing.assert_allclose(
        sm.to_host(standardised), (images[[3, 0, 7, 7, 12]] / 255 - 0.3) / 0.2, rtol=1e-5
    )
    np.testing.assert_array_equal(sm.to_host(batch_labels), labels[[3, 0, 7, 7, 12]])
    np.testing.assert_array_equal(
        sm.to_host(moved.batch(index)[0]), sm.to_host(standardised)
    )  # no moves
    _, shifts_y, shifts_x = epoch_moves[:, :5]
    expected = data.flip_and_translate(
        sm.to_host(standardised), np.zeros(5, dtype=bool), shifts_y, shifts_x
    )
    np.testing.assert_array_equal(sm.to_host(moved.batch(index, moves)[0]), expected)


def test_the_moves_drawn_for_an_epoch_are_the_moves_random_flip_and_translate_makes():
    # random_flip_and_translate = draw_moves + flip_and_translate, from the same random stream
    images = np.random.default_rng(2).standard_normal((12, 9, 9, 3)).astype(np.float32)
    flips, shifts_y, shifts_x = data.draw_moves(np.random.default_rng(6), 12, max_shift=3)
    np.testing.assert_array_equal(
        data.random_flip_and_translate(images, np.random.default_rng(6), 3),
        data.flip_and_translate(images, flips, shifts_y, shifts_x),
    )


def test_random_flip_and_translate_on_cupy_matches_numpy():
    cupy = pytest.importorskip("cupy")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception:
        pytest.skip("CuPy is installed but no GPU is usable")
    images = np.random.default_rng(0).standard_normal((16, 12, 12, 3)).astype(np.float32)
    on_device = data.random_flip_and_translate(cupy.asarray(images), np.random.default_rng(3))
    assert isinstance(on_device, cupy.ndarray) and on_device.dtype == cupy.float32
    np.testing.assert_array_equal(
        cupy.asnumpy(on_device), data.random_flip_and_translate(images, np.random.default_rng(3))
    )


# ----------------------------------------------------------------------------------------
# Synthetic datasets
# ----------------------------------------------------------------------------------------


def nearest_class_mean_accuracy(dataset):
    """Test accuracy of the simplest classifier: the class whose mean training image is nearest."""
    train = standardise(dataset.train_images, dataset.mean, dataset.std).reshape(
        len(dataset.train_images), -1
    )
    test = standardise(dataset.test_images, dataset.mean, dataset.std).reshape(
        len(dataset.test_images), -1
    )
    classes = np.unique(dataset.train_labels)
    means = np.stack(
        [train[dataset.train_labels == k].mean(axis=0) for k in classes]
    )  # (classes, H*W*C)
    distances = (means**2).sum(axis=1) - 2 * test @ means.T  # (M, classes), less |test|^2
    return (classes[distances.argmin(axis=1)] == dataset.test_labels).mean()


@pytest.mark.parametrize(
    "name, train_count, test_count",
    [("mnist", 200, 50), ("cifar10", 200, 50), ("tiny-imagenet", 400, 100)],
)
def test_synthetic_dataset_loads_and_is_learnable(tmp_path, name, train_count, test_count):
    if name == "tiny-imagenet":
        pytest.importorskip("PIL")
    folder = data.write_synthetic_dataset(name, tmp_path, train_count, test_count, seed=0)
    assert folder == str(tmp_path / name)
    dataset = load_dataset(name, tmp_path, download=False, notice=lambda line: None)
    assert len(dataset.train_images) == train_count and len(dataset.test_images) == test_count
    assert len(np.unique(dataset.train_labels)) == min(train_count, dataset.num_classes)
    assert nearest_class_mean_accuracy(dataset) > 0.9
    with pytest.raises(DataError, match="already exists"):
        data.write_synthetic_dataset(name, tmp_path, train_count, test_count)


def test_synthetic_cifar10_from_the_command_line_loads(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(REPOSITORY / "data.py"),
            "synthetic",
            "cifar10",
            "--data-dir",
            str(tmp_path),
            "--train",
            "50",
            "--test",
            "10",
            "--seed",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "cifar10") in result.stdout
    assert (
        f"python snip_min.py --model vgg-d --dataset cifar10 --data-dir {tmp_path}" in result.stdout
    )
    dataset = load_dataset("cifar10", tmp_path, download=False, notice=lambda line: None)
    assert dataset.train_images.shape == (50, 32, 32, 3) and dataset.test_images.shape == (
        10,
        32,
        32,
        3,
    )


def test_synthetic_command_refuses_an_existing_folder_and_too_few_images(tmp_path, capsys):
    (tmp_path / "mnist").mkdir()
    assert data.main(["synthetic", "mnist", "--data-dir", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert data.main(["synthetic", "cifar10", "--data-dir", str(tmp_path), "--train", "4"]) == 2
    assert "at least 5 training" in capsys.readouterr().err
    assert not (tmp_path / "cifar10").exists()


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
    result = subprocess.run(
        [
            sys.executable,
            str(REPOSITORY / "data.py"),
            "mnist",
            "--data-dir",
            str(tmp_path),
            "--no-download",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


# ----------------------------------------------------------------------------------------
# The real MNIST subset (24,345 training images) beside the repository
# ----------------------------------------------------------------------------------------


@pytest.mark.skipif(
    REAL_MNIST_FOLDER is None or not REAL_MNIST_FOLDER.is_dir(),
    reason=f"no real MNIST: set {helpers.REAL_MNIST_VARIABLE} to a folder holding its IDX files",
)
def test_real_mnist_subset_loads_with_expected_counts(tmp_path):
    (tmp_path / "mnist").symlink_to(REAL_MNIST_FOLDER, target_is_directory=True)
    notices = []
    dataset = load_dataset("mnist", str(tmp_path), download=False, notice=notices.append)
    assert (
        dataset.train_images.shape == (24_345, 28, 28, 1) and dataset.train_images.dtype == np.uint8
    )
    assert dataset.test_images.shape == (10_000, 28, 28, 1)
    assert dataset.description == "MNIST, 24,345 training images"
    assert np.bincount(dataset.train_labels, minlength=10).tolist() == [
        2406,
        2770,
        2381,
        2524,
        2386,
        2181,
        2401,
        2524,
        2328,
        2444,
    ]
    standardised = standardise(dataset.train_images, dataset.mean, dataset.std)
    assert abs(standardised.mean()) < 1e-4 and abs(standardised.std() - 1) < 1e-4
    assert len(notices) == 2
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") in notices[0]
    assert "(24,345 images)" in notices[0]
    assert str(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz") in notices[1]
    assert not [line for line in notices if "t10k" in line]


def test_the_first_n_images_written_as_a_folder_are_what_train_images_n_gives(tiny_mnist, tmp_path):
    """`python data.py first mnist N --out DIR`: DIR gives every command the data that
    --train-images N gives snip_min.py: the same first N images and labels, the same
    statistics, the whole test set (its files copied byte for byte)."""
    full = load_dataset("mnist", tiny_mnist, download=False, notice=lambda line: None)
    status = data.main(["first", "mnist", "120", "--data-dir", tiny_mnist, "--out", str(tmp_path)])
    assert status == 0
    written = load_dataset("mnist", str(tmp_path), download=False, notice=lambda line: None)
    expected = data.first_training_images(full, 120)
    np.testing.assert_array_equal(written.train_images, expected.train_images)
    np.testing.assert_array_equal(written.train_labels, expected.train_labels)
    np.testing.assert_array_equal(written.mean, expected.mean)
    np.testing.assert_array_equal(written.std, expected.std)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        original = Path(tiny_mnist) / "mnist" / name
        assert (tmp_path / "mnist" / name).read_bytes() == original.read_bytes()
    again = data.main(["first", "mnist", "120", "--data-dir", tiny_mnist, "--out", str(tmp_path)])
    too_many = data.main(["first", "mnist", "301", "--data-dir", tiny_mnist, "--out", "elsewhere"])
    assert again == 2 and too_many == 2 and not os.path.exists("elsewhere")


def test_the_first_n_images_appear_whole_or_not_at_all(tiny_mnist, tmp_path, monkeypatch, capsys):
    """A write that fails half way (here at the second training file: a full disk) leaves no
    folder, not even the hidden one it was written into, and ends in one line with status 2.
    (The two test files are copied, the two training files written by write_idx.)"""
    written = []

    def write_idx_until_the_disk_is_full(path, array):
        if len(written) == 1:
            raise OSError(28, "No space left on device")
        written.append(path)
        data.write_file_atomically(path, b"")

    monkeypatch.setattr(data, "write_idx", write_idx_until_the_disk_is_full)
    out = tmp_path / "out"
    status = data.main(
        ["first", "mnist", "120", "--data-dir", tiny_mnist, "--out", str(out), "--no-download"]
    )
    errors = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("note")]
    assert status == 2 and len(errors) == 1
    assert f"cannot write into {out}: No space left on device" in errors[0]
    assert len(written) == 1 and os.listdir(out) == []
