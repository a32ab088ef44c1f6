"""Datasets for snip-min: find, download, verify, parse and normalise them.

Reading order: errors and the data folder -> IDX files (MNIST's format) -> downloading ->
the Dataset record and the checks every dataset shares -> MNIST -> load_dataset -> command line.
A new dataset (CIFAR-10, Tiny-ImageNet) adds its own section with a `load_<name>` function
and one entry in LOADERS; everything else is shared.

Shapes: N training images, M test images, H, W height/width, C channels. Images come back
as float32 (N, H, W, C) arrays, labels as int64 (N,) arrays.

Run `python data.py mnist --data-dir DIR` to download (if needed), verify and summarise MNIST.
"""

import argparse
import gzip
import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass

import numpy as np


# ----------------------------------------------------------------------------------------
# Errors and the data folder
# ----------------------------------------------------------------------------------------

class DataError(Exception):
    """A problem with the data the user can fix. str(error) is ONE line that names the file
    (or URL) and says what to do. The command line prints it and exits with status 2."""


def print_to_stderr(line: str) -> None:
    """The default notice callback: print one line to standard error."""
    print(line, file=sys.stderr)


def default_data_dir() -> str:
    """$SNIP_MIN_DATA if set, else $XDG_CACHE_HOME/snip-min, else ~/.cache/snip-min."""
    if os.environ.get("SNIP_MIN_DATA"):
        return os.environ["SNIP_MIN_DATA"]
    cache_folder = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache_folder, "snip-min")


# ----------------------------------------------------------------------------------------
# IDX files
#
# An IDX file is a header followed by the array's bytes in C order:
#   two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions (1 byte),
#   then each dimension as a big-endian 4-byte unsigned integer.
# MNIST ships them gzip-compressed (names ending in .gz).
# ----------------------------------------------------------------------------------------

UNSIGNED_BYTE_TYPE_CODE = 0x08
IDX_TYPE_NAMES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "short", 0x0C: "int",
                  0x0D: "float", 0x0E: "double"}
MAX_IDX_PAYLOAD_BYTES = 2**31   # a header promising more than this is damaged, not real data
READ_CHUNK_BYTES = 2**20        # the payload is read 1 MiB at a time, never allocated up front


def read_idx(path) -> np.ndarray:
    """Parse one IDX file of unsigned bytes (gzip-compressed if the name ends in .gz).

    Returns a uint8 array with the shape the header gives. Raises DataError naming the file
    if it is missing, unreadable, badly compressed, or not exactly one valid IDX array.
    """
    path = os.fspath(path)
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as file:
            return _read_idx_contents(file, path)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; check the path") from None
    except (gzip.BadGzipFile, zlib.error) as error:
        raise _invalid_idx(path, f"damaged gzip data ({_one_line(error)})") from None
    except EOFError:
        raise _invalid_idx(path, "the gzip stream is truncated") from None
    except OSError as error:
        raise DataError(f"{path} could not be read ({_one_line(error)}); check the file") from None


def _read_idx_contents(file, path: str) -> np.ndarray:
    """Read header and payload from an open binary file; see read_idx."""
    header = file.read(4)
    if len(header) < 4:
        raise _invalid_idx(path, f"only {len(header)} bytes, too short for an IDX header")
    if header[:2] == b"\x1f\x8b":
        raise _invalid_idx(path, "it looks gzip-compressed; give it a name ending in .gz")
    if header[0] != 0 or header[1] != 0:
        raise _invalid_idx(path, f"it starts with bytes 0x{header[0]:02X} 0x{header[1]:02X}, "
                                 f"not two zero bytes")
    type_code, ndim = header[2], header[3]
    if type_code != UNSIGNED_BYTE_TYPE_CODE:
        type_name = IDX_TYPE_NAMES.get(type_code, "unknown")
        raise _invalid_idx(path, f"type code 0x{type_code:02X} ({type_name}) is not supported, "
                                 f"only 0x08 (unsigned byte)")
    if not 1 <= ndim <= 4:
        raise _invalid_idx(path, f"it claims {ndim} dimensions; only 1 to 4 are supported")

    dims_bytes = file.read(4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise _invalid_idx(path, "the header is truncated")
    dims = tuple(int.from_bytes(dims_bytes[4 * i: 4 * i + 4], "big") for i in range(ndim))
    expected_bytes = 1
    for size in dims:
        expected_bytes *= size                          # a Python int, so it cannot overflow
    if expected_bytes > MAX_IDX_PAYLOAD_BYTES:
        raise _invalid_idx(path, f"the header claims shape {dims}, {expected_bytes:,} bytes, "
                                 f"more than the {MAX_IDX_PAYLOAD_BYTES:,} this reader accepts")

    payload = bytearray()                               # grows with the bytes that really arrive
    while len(payload) < expected_bytes:
        chunk = file.read(min(READ_CHUNK_BYTES, expected_bytes - len(payload)))
        if not chunk:
            raise _invalid_idx(path, f"the payload is truncated: the header promises "
                                     f"{expected_bytes:,} bytes, the file holds {len(payload):,}")
        payload += chunk
    if file.read(1):                                    # for gzip this also checks the CRC
        raise _invalid_idx(path, f"trailing bytes after the {expected_bytes:,} the header promises")
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims)


def _invalid_idx(path: str, reason: str) -> DataError:
    """The DataError for a file that is not a valid IDX file."""
    return DataError(f"{path} is not a valid IDX file: {reason}; replace it with a good copy")


def _one_line(error: BaseException) -> str:
    """An exception's message squeezed onto one line."""
    return " ".join(str(error).split()) or type(error).__name__


def write_idx(path, array: np.ndarray) -> None:
    """Write a uint8 array (1 to 4 dimensions) as an IDX file, gzip-compressed if the name
    ends in .gz. The file appears atomically: it is written to a temporary file in the same
    folder, flushed to disk, then renamed into place. The folder is created if needed."""
    path = os.fspath(path)
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"write_idx writes uint8 arrays only, got {array.dtype}")
    if not 1 <= array.ndim <= 4:
        raise ValueError(f"write_idx writes arrays of 1 to 4 dimensions, got {array.ndim}")
    header = bytes([0, 0, UNSIGNED_BYTE_TYPE_CODE, array.ndim])
    header += b"".join(size.to_bytes(4, "big") for size in array.shape)
    contents = header + array.tobytes(order="C")
    if path.endswith(".gz"):
        contents = gzip.compress(contents, mtime=0)     # mtime=0: same array, same bytes
    write_file_atomically(path, contents)


def write_file_atomically(path: str, contents: bytes) -> None:
    """Write bytes to path so that readers see either the old file or the whole new one."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary_path = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(contents)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary_path, 0o644)                 # mkstemp makes files private
        os.replace(temporary_path, path)
    except BaseException:
        if os.path.exists(temporary_path):
            os.remove(temporary_path)
        raise


# ----------------------------------------------------------------------------------------
# Downloading
# ----------------------------------------------------------------------------------------

DOWNLOAD_TIMEOUT_SECONDS = 30


def file_md5(path: str) -> str:
    """The md5 of a file's bytes, as 32 hex digits."""
    digest = hashlib.md5()
    with open(path, "rb") as file:
        while chunk := file.read(READ_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def download(urls, destination, md5, retries=3, notice=print_to_stderr) -> None:
    """Download a file to `destination`, trying each URL in turn, each up to `retries` times.

    The bytes stream into `destination + '.part'`; only when their md5 matches `md5` is that
    renamed to `destination`. A partial or wrong file is deleted. A checksum mismatch or an
    HTTP 4xx moves on to the next URL at once; other failures are retried after a pause.
    Raises DataError naming the failed URLs and where to place the file by hand.
    """
    destination = os.fspath(destination)
    os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
    part_path = destination + ".part"
    failures = []
    for url in urls:
        for attempt in range(1, retries + 1):
            notice(f"downloading {url}")
            try:
                downloaded_md5 = _stream_to_file(url, part_path)
            except (OSError, http.client.HTTPException, ValueError) as error:
                reason = _one_line(error.reason if isinstance(error, urllib.error.URLError) else error)
                permanent = isinstance(error, urllib.error.HTTPError) and 400 <= error.code < 500
                if attempt < retries and not permanent:
                    notice(f"note: {url} failed ({reason}); trying again")
                    time.sleep(attempt)
                    continue
                failures.append(f"{url} ({reason})")
                break
            if downloaded_md5 == md5:
                os.replace(part_path, destination)
                return
            os.remove(part_path)
            failures.append(f"{url} (md5 {downloaded_md5}, expected {md5})")
            break
    tried = "; ".join(failures) or "no URLs given"
    raise DataError(f"could not download {os.path.basename(destination)}: {tried}; "
                    f"download it by hand and place it at {destination}")


def _stream_to_file(url: str, part_path: str) -> str:
    """Copy a URL's bytes into part_path and return their md5; delete part_path on failure."""
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response, \
                open(part_path, "wb") as file:
            while chunk := response.read(READ_CHUNK_BYTES):
                digest.update(chunk)
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        if os.path.exists(part_path):
            os.remove(part_path)
        raise
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------
# The Dataset record and what every dataset shares
# ----------------------------------------------------------------------------------------

@dataclass
class Dataset:
    """A dataset ready for training: normalised float32 NHWC images and int64 labels."""
    name: str                 # 'mnist'
    train_images: np.ndarray  # float32, (N, H, W, C), normalised
    train_labels: np.ndarray  # int64, (N,)
    test_images: np.ndarray   # float32, (M, H, W, C), normalised with the TRAINING mean/std
    test_labels: np.ndarray   # int64, (M,)
    num_classes: int          # 10 for MNIST
    description: str          # e.g. "MNIST, 24,345 training images"


def find_or_download(folder: str, file_name: str, md5: str, mirrors, allow_download: bool,
                     notice) -> str:
    """The path of file_name in folder, or of its uncompressed form (the name without .gz).
    A missing file is downloaded from the mirrors (each a URL prefix ending in '/') if allowed."""
    compressed_path = os.path.join(folder, file_name)
    uncompressed_path = compressed_path[:-len(".gz")] if compressed_path.endswith(".gz") else compressed_path
    for path in (compressed_path, uncompressed_path):
        if os.path.exists(path):
            return path
    if not allow_download:
        raise DataError(f"{compressed_path} is missing; place the file there "
                        f"(it is at {mirrors[0]}{file_name}) or allow downloading")
    download([mirror + file_name for mirror in mirrors], compressed_path, md5, notice=notice)
    return compressed_path


def check_images_and_labels(images: np.ndarray, images_path: str, labels: np.ndarray,
                            labels_path: str, image_shape: tuple, num_classes: int) -> None:
    """Raise DataError unless images is (N, *image_shape) and labels is (N,) in 0..num_classes-1."""
    advice = "delete it so it is downloaded again"
    if images.ndim != 1 + len(image_shape) or images.shape[1:] != image_shape:
        raise DataError(f"{images_path} holds an array of shape {images.shape}, not "
                        f"(N, {', '.join(map(str, image_shape))}) images; {advice}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path} holds an array of shape {labels.shape}, not (N,) labels; {advice}")
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images):,} images but {labels_path} holds "
                        f"{len(labels):,} labels; delete both so they are downloaded again")
    if len(images) == 0:
        raise DataError(f"{images_path} holds no images; {advice}")
    if labels.max() >= num_classes:
        raise DataError(f"{labels_path} holds label {labels.max()}, outside 0..{num_classes - 1}; {advice}")


def normalise(train_pixels: np.ndarray, test_pixels: np.ndarray) -> tuple:
    """Scale uint8 pixels to [0, 1], then subtract the training images' mean and divide by
    their standard deviation (one scalar each, as the SNIP authors do). Test images get the
    TRAINING statistics. Returns (train, test) as float32 arrays of the input shapes."""
    train = train_pixels.astype(np.float32) / 255
    test = test_pixels.astype(np.float32) / 255
    mean = float(train.mean(dtype=np.float64))
    std = float(train.std(dtype=np.float64))
    if std == 0:
        raise DataError("every training pixel has the same value, so the images cannot be "
                        "normalised; check the training image file")
    train = ((train - mean) / std).astype(np.float32, copy=False)
    test = ((test - mean) / std).astype(np.float32, copy=False)
    return train, test


def read_dataset_idx(path: str) -> np.ndarray:
    """read_idx for a dataset file: a damaged file's error also says it can be re-downloaded."""
    try:
        return read_idx(path)
    except DataError as error:
        raise DataError(f"{error}, or delete it so it is downloaded again") from None


# ----------------------------------------------------------------------------------------
# MNIST: 28x28 grey digits, 10 classes, four gzip-compressed IDX files
# ----------------------------------------------------------------------------------------

MNIST_MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]
MNIST_FILES = {  # role -> (file name, md5 of the official file)
    "train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
}


def load_mnist(folder: str, allow_download: bool, notice) -> Dataset:
    """Load MNIST from folder, downloading missing files if allowed.

    A .gz file whose md5 is not the official one is used if it is a valid IDX file, with
    one notice line. Uncompressed files cannot be compared with the official checksums
    (those are of the .gz files), so they are validated but get no notice.
    """
    arrays, paths, notices = {}, {}, []
    for role, (file_name, official_md5) in MNIST_FILES.items():
        path = find_or_download(folder, file_name, official_md5, MNIST_MIRRORS, allow_download, notice)
        arrays[role] = read_dataset_idx(path)
        paths[role] = path
        if path.endswith(".gz") and file_md5(path) != official_md5:
            noun = "images" if role.endswith("images") else "labels"
            notices.append(f"note: {path} is a valid IDX file but not the official MNIST file "
                           f"({len(arrays[role]):,} {noun}); using it as is")
    for split in ("train", "test"):
        check_images_and_labels(arrays[f"{split}_images"], paths[f"{split}_images"],
                                arrays[f"{split}_labels"], paths[f"{split}_labels"],
                                image_shape=(28, 28), num_classes=10)
    for line in notices:
        notice(line)

    train_images, test_images = normalise(arrays["train_images"][..., np.newaxis],   # (N, 28, 28, 1)
                                          arrays["test_images"][..., np.newaxis])    # (M, 28, 28, 1)
    return Dataset(name="mnist",
                   train_images=train_images,
                   train_labels=arrays["train_labels"].astype(np.int64),
                   test_images=test_images,
                   test_labels=arrays["test_labels"].astype(np.int64),
                   num_classes=10,
                   description=f"MNIST, {len(train_images):,} training images")


# ----------------------------------------------------------------------------------------
# load_dataset: one entry per dataset
# ----------------------------------------------------------------------------------------

LOADERS = {"mnist": load_mnist}  # name -> load_<name>(folder, allow_download, notice)


def load_dataset(name, data_dir=None, download=True, notice=print_to_stderr) -> Dataset:
    """Load a dataset by name from `<data_dir>/<name>/` (data_dir None: default_data_dir()).
    download: whether missing files may be fetched. notice: called with each one-line note."""
    if name not in LOADERS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(LOADERS))}")
    data_dir = os.path.expanduser(os.fspath(data_dir)) if data_dir is not None else default_data_dir()
    return LOADERS[name](os.path.join(data_dir, name), download, notice)


# ----------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------

def main(argv=None) -> int:
    """`python data.py mnist [--data-dir DIR]`: download (if needed), verify and summarise."""
    parser = argparse.ArgumentParser(description="Download (if needed), verify and summarise a dataset.")
    parser.add_argument("name", choices=sorted(LOADERS), help="which dataset")
    parser.add_argument("--data-dir", default=None,
                        help=f"folder holding <name>/ (default: {default_data_dir()})")
    parser.add_argument("--no-download", action="store_true",
                        help="fail instead of downloading missing files")
    arguments = parser.parse_args(argv)
    try:
        dataset = load_dataset(arguments.name, arguments.data_dir, download=not arguments.no_download)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{dataset.description}, {len(dataset.test_images):,} test images, {dataset.num_classes} classes; "
          f"normalised train mean {dataset.train_images.mean():.4f} std {dataset.train_images.std():.4f}, "
          f"test mean {dataset.test_images.mean():.4f} std {dataset.test_images.std():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
