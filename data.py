"""Datasets for snip-min: find, download, verify, extract and parse them.

Reading order: errors and the data folder -> IDX files (MNIST's format) and atomic writes ->
downloading -> safe extraction of archives -> the Dataset record and what every dataset shares
(pixel statistics, standardisation) -> MNIST and Fashion-MNIST -> CIFAR-10 -> Tiny-ImageNet ->
augmentation -> load_dataset (and first_training_images) -> small synthetic datasets ->
command line. A new dataset adds its own section with a `load_<name>` function and one entry
in LOADERS; everything else is shared.

Shapes: N training images, M test images, H, W height/width, C channels. Images come back as
uint8 (N, H, W, C) arrays, labels as int64 (N,) arrays; the training code standardises each
batch with the Dataset's mean and std: (images / 255 - mean) / std.

Run `python data.py NAME --data-dir DIR` to download (if needed), verify and summarise a
dataset (mnist, fashion-mnist, cifar10, tiny-imagenet), and
`python data.py synthetic NAME --data-dir DIR` to write a small, learnable stand-in in the
official format, for running offline.
"""

import argparse
import contextlib
import gzip
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, replace
from typing import NamedTuple, Optional

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
    cache_folder = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
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
IDX_TYPE_NAMES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "short",
    0x0C: "int",
    0x0D: "float",
    0x0E: "double",
}
MAX_IDX_PAYLOAD_BYTES = 2**31  # a header promising more than this is damaged, not real data
READ_CHUNK_BYTES = 2**20  # the payload is read 1 MiB at a time, never allocated up front


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
        raise _invalid_idx(
            path, f"it starts with bytes 0x{header[0]:02X} 0x{header[1]:02X}, not two zero bytes"
        )
    type_code, ndim = header[2], header[3]
    if type_code != UNSIGNED_BYTE_TYPE_CODE:
        type_name = IDX_TYPE_NAMES.get(type_code, "unknown")
        raise _invalid_idx(
            path,
            f"type code 0x{type_code:02X} ({type_name}) is not supported, "
            f"only 0x08 (unsigned byte)",
        )
    if not 1 <= ndim <= 4:
        raise _invalid_idx(path, f"it claims {ndim} dimensions; only 1 to 4 are supported")

    dims_bytes = file.read(4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise _invalid_idx(path, "the header is truncated")
    dims = tuple(int.from_bytes(dims_bytes[4 * i : 4 * i + 4], "big") for i in range(ndim))
    expected_bytes = 1
    for size in dims:
        expected_bytes *= size  # a Python int, so it cannot overflow
    if expected_bytes > MAX_IDX_PAYLOAD_BYTES:
        raise _invalid_idx(
            path,
            f"the header claims shape {dims}, {expected_bytes:,} bytes, "
            f"more than the {MAX_IDX_PAYLOAD_BYTES:,} this reader accepts",
        )

    payload = bytearray()  # grows with the bytes that really arrive
    while len(payload) < expected_bytes:
        chunk = file.read(min(READ_CHUNK_BYTES, expected_bytes - len(payload)))
        if not chunk:
            raise _invalid_idx(
                path,
                f"the payload is truncated: the header promises "
                f"{expected_bytes:,} bytes, the file holds {len(payload):,}",
            )
        payload += chunk
    if file.read(1):  # for gzip this also checks the CRC
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
        contents = gzip.compress(contents, mtime=0)  # mtime=0: same array, same bytes
    write_file_atomically(path, contents)


# ----------------------------------------------------------------------------------------
# Writing files atomically, reading .npy files without pickle
# ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def open_atomically(path):
    """Open path for writing bytes so that readers see either the old file or the whole new one.

    The bytes go to a temporary file in the same folder (created if needed); when the `with`
    block ends normally, that file is flushed to disk and renamed to path. If the block
    raises, the temporary file is deleted and path is left as it was.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary_path = tempfile.mkstemp(
        dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary_path, 0o644)  # mkstemp makes files private
        os.replace(temporary_path, path)
    except BaseException:
        if os.path.exists(temporary_path):
            os.remove(temporary_path)
        raise


def write_file_atomically(path: str, contents: bytes) -> None:
    """Write bytes to path so that readers see either the old file or the whole new one."""
    with open_atomically(path) as file:
        file.write(contents)


def write_npy_atomically(path: str, array: np.ndarray) -> None:
    """Save one array as a .npy file (never pickled), atomically like write_file_atomically."""
    with open_atomically(path) as file:
        np.save(file, array, allow_pickle=False)


def write_archive(path: str, arrays: dict, settings: dict) -> None:
    """Save named host arrays and a JSON-able settings dict as one .npz (never pickled: the
    settings are the bytes of their JSON text, an array named 'settings'), atomically."""
    arrays = dict(arrays)
    arrays["settings"] = np.frombuffer(json.dumps(settings).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_file_atomically(path, buffer.getvalue())


def read_archive(path: str):
    """(arrays, settings) of a .npz that write_archive wrote (settings None if it has none),
    loaded without pickle. Raises ValueError (or OSError) for a file that is not one."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    if "settings" not in arrays:
        return arrays, None
    return arrays, json.loads(arrays.pop("settings").tobytes().decode())


def array_digest(*arrays) -> str:
    """The SHA-256 (64 hex digits) of host arrays: each one's type and shape, then its bytes."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(array.data)
    return digest.hexdigest()


def fingerprint(dataset) -> dict:
    """What a run records of the data it read, so that a later step can prove it reads the
    same: for the training images and labels (after --train-images, before the validation
    split is drawn from them) and for the test set, their count and the SHA-256 of their
    types, shapes and bytes (array_digest), with the data's description. On the host, once a
    run (MNIST's 60,000 training images: about a tenth of a second)."""
    return {
        "description": dataset.description,
        "train": {
            "images": len(dataset.train_labels),
            "sha256": array_digest(dataset.train_images, dataset.train_labels),
        },
        "test": {
            "images": len(dataset.test_labels),
            "sha256": array_digest(dataset.test_images, dataset.test_labels),
        },
    }


def read_npy(path: str) -> np.ndarray:
    """Read one .npy array, never unpickling. Raises DataError naming the file if it is not a
    whole, valid .npy file of plain numbers. The file is memory-mapped first, so a header
    promising more bytes than the file holds fails at once instead of allocating them."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        if not isinstance(array, np.ndarray):  # a .npz archive: not what was written
            array.close()
            raise ValueError("it is a .npz archive, not one .npy array")
        return np.array(array)  # a copy in memory; the file is closed
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except (ValueError, OSError, EOFError) as error:
        raise DataError(f"{path} is not a valid .npy file ({_one_line(error)})") from None


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
    renamed to `destination`. A partial or wrong file is deleted, and when nothing could be
    downloaded, so are the folders made for it (a misspelt data folder is not left behind,
    empty). A checksum mismatch or an HTTP 4xx moves on to the next URL at once; other
    failures are retried after a pause.
    Raises DataError naming the failed URLs and where to place the file by hand.
    """
    destination = os.fspath(destination)
    folder = os.path.dirname(os.path.abspath(destination))
    created = _missing_folders(folder)  # removed again if nothing is downloaded into them
    os.makedirs(folder, exist_ok=True)
    part_path = destination + ".part"
    failures = []
    for url in urls:
        for attempt in range(1, retries + 1):
            notice(f"downloading {url}")
            try:
                downloaded_md5 = _stream_to_file(url, part_path)
            except (OSError, http.client.HTTPException, ValueError) as error:
                reason = _one_line(
                    error.reason if isinstance(error, urllib.error.URLError) else error
                )
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
    for empty in created:  # innermost first; a folder that holds anything stays
        try:
            os.rmdir(empty)
        except OSError:
            break
    raise DataError(
        f"could not download {os.path.basename(destination)}: {tried}; "
        f"download it by hand and place it at {destination}"
    )


def _missing_folders(folder: str) -> list:
    """The folders os.makedirs(folder) would create, innermost first."""
    missing = []
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        missing.append(folder)
        folder = os.path.dirname(folder)
    return missing


def _stream_to_file(url: str, part_path: str) -> str:
    """Copy a URL's bytes into part_path and return their md5; delete part_path on failure."""
    digest = hashlib.md5()
    try:
        with (
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response,
            open(part_path, "wb") as file,
        ):
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
# Safe extraction of .tar.gz and .zip archives
#
# An archive is data from outside: an entry named '../x' or '/etc/x', or a link, could write
# anywhere on the disk. Every entry is checked before a byte of it is written, and the whole
# archive lands in a temporary folder first, so a refused or damaged archive leaves nothing.
# ----------------------------------------------------------------------------------------

MAX_EXTRACTED_BYTES = 4 * 2**30  # an entry, or a whole archive, claiming more is refused
WINDOWS_DRIVE = re.compile(r"[A-Za-z]:")


def safe_extract(archive_path, target_folder, required_files=()) -> None:
    """Extract a .zip, .tar.gz, .tgz or .tar archive into target_folder, refusing anything unsafe.

    Refused with a DataError naming the archive and the entry: a name that would land outside
    target_folder (absolute, with a '..' component, with a Windows drive letter), a symbolic
    or hard link, a device or other special file, an encrypted entry, and an entry or archive
    claiming more than MAX_EXTRACTED_BYTES. Everything is extracted into a temporary folder
    inside target_folder; only when the whole archive succeeded is each top-level entry renamed
    into place, so a refused, damaged or interrupted extraction leaves no half-extracted tree.
    required_files: paths (relative to target_folder) the archive must provide. A damaged or
    truncated archive, or one whose top-level entries already exist, is a DataError naming it.
    """
    archive_path, target_folder = os.fspath(archive_path), os.fspath(target_folder)
    os.makedirs(target_folder, exist_ok=True)
    temporary_folder = tempfile.mkdtemp(dir=target_folder, prefix=".extracting-")
    try:
        if archive_path.endswith(".zip"):
            _extract_zip(archive_path, temporary_folder)
        else:
            _extract_tar(archive_path, temporary_folder)
        for relative_path in required_files:
            if not os.path.isfile(os.path.join(temporary_folder, relative_path)):
                raise DataError(
                    f"{archive_path} does not contain {relative_path}; it is not the expected "
                    f"archive or it is damaged: delete it so it is downloaded again"
                )
        top_level_names = sorted(os.listdir(temporary_folder))
        for name in top_level_names:
            if os.path.lexists(os.path.join(target_folder, name)):
                raise DataError(
                    f"{archive_path} holds {name}, but {os.path.join(target_folder, name)} "
                    f"already exists; delete it to extract the archive again"
                )
        for name in top_level_names:
            os.rename(os.path.join(temporary_folder, name), os.path.join(target_folder, name))
    except (
        tarfile.TarError,
        zipfile.BadZipFile,
        EOFError,
        zlib.error,
        OSError,
        NotImplementedError,
    ) as error:
        raise DataError(
            f"{archive_path} could not be extracted ({_one_line(error)}); if it is damaged, "
            f"delete it so it is downloaded again"
        ) from None
    finally:
        shutil.rmtree(temporary_folder, ignore_errors=True)


def _extract_tar(archive_path: str, folder: str) -> None:
    """Check and write every entry of a tar archive (compressed or not) into folder, in one pass."""
    total_bytes = 0
    with tarfile.open(archive_path, "r:*") as archive:
        for entry in archive:
            path = _entry_destination(archive_path, entry.name, folder)
            if entry.isdir():
                os.makedirs(path, exist_ok=True)
                continue
            if not entry.isfile():
                kind = (
                    "a symbolic link"
                    if entry.issym()
                    else "a hard link"
                    if entry.islnk()
                    else "a device or other special file"
                )
                raise _refused_entry(archive_path, entry.name, f"is {kind}")
            total_bytes = _count_entry_bytes(archive_path, entry.name, entry.size, total_bytes)
            with archive.extractfile(entry) as source:
                _copy_entry(source, path)


def _extract_zip(archive_path: str, folder: str) -> None:
    """Check and write every entry of a zip archive into folder."""
    total_bytes = 0
    with zipfile.ZipFile(archive_path) as archive:
        for entry in archive.infolist():
            path = _entry_destination(archive_path, entry.filename, folder)
            unix_mode = entry.external_attr >> 16  # file type and permissions, when made on Unix
            file_type = unix_mode & 0o170000
            if file_type not in (0, 0o100000, 0o040000):  # 0: not recorded; regular file; folder
                kind = (
                    "a symbolic link" if file_type == 0o120000 else "a device or other special file"
                )
                raise _refused_entry(archive_path, entry.filename, f"is {kind}")
            if entry.is_dir():
                os.makedirs(path, exist_ok=True)
                continue
            if entry.flag_bits & 0x1:
                raise _refused_entry(archive_path, entry.filename, "is encrypted")
            total_bytes = _count_entry_bytes(
                archive_path, entry.filename, entry.file_size, total_bytes
            )
            with archive.open(entry) as source:  # reads at most file_size bytes, checks the CRC
                _copy_entry(source, path)


def _entry_destination(archive_path: str, name: str, folder: str) -> str:
    """Where the entry called `name` goes: a path inside folder, or a DataError if it would
    not be."""
    if "\0" in name:
        raise _refused_entry(archive_path, name, "has a NUL byte in its name")
    if name.startswith(("/", "\\")) or WINDOWS_DRIVE.match(name):
        raise _refused_entry(archive_path, name, "has an absolute path")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise _refused_entry(archive_path, name, "would leave the target folder ('..')")
    path = os.path.join(folder, *[part for part in parts if part not in ("", ".")])
    real_folder = os.path.realpath(folder)
    real_path = os.path.realpath(path)
    if real_path != real_folder and not real_path.startswith(real_folder + os.sep):
        raise _refused_entry(archive_path, name, "would leave the target folder")
    return path


def _count_entry_bytes(archive_path: str, name: str, size: int, total_bytes: int) -> int:
    """total_bytes + size, or a DataError if the entry or the running total is absurdly large."""
    if not 0 <= size <= MAX_EXTRACTED_BYTES:
        raise _refused_entry(
            archive_path,
            name,
            f"claims {size:,} bytes, more than the {MAX_EXTRACTED_BYTES:,} this extractor accepts",
        )
    if total_bytes + size > MAX_EXTRACTED_BYTES:
        raise _refused_entry(
            archive_path, name, f"takes the archive past {MAX_EXTRACTED_BYTES:,} bytes"
        )
    return total_bytes + size


def _copy_entry(source, path: str) -> None:
    """Copy an open archive entry into a regular file at path (default permissions)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as file:
        shutil.copyfileobj(source, file, READ_CHUNK_BYTES)


def _refused_entry(archive_path: str, name: str, reason: str) -> DataError:
    """The DataError for an archive entry that is not extracted."""
    return DataError(
        f"{archive_path} holds the entry {name!r}, which {reason}; refusing to extract "
        f"it: delete the archive and get a good copy"
    )


def fetch_and_extract(
    folder: str, archive_name: str, url: str, md5: str, required_files, allow_download: bool, notice
) -> None:
    """Extract folder/archive_name into folder, downloading it from url first if it is missing
    (and downloading is allowed). An archive placed by hand whose md5 is not the official one
    is extracted with one notice line. The archive is kept (delete it by hand to save space)."""
    archive_path = os.path.join(folder, archive_name)
    if not os.path.exists(archive_path):
        if not allow_download:
            raise DataError(
                f"{archive_path} is missing; place the file there (it is at {url}) "
                f"or allow downloading"
            )
        download([url], archive_path, md5, notice=notice)
    elif file_md5(archive_path) != md5:
        notice(
            f"note: {archive_path} is not the official archive (its md5 differs); "
            "extracting it as is"
        )
    notice(f"extracting {archive_path}")
    safe_extract(archive_path, folder, required_files)


# ----------------------------------------------------------------------------------------
# The Dataset record and what every dataset shares
# ----------------------------------------------------------------------------------------


class Augmentation(NamedTuple):
    """What happens at random to a training image each time it is drawn: a left-right flip
    with probability 1/2 (if flip), then a move by dy, dx pixels, each uniform in
    [-max_shift, max_shift] (see random_flip_and_translate)."""

    flip: bool
    max_shift: int

    def describe(self):
        """For a log line: 'random flips, moves of up to 4 pixels'."""
        shift = self.max_shift
        return ", ".join(
            (["random flips"] if self.flip else [])
            + ([f"moves of up to {shift} pixel{'s' if shift != 1 else ''}"] if shift else [])
        )


# The authors' augmentation of each dataset's training images: none on MNIST (nor on
# Fashion-MNIST, which they did not use: none, as for MNIST).
AUTHORS_AUGMENTATION = {
    "mnist": None,
    "fashion-mnist": None,
    "cifar10": Augmentation(flip=True, max_shift=4),
    "tiny-imagenet": Augmentation(flip=True, max_shift=4),
}


@dataclass
class Dataset:
    """A dataset ready for training: uint8 NHWC images, int64 labels, and the statistics that
    standardise them: standardise(images, mean, std) = (images / 255 - mean) / std."""

    name: str  # 'mnist' | 'fashion-mnist' | 'cifar10' | 'tiny-imagenet'
    # uint8, (N, H, W, C): (Fashion-)MNIST (N, 28, 28, 1), CIFAR-10 (N, 32, 32, 3),
    # Tiny (N, 64, 64, 3)
    train_images: np.ndarray
    train_labels: np.ndarray  # int64, (N,)
    test_images: np.ndarray  # uint8, (M, H, W, C)
    test_labels: np.ndarray  # int64, (M,)
    num_classes: int  # 10, 10, 10, 200
    mean: np.ndarray  # float32, (C,): of the TRAINING pixels scaled to [0, 1]
    std: np.ndarray  # float32, (C,): likewise
    augment: Optional[Augmentation]  # the authors' augmentation of the training images (None: none)
    description: str  # e.g. "MNIST, 24,345 training images"


def find_or_download(
    folder: str, file_name: str, md5: str, mirrors, allow_download: bool, notice
) -> str:
    """The path of file_name in folder, or of its uncompressed form (the name without .gz).
    A missing file is downloaded from the mirrors (each a URL prefix ending in '/') if allowed."""
    compressed_path = os.path.join(folder, file_name)
    uncompressed_path = (
        compressed_path[: -len(".gz")] if compressed_path.endswith(".gz") else compressed_path
    )
    for path in (compressed_path, uncompressed_path):
        if os.path.exists(path):
            return path
    if not allow_download:
        raise DataError(
            f"{compressed_path} is missing; place the file there "
            f"(it is at {mirrors[0]}{file_name}) or allow downloading"
        )
    download([mirror + file_name for mirror in mirrors], compressed_path, md5, notice=notice)
    return compressed_path


def check_images_and_labels(
    images: np.ndarray,
    images_path: str,
    labels: np.ndarray,
    labels_path: str,
    image_shape: tuple,
    num_classes: int,
) -> None:
    """Raise DataError unless images is (N, *image_shape) and labels is (N,) in 0..num_classes-1."""
    advice = "delete it so it is downloaded again"
    if images.ndim != 1 + len(image_shape) or images.shape[1:] != image_shape:
        raise DataError(
            f"{images_path} holds an array of shape {images.shape}, not "
            f"(N, {', '.join(map(str, image_shape))}) images; {advice}"
        )
    if labels.ndim != 1:
        raise DataError(
            f"{labels_path} holds an array of shape {labels.shape}, not (N,) labels; {advice}"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images):,} images but {labels_path} holds "
            f"{len(labels):,} labels; delete both so they are downloaded again"
        )
    if len(images) == 0:
        raise DataError(f"{images_path} holds no images; {advice}")
    if labels.max() >= num_classes:
        raise DataError(
            f"{labels_path} holds label {labels.max()}, outside 0..{num_classes - 1}; {advice}"
        )


STATISTICS_CHUNK_IMAGES = (
    256  # images counted at a time by pixel_statistics (small: cache-friendly)
)


def pixel_statistics(images: np.ndarray, source: str) -> tuple:
    """Mean and standard deviation of each channel of uint8 images (N, H, W, C), with pixels
    scaled to [0, 1]: two float32 (C,) arrays. For one-channel MNIST this is the authors'
    single global mean and std.

    Pixels take only 256 values, so counting how often each value occurs in each channel
    (a chunk of images at a time) gives the statistics of every pixel in float64 without ever
    holding the whole set as floats (Tiny-ImageNet would need 10 GB). source names the images
    in the DataError raised when a channel holds one value only (its std would be 0).
    """
    channels = images.shape[-1]
    counts = np.zeros((channels, 256), dtype=np.int64)  # (C, 256)
    for start in range(0, len(images), STATISTICS_CHUNK_IMAGES):
        pixels = images[start : start + STATISTICS_CHUNK_IMAGES].reshape(
            -1, channels
        )  # (pixels, C)
        for channel in range(channels):
            counts[channel] += np.bincount(pixels[:, channel], minlength=256)
    constant = (counts > 0).sum(axis=1) == 1  # (C,) one value only
    if constant.any():
        channel = int(np.flatnonzero(constant)[0])
        raise DataError(
            f"every training pixel of {source} has the same value (in channel {channel}), "
            f"so the images cannot be standardised; check the training images"
        )
    values = np.arange(256, dtype=np.float64) / 255  # (256,) the pixel values in [0, 1]
    totals = counts.sum(axis=1)  # (C,)
    mean = counts @ values / totals  # (C,)
    variance = (counts * (values - mean[:, np.newaxis]) ** 2).sum(axis=1) / totals  # (C,)
    return mean.astype(np.float32), np.sqrt(variance).astype(np.float32)


def standardise(images, mean, std) -> np.ndarray:
    """uint8 images (..., C) -> float32 (images / 255 - mean) / std, with mean and std (C,)
    from the Dataset. For NumPy users and tests; the training code has its own device copy."""
    images = np.asarray(images)
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    return (images.astype(np.float32) / 255 - mean) / std


def read_dataset_idx(path: str) -> np.ndarray:
    """read_idx for a dataset file: a damaged file's error also says it can be re-downloaded."""
    try:
        return read_idx(path)
    except DataError as error:
        raise DataError(f"{error}, or delete it so it is downloaded again") from None


def read_text_lines(path: str, advice: str) -> list:
    """The lines of a UTF-8 text file; DataError naming it (and adding advice) if it cannot be
    read."""
    try:
        with open(path, "rb") as file:
            return file.read().decode("utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; {advice}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; {advice}") from None
    except OSError as error:
        raise DataError(f"{path} could not be read ({_one_line(error)}); {advice}") from None


# ----------------------------------------------------------------------------------------
# MNIST: 28x28 grey digits, 10 classes, four gzip-compressed IDX files
# Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 28x28 grey photographs of clothes, 10
# classes, 60,000 + 10,000 images in the same four files; a full-size drop-in for MNIST
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
FASHION_MNIST_MIRRORS = [
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",  # the checksums guard it
]
FASHION_MNIST_FILES = {  # the same names as MNIST's
    "train_images": ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
}

OFFICIAL_COUNTS = {"train": 60_000, "test": 10_000}  # MNIST's and Fashion-MNIST's alike


def load_mnist(folder: str, allow_download: bool, notice) -> Dataset:
    """Load MNIST from folder, downloading missing files if allowed (see load_idx_dataset)."""
    return load_idx_dataset(
        "mnist", "MNIST", MNIST_FILES, MNIST_MIRRORS, folder, allow_download, notice
    )


def load_fashion_mnist(folder: str, allow_download: bool, notice) -> Dataset:
    """Load Fashion-MNIST from folder, downloading missing files if allowed (see
    load_idx_dataset)."""
    return load_idx_dataset(
        "fashion-mnist",
        "Fashion-MNIST",
        FASHION_MNIST_FILES,
        FASHION_MNIST_MIRRORS,
        folder,
        allow_download,
        notice,
    )


def load_idx_dataset(
    name: str, title: str, files: dict, mirrors, folder: str, allow_download: bool, notice
) -> Dataset:
    """Load a dataset of 28x28 grey images in MNIST's four IDX files (files: role -> (file
    name, official md5)), downloading missing files from the mirrors if allowed.

    A .gz file whose md5 is not the official one is used if it is a valid IDX file, with
    one notice line. Uncompressed files cannot be compared with the official checksums
    (those are of the .gz files), so they are validated but get no notice. The images have
    one channel, so mean and std are single global statistics (the authors' for MNIST),
    shape (1,), of this dataset's own training pixels.
    """
    arrays, paths, notices = {}, {}, []
    for role, (file_name, official_md5) in files.items():
        path = find_or_download(folder, file_name, official_md5, mirrors, allow_download, notice)
        arrays[role] = read_dataset_idx(path)
        paths[role] = path
        if path.endswith(".gz") and file_md5(path) != official_md5:
            noun = "images" if role.endswith("images") else "labels"
            count = len(arrays[role])
            if count == OFFICIAL_COUNTS[role.split("_")[0]]:  # the same data, compressed anew?
                notices.append(
                    f"note: {path} is a valid IDX file with the official number of {noun} "
                    f"({count:,}) but not byte for byte the official {title} file (compressed "
                    f"anew?); using it as is"
                )
            else:
                notices.append(
                    f"note: {path} is a valid IDX file but not the official {title} file "
                    f"({count:,} {noun}); using it as is"
                )
    for split in ("train", "test"):
        check_images_and_labels(
            arrays[f"{split}_images"],
            paths[f"{split}_images"],
            arrays[f"{split}_labels"],
            paths[f"{split}_labels"],
            image_shape=(28, 28),
            num_classes=10,
        )
    for line in notices:
        notice(line)

    train_images = arrays["train_images"][..., np.newaxis]  # (N, 28, 28, 1) uint8
    test_images = arrays["test_images"][..., np.newaxis]  # (M, 28, 28, 1) uint8
    mean, std = pixel_statistics(train_images, source=paths["train_images"])  # (1,), (1,)
    return Dataset(
        name=name,
        train_images=train_images,
        train_labels=arrays["train_labels"].astype(np.int64),
        test_images=test_images,
        test_labels=arrays["test_labels"].astype(np.int64),
        num_classes=10,
        mean=mean,
        std=std,
        augment=AUTHORS_AUGMENTATION[name],
        description=f"{title}, {len(train_images):,} training images",
    )


# ----------------------------------------------------------------------------------------
# CIFAR-10: 32x32 colour photographs, 10 classes, from the official binary archive
#
# The archive extracts to cifar-10-batches-bin/: data_batch_1.bin ... data_batch_5.bin
# (training, 10,000 images each) and test_batch.bin. Every file is a run of 3,073-byte
# records: one label byte (0..9), then 1,024 red, 1,024 green and 1,024 blue bytes, each
# plane a 32x32 image in row-major order.
# ----------------------------------------------------------------------------------------

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-bin"
CIFAR10_TRAIN_FILES = [f"data_batch_{number}.bin" for number in range(1, 6)]
CIFAR10_TEST_FILE = "test_batch.bin"
CIFAR10_RECORD_BYTES = 1 + 3 * 32 * 32  # 3,073: the label byte, then the three colour planes
CIFAR10_IMAGES_PER_FILE = 10_000  # in each official file


def read_cifar_batch(path: str) -> tuple:
    """Parse one CIFAR-10 binary batch file: (images uint8 (n, 32, 32, 3), labels int64 (n,)).
    Raises DataError naming the file if it is missing, not whole records, or has a label
    outside 0..9."""
    advice = f"delete the folder {os.path.dirname(path)} so it is extracted again"
    try:
        with open(path, "rb") as file:
            contents = file.read()
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; {advice}") from None
    except OSError as error:
        raise DataError(f"{path} could not be read ({_one_line(error)}); {advice}") from None
    if len(contents) == 0 or len(contents) % CIFAR10_RECORD_BYTES != 0:
        raise DataError(
            f"{path} holds {len(contents):,} bytes, not a positive multiple of the "
            f"{CIFAR10_RECORD_BYTES:,}-byte CIFAR-10 record; {advice}"
        )
    records = np.frombuffer(contents, dtype=np.uint8).reshape(-1, CIFAR10_RECORD_BYTES)  # (n, 3073)
    labels = records[:, 0].astype(np.int64)  # (n,)
    if labels.max() > 9:
        record = int(np.flatnonzero(labels > 9)[0])
        raise DataError(
            f"{path} holds label {labels[record]} in record {record:,}, outside 0..9; {advice}"
        )
    planes = records[:, 1:].reshape(-1, 3, 32, 32)  # (n, C, H, W): red, green, blue planes
    images = np.ascontiguousarray(planes.transpose(0, 2, 3, 1))  # (n, H, W, C)
    return images, labels


def write_cifar_batches(folder, train_images, train_labels, test_images, test_labels) -> None:
    """Write a dataset as the six official CIFAR-10 binary files in folder/cifar-10-batches-bin/.

    train_images: uint8 (N, 32, 32, 3) with N >= 5, split as evenly as possible over
    data_batch_1.bin ... data_batch_5.bin; test_images: uint8 (M, 32, 32, 3), M >= 1, in
    test_batch.bin; labels: integers 0..9, (N,) and (M,). Each file is written atomically.
    """
    batches_folder = os.path.join(os.fspath(folder), CIFAR10_FOLDER)
    train = _cifar_records(train_images, train_labels, "training")  # (N, 3073)
    test = _cifar_records(test_images, test_labels, "test")  # (M, 3073)
    if len(train) < len(CIFAR10_TRAIN_FILES):
        raise ValueError(
            f"write_cifar_batches needs at least {len(CIFAR10_TRAIN_FILES)} training "
            f"images (one per data_batch file), got {len(train)}"
        )
    for file_name, records in zip(
        CIFAR10_TRAIN_FILES, np.array_split(train, len(CIFAR10_TRAIN_FILES))
    ):
        write_file_atomically(os.path.join(batches_folder, file_name), records.tobytes())
    write_file_atomically(os.path.join(batches_folder, CIFAR10_TEST_FILE), test.tobytes())


def _cifar_records(images, labels, split: str) -> np.ndarray:
    """uint8 images (n, 32, 32, 3) and labels (n,) -> uint8 records (n, 3073) in the file layout."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(
            f"{split} images must be uint8 (n, 32, 32, 3), got {images.dtype} {images.shape}"
        )
    if labels.shape != (len(images),) or labels.dtype.kind not in "iu":
        raise ValueError(
            f"{split} labels must be integers of shape ({len(images)},), "
            f"got {labels.dtype} {labels.shape}"
        )
    if len(images) == 0 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{split} labels must be in 0..9, and there must be at least one image")
    planes = images.transpose(0, 3, 1, 2).reshape(
        len(images), 3 * 32 * 32
    )  # (n, 3072): R, G, B planes
    return np.concatenate([labels.astype(np.uint8)[:, np.newaxis], planes], axis=1)


def load_cifar10(folder: str, allow_download: bool, notice) -> Dataset:
    """Load CIFAR-10 from folder/cifar-10-batches-bin/, or else extract it from
    folder/cifar-10-binary.tar.gz, or else download that archive first (if allowed).

    Valid files that are not the official size (10,000 images) are used with one notice
    line each, so small stand-ins load. mean and std are per channel, as the authors' are.
    """
    batches_folder = os.path.join(folder, CIFAR10_FOLDER)
    file_names = CIFAR10_TRAIN_FILES + [CIFAR10_TEST_FILE]
    if not os.path.isdir(batches_folder):
        required_files = [os.path.join(CIFAR10_FOLDER, name) for name in file_names]
        fetch_and_extract(
            folder,
            CIFAR10_ARCHIVE,
            CIFAR10_URL,
            CIFAR10_MD5,
            required_files,
            allow_download,
            notice,
        )
    batches = [read_cifar_batch(os.path.join(batches_folder, name)) for name in file_names]
    for name, (images, _) in zip(file_names, batches):
        if len(images) != CIFAR10_IMAGES_PER_FILE:
            notice(
                f"note: {os.path.join(batches_folder, name)} is a valid CIFAR-10 batch but not an "
                f"official one ({len(images):,} images, not {CIFAR10_IMAGES_PER_FILE:,}); "
                "using it as is"
            )

    train_images = np.concatenate([images for images, _ in batches[:-1]])  # (N, 32, 32, 3)
    train_labels = np.concatenate([labels for _, labels in batches[:-1]])  # (N,)
    test_images, test_labels = batches[-1]  # (M, 32, 32, 3), (M,)
    mean, std = pixel_statistics(train_images, source=batches_folder)  # (3,), (3,)
    return Dataset(
        name="cifar10",
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        num_classes=10,
        mean=mean,
        std=std,
        augment=AUTHORS_AUGMENTATION["cifar10"],
        description=f"CIFAR-10, {len(train_images):,} training images",
    )


# ----------------------------------------------------------------------------------------
# Tiny-ImageNet: 64x64 colour photographs, 200 classes, from the official zip
#
# The zip extracts to tiny-imagenet-200/:
#   wnids.txt                            the 200 class ids (WordNet ids), one per line
#   train/<wnid>/images/<wnid>_<k>.JPEG  500 training images per class
#   val/images/val_<k>.JPEG              10,000 validation images: our test set
#   val/val_annotations.txt              per line, tab-separated: file name, wnid, 4 box numbers
#   test/                                images without labels: ignored
# Class index = position of the wnid in wnids.txt sorted alphabetically. Decoding 110,000
# JPEGs (with Pillow, an optional dependency) is slow, so the decoded arrays are cached once
# as decoded-*.npy files beside the archive; delete them to decode again.
# ----------------------------------------------------------------------------------------

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
TINY_IMAGENET_ARCHIVE = "tiny-imagenet-200.zip"
TINY_IMAGENET_FOLDER = "tiny-imagenet-200"
TINY_IMAGENET_CLASSES = 200
TINY_IMAGENET_TRAIN_COUNT = 100_000
TINY_IMAGENET_TEST_COUNT = 10_000  # the official validation set
TINY_IMAGENET_IMAGE_SHAPE = (64, 64, 3)
TINY_IMAGENET_CACHE_FILES = {  # role -> file name in the tiny-imagenet folder
    "train_images": "decoded-train-images.npy",  # uint8 (N, 64, 64, 3)
    "train_labels": "decoded-train-labels.npy",  # int64 (N,)
    "test_images": "decoded-test-images.npy",  # uint8 (M, 64, 64, 3)
    "test_labels": "decoded-test-labels.npy",  # int64 (M,)
}
WNID = re.compile(r"[A-Za-z0-9_-]+")  # a class id; it names a folder, so nothing else is allowed


def import_pillow():
    """Pillow's Image module, imported only when JPEG files must be decoded."""
    try:
        from PIL import Image
    except ImportError:
        raise DataError(
            "Tiny-ImageNet needs Pillow to decode its JPEG files: pip install pillow"
        ) from None
    return Image


def read_wnids(path: str) -> list:
    """The class ids in wnids.txt (one per line, blank lines ignored), sorted: a class's index
    is its position in this list. DataError naming the file for a bad, repeated or extra id."""
    advice = "delete the extracted folder so the archive is extracted again"
    wnids = []
    for number, line in enumerate(read_text_lines(path, advice), start=1):
        wnid = line.strip()
        if not wnid:
            continue
        if not WNID.fullmatch(wnid):
            raise DataError(
                f"{path} line {number}: {wnid!r} is not a class id (letters, digits, '_', '-'); "
                f"{advice}"
            )
        if wnid in wnids:
            raise DataError(f"{path} line {number}: the class id {wnid} appears twice; {advice}")
        wnids.append(wnid)
    if not wnids:
        raise DataError(f"{path} holds no class ids; {advice}")
    if len(wnids) > TINY_IMAGENET_CLASSES:
        raise DataError(
            f"{path} holds {len(wnids)} class ids, more than Tiny-ImageNet's "
            f"{TINY_IMAGENET_CLASSES}; {advice}"
        )
    return sorted(wnids)


def read_val_annotations(path: str, class_index: dict) -> tuple:
    """Parse val_annotations.txt: (file names, labels int64 (M,)) in the file's order.
    Each line: file name, wnid, and four integer box coordinates, separated by tabs.
    DataError naming the file and line for a line that does not parse or an unknown wnid."""
    advice = "delete the extracted folder so the archive is extracted again"
    file_names, labels, seen = [], [], set()
    for number, line in enumerate(read_text_lines(path, advice), start=1):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split("\t")]
        where = f"{path} line {number}"
        if len(fields) != 6:
            raise DataError(
                f"{where} has {len(fields)} tab-separated fields, not 6 "
                f"(file name, class id, 4 box numbers); {advice}"
            )
        file_name, wnid, box = fields[0], fields[1], fields[2:]
        if (
            file_name != os.path.basename(file_name)
            or "\\" in file_name
            or not file_name.endswith(".JPEG")
            or file_name.startswith(".")
        ):
            raise DataError(
                f"{where}: {file_name!r} is not the name of a .JPEG file in val/images; {advice}"
            )
        if not all(re.fullmatch(r"-?[0-9]+", number_text) for number_text in box):
            raise DataError(f"{where}: the box {' '.join(box)!r} is not four integers; {advice}")
        if wnid not in class_index:
            raise DataError(
                f"{where} names the class {wnid!r}, which is not in wnids.txt; {advice}"
            )
        if file_name in seen:
            raise DataError(f"{where}: {file_name} appears twice; {advice}")
        seen.add(file_name)
        file_names.append(file_name)
        labels.append(class_index[wnid])
    if not file_names:
        raise DataError(f"{path} lists no validation images; {advice}")
    return file_names, np.array(labels, dtype=np.int64)


def decode_jpeg(path: str, image_module) -> np.ndarray:
    """One 64x64 JPEG file -> uint8 (64, 64, 3) RGB (greyscale and CMYK images are converted).
    image_module is Pillow's Image. DataError naming the file if it is unreadable or another
    size."""
    advice = "delete the extracted folder so the archive is extracted again"
    height, width, _ = TINY_IMAGENET_IMAGE_SHAPE
    try:
        with image_module.open(path, formats=["JPEG"]) as image:  # only Pillow's JPEG decoder
            if image.size != (width, height):  # known from the header alone
                raise DataError(
                    f"{path} is {image.size[0]}x{image.size[1]} pixels, not "
                    f"{width}x{height}; {advice}"
                )
            return np.asarray(image.convert("RGB"), dtype=np.uint8)  # (64, 64, 3)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; {advice}") from None
    except (OSError, ValueError, SyntaxError, image_module.DecompressionBombError) as error:
        raise DataError(
            f"{path} is not a readable JPEG image ({_one_line(error)}); {advice}"
        ) from None


def decode_tiny_imagenet(extracted_folder: str, image_module, notice) -> dict:
    """Decode the extracted tiny-imagenet-200/ folder into the arrays of
    TINY_IMAGENET_CACHE_FILES."""
    wnids = read_wnids(os.path.join(extracted_folder, "wnids.txt"))
    class_index = {wnid: index for index, wnid in enumerate(wnids)}
    train_paths, train_labels = [], []
    for index, wnid in enumerate(wnids):
        images_folder = os.path.join(extracted_folder, "train", wnid, "images")
        try:
            names = sorted(name for name in os.listdir(images_folder) if name.endswith(".JPEG"))
        except OSError as error:
            raise DataError(
                f"{images_folder} could not be listed ({_one_line(error)}); delete the "
                f"extracted folder so the archive is extracted again"
            ) from None
        if not names:
            raise DataError(
                f"{images_folder} holds no .JPEG files; delete the extracted folder "
                f"so the archive is extracted again"
            )
        train_paths += [os.path.join(images_folder, name) for name in names]
        train_labels += [index] * len(names)
    test_names, test_labels = read_val_annotations(
        os.path.join(extracted_folder, "val", "val_annotations.txt"), class_index
    )
    test_paths = [os.path.join(extracted_folder, "val", "images", name) for name in test_names]

    notice(
        f"decoding {len(train_paths) + len(test_paths):,} Tiny-ImageNet JPEG files once; the "
        f"arrays are cached as {os.path.join(os.path.dirname(extracted_folder), 'decoded-*.npy')}"
    )
    arrays = {
        "train_images": np.empty((len(train_paths), *TINY_IMAGENET_IMAGE_SHAPE), dtype=np.uint8),
        "train_labels": np.array(train_labels, dtype=np.int64),
        "test_images": np.empty((len(test_paths), *TINY_IMAGENET_IMAGE_SHAPE), dtype=np.uint8),
        "test_labels": test_labels,
    }
    for split, paths in (("train", train_paths), ("test", test_paths)):
        for position, path in enumerate(paths):
            arrays[f"{split}_images"][position] = decode_jpeg(path, image_module)
    return arrays


def read_decoded_cache(folder: str, notice):
    """The cached arrays of TINY_IMAGENET_CACHE_FILES, or None if some are missing. A damaged
    or inconsistent cache is deleted, with one notice line, and None returned (decode again)."""
    paths = {role: os.path.join(folder, name) for role, name in TINY_IMAGENET_CACHE_FILES.items()}
    if not all(os.path.exists(path) for path in paths.values()):
        return None
    try:
        arrays = {role: read_npy(path) for role, path in paths.items()}
        for split in ("train", "test"):
            images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
            images_path, labels_path = paths[f"{split}_images"], paths[f"{split}_labels"]
            if (
                images.dtype != np.uint8
                or images.ndim != 4
                or images.shape[1:] != TINY_IMAGENET_IMAGE_SHAPE
            ):
                raise DataError(
                    f"{images_path} holds {images.dtype} {images.shape}, not uint8 (N, 64, 64, 3)"
                )
            if labels.dtype != np.int64 or labels.shape != (len(images),) or len(images) == 0:
                raise DataError(
                    f"{labels_path} holds {labels.dtype} {labels.shape}, not int64 "
                    f"({len(images)},) labels to match {images_path}"
                )
            if labels.min() < 0 or labels.max() >= TINY_IMAGENET_CLASSES:
                raise DataError(
                    f"{labels_path} holds labels outside 0..{TINY_IMAGENET_CLASSES - 1}"
                )
    except DataError as error:
        notice(
            f"note: the decoded cache is damaged ({error}); deleting it and decoding the JPEG "
            "files again"
        )
        for path in paths.values():
            if os.path.exists(path):
                os.remove(path)
        return None
    return arrays


def load_tiny_imagenet(folder: str, allow_download: bool, notice) -> Dataset:
    """Load Tiny-ImageNet: from the decoded-*.npy cache in folder if present, else by decoding
    folder/tiny-imagenet-200/ (extracted first from folder/tiny-imagenet-200.zip, downloaded
    first if missing and allowed) and writing the cache. The validation set is the test set.

    num_classes is always 200; a smaller set (fewer classes or images) is used with one
    notice line. mean and std are per channel, as for CIFAR-10.
    """
    arrays = read_decoded_cache(folder, notice)
    if arrays is None:
        image_module = import_pillow()  # before any download: without it nothing can be decoded
        extracted_folder = os.path.join(folder, TINY_IMAGENET_FOLDER)
        if not os.path.isdir(extracted_folder):
            required_files = [
                os.path.join(TINY_IMAGENET_FOLDER, "wnids.txt"),
                os.path.join(TINY_IMAGENET_FOLDER, "val", "val_annotations.txt"),
            ]
            fetch_and_extract(
                folder,
                TINY_IMAGENET_ARCHIVE,
                TINY_IMAGENET_URL,
                TINY_IMAGENET_MD5,
                required_files,
                allow_download,
                notice,
            )
        arrays = decode_tiny_imagenet(extracted_folder, image_module, notice)
        for role, file_name in TINY_IMAGENET_CACHE_FILES.items():
            write_npy_atomically(os.path.join(folder, file_name), arrays[role])

    train_count, test_count = len(arrays["train_images"]), len(arrays["test_images"])
    if (train_count, test_count) != (TINY_IMAGENET_TRAIN_COUNT, TINY_IMAGENET_TEST_COUNT):
        notice(
            f"note: {folder} holds {train_count:,} training and {test_count:,} validation images, "
            f"not the official {TINY_IMAGENET_TRAIN_COUNT:,} and {TINY_IMAGENET_TEST_COUNT:,}; "
            "using them as is"
        )
    mean, std = pixel_statistics(arrays["train_images"], source=folder)  # (3,), (3,)
    return Dataset(
        name="tiny-imagenet",
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"],
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"],
        num_classes=TINY_IMAGENET_CLASSES,
        mean=mean,
        std=std,
        augment=AUTHORS_AUGMENTATION["tiny-imagenet"],
        description=f"Tiny-ImageNet, {train_count:,} training images",
    )


# ----------------------------------------------------------------------------------------
# Augmentation: the authors' random horizontal flips and translations
#
# On CIFAR-10 and Tiny-ImageNet each training image is flipped left-right with probability
# 1/2 and moved by dy, dx pixels, each uniform in [-4, 4], the uncovered border filled with
# zeros. The images are already standardised, so zero is the mean colour, as in the authors'
# code. The paper does not augment MNIST; `snip_min.py --translate` can, with moves only
# (a mirrored digit is another digit, or none). The random numbers are drawn on the host,
# a whole epoch's at once (draw_moves), and copied to wherever the pixels are (NumPy or
# CuPy) once per epoch, so that a training step never waits for the host.
# ----------------------------------------------------------------------------------------


def array_module(array):
    """The array library `array` belongs to: cupy for a CuPy array, else numpy. CuPy is optional."""
    if isinstance(array, np.ndarray):
        return np
    try:
        import cupy
    except ImportError:
        return np
    return cupy.get_array_module(array)


def draw_moves(rng, count, max_shift=4, flip=True):
    """The random part of `count` augmentations, drawn on the host: a (3, count) int array of
    flips (1: flip left-right, probability 1/2 if flip, else never), dy and dx, each uniform
    in [-max_shift, max_shift]."""
    flips = (rng.random(count) < 0.5) if flip else np.zeros(count, dtype=bool)  # (count,)
    shifts_y = rng.integers(-max_shift, max_shift + 1, size=count)  # (count,)
    shifts_x = rng.integers(-max_shift, max_shift + 1, size=count)  # (count,)
    return np.stack([flips, shifts_y, shifts_x]).astype(np.int64)  # (3, count)


def random_flip_and_translate(images, rng, max_shift=4, flip=True):
    """Flip each image left-right with probability 1/2 (unless flip is False: digits are
    not mirror-symmetric), then move it by a random dy, dx in [-max_shift, max_shift],
    zeros entering at the border (see flip_and_translate).

    images: float (N, H, W, C), already standardised, NumPy or CuPy. rng: a numpy.random.Generator
    (draws on the host). Returns a new array of the same shape, dtype and library.
    """
    flips, shifts_y, shifts_x = draw_moves(rng, len(images), max_shift, flip)
    return flip_and_translate(images, flips, shifts_y, shifts_x, max_shift)


def flip_and_translate(images, flips, shifts_y, shifts_x, max_shift=None):
    """Flip image i left-right where flips[i], then move its content down by shifts_y[i] and
    right by shifts_x[i] pixels (negative: up, left), filling the uncovered border with zeros:

        output[i, y, x] = flipped[i, y - shifts_y[i], x - shifts_x[i]], 0 where that is outside.

    images: (N, H, W, C), NumPy or CuPy; flips, shifts_y, shifts_x: (N,) arrays, on the host
    or already in the images' library. max_shift: a bound on |shift| (default: read from the
    shifts, which must then be on the host). Returns a new array of the same shape, dtype and
    library. No loop over images: the images are padded with zeros once, then every output
    pixel is gathered by one fancy index, computed where the images are.
    """
    xp = array_module(images)
    count, height, width, _ = images.shape
    if max_shift is None:
        max_shift = int(max(np.abs(shifts_y).max(initial=0), np.abs(shifts_x).max(initial=0)))
    flips = xp.asarray(flips).astype(bool)  # (N,)
    shifts_y, shifts_x = xp.asarray(shifts_y), xp.asarray(shifts_x)  # (N,), (N,)
    pad = max_shift
    padded = xp.pad(
        images, ((0, 0), (pad, pad), (pad, pad), (0, 0))
    )  # (N, H + 2 pad, W + 2 pad, C), zero border

    # Output row y reads source row y - dy; output column x reads column x - dx of the flipped
    # image, which is column W - 1 - (x - dx) of the original. The padding adds pad to both.
    rows = xp.arange(height)[None, :] - shifts_y[:, None] + pad  # (N, H)
    columns = xp.arange(width)[None, :] - shifts_x[:, None]  # (N, W) in the flipped image
    columns = xp.where(flips[:, None], width - 1 - columns, columns) + pad  # (N, W) in padded
    image_index = xp.arange(count)[:, None, None]  # (N, 1, 1)
    return padded[image_index, rows[:, :, None], columns[:, None, :]]  # (N, H, W, C)


# ----------------------------------------------------------------------------------------
# load_dataset: one entry per dataset
# ----------------------------------------------------------------------------------------

LOADERS = {  # name -> load_<name>(folder, allow_download, notice)
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "tiny-imagenet": load_tiny_imagenet,
}


def load_dataset(name, data_dir=None, download=True, notice=print_to_stderr) -> Dataset:
    """Load a dataset by name from `<data_dir>/<name>/` (data_dir None: default_data_dir()).
    download: whether missing files may be fetched. notice: called with each one-line note."""
    if name not in LOADERS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(LOADERS))}")
    if data_dir is not None and not os.fspath(data_dir).strip():
        raise DataError(
            f"the data folder's name is empty ({os.fspath(data_dir)!r}), which would mean the "
            f"current folder: name the folder, or leave it out for {default_data_dir()}"
        )
    data_dir = (
        os.path.expanduser(os.fspath(data_dir)) if data_dir is not None else default_data_dir()
    )
    return LOADERS[name](os.path.join(data_dir, name), download, notice)


def first_training_images(dataset: Dataset, count: int) -> Dataset:
    """`dataset` with only its first `count` training images (the test set whole), as
    snip_min.py's --train-images keeps them: the mean and standard deviation become those of
    the images kept, and the description says how many of how many, e.g. "Fashion-MNIST, the
    first 24,345 of 60,000 training images". The validation split is drawn from these."""
    total = len(dataset.train_images)
    if count > total:
        raise DataError(f"--train-images {count:,}: {dataset.description} has only {total:,}")
    if count == total:
        return dataset
    images = dataset.train_images[:count]
    mean, std = pixel_statistics(images, source=f"the first {count:,} training images")
    whole, kept = f"{total:,} training images", f"the first {count:,} of {total:,} training images"
    description = (
        dataset.description.replace(whole, kept)
        if whole in dataset.description
        else f"{dataset.description} ({kept})"
    )  # a description of another form
    return replace(
        dataset,
        train_images=images,
        train_labels=dataset.train_labels[:count],
        mean=mean,
        std=std,
        description=description,
    )


# ----------------------------------------------------------------------------------------
# Synthetic datasets: small, learnable stand-ins in the official formats, for running offline
#
# Class k is a bright 7x7 square on grey noise. Its colour is SYNTHETIC_COLOURS[k % 8] (one
# grey level for MNIST) and its position is square number k // 8 (k for MNIST) on a grid of
# squares laid over the image, so every class looks different and a small network learns them.
# ----------------------------------------------------------------------------------------

SYNTHETIC_COLOURS = np.array(
    [
        [250, 40, 40],
        [40, 250, 40],
        [40, 40, 250],
        [250, 250, 40],
        [250, 40, 250],
        [40, 250, 250],
        [250, 250, 250],
        [250, 140, 40],
    ]
)
SYNTHETIC_SQUARE = 7  # side of the class square, in pixels
SYNTHETIC_DEFAULT_COUNTS = {
    "mnist": (500, 100),
    "fashion-mnist": (500, 100),
    "cifar10": (500, 100),
    "tiny-imagenet": (2_000, 400),
}
EXAMPLE_MODEL = {
    "mnist": "lenet5",
    "fashion-mnist": "lenet5",
    "cifar10": "vgg-d",
    "tiny-imagenet": "vgg-d",
}  # for the printed command


def synthetic_images(labels: np.ndarray, size: int, channels: int, rng) -> np.ndarray:
    """Learnable uint8 images (N, size, size, channels) for labels (N,): see the banner above."""
    colours = SYNTHETIC_COLOURS if channels == 3 else np.array([[250]])  # (colours, C)
    squares_per_row = size // SYNTHETIC_SQUARE  # 4 for MNIST and CIFAR-10, 9 for Tiny-ImageNet
    images = np.full((len(labels), size, size, channels), 60, dtype=np.int16)  # (N, H, W, C) grey
    for k in np.unique(labels):
        square = k // len(colours)
        if square >= squares_per_row**2:
            raise ValueError(
                f"a {size}x{size} image has room for {squares_per_row**2 * len(colours)} "
                f"classes, not {k + 1}"
            )
        top = SYNTHETIC_SQUARE * (square // squares_per_row)
        left = SYNTHETIC_SQUARE * (square % squares_per_row)
        images[labels == k, top : top + SYNTHETIC_SQUARE, left : left + SYNTHETIC_SQUARE] = colours[
            k % len(colours)
        ]
    images += rng.integers(-40, 41, size=images.shape, dtype=np.int16)  # noise on every pixel
    return np.clip(images, 0, 255).astype(np.uint8)


def synthetic_labels(count: int, num_classes: int, rng) -> np.ndarray:
    """count labels, every class equally often (up to one), in random order: int64 (count,)."""
    labels = np.arange(count) % num_classes
    rng.shuffle(labels)
    return labels


def write_synthetic_mnist(folder: str, train_count: int, test_count: int, rng) -> None:
    """The four MNIST IDX .gz files, 28x28 grey images, in folder (Fashion-MNIST's too: the
    same names and format)."""
    for prefix, count in (("train", train_count), ("t10k", test_count)):
        labels = synthetic_labels(count, 10, rng)
        images = synthetic_images(labels, 28, 1, rng)[..., 0]  # (count, 28, 28)
        write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"), images)
        write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz"), labels.astype(np.uint8))


def write_synthetic_cifar10(folder: str, train_count: int, test_count: int, rng) -> None:
    """The six CIFAR-10 binary batch files in folder/cifar-10-batches-bin/."""
    train_labels = synthetic_labels(train_count, 10, rng)
    test_labels = synthetic_labels(test_count, 10, rng)
    write_cifar_batches(
        folder,
        synthetic_images(train_labels, 32, 3, rng),
        train_labels,
        synthetic_images(test_labels, 32, 3, rng),
        test_labels,
    )


def write_synthetic_tiny_imagenet(folder: str, train_count: int, test_count: int, rng) -> None:
    """folder/tiny-imagenet-200/ in the official layout, with real 64x64 JPEG files (Pillow),
    200 classes with wnids n00000000 ... n00000199. Written in a temporary folder, then
    renamed into place, so an interrupted run leaves no half-written tree."""
    image_module = import_pillow()
    wnids = [f"n{k:08d}" for k in range(TINY_IMAGENET_CLASSES)]
    os.makedirs(folder, exist_ok=True)
    temporary_folder = tempfile.mkdtemp(dir=folder, prefix=".writing-")
    try:
        root = os.path.join(temporary_folder, TINY_IMAGENET_FOLDER)
        os.makedirs(os.path.join(root, "val", "images"))
        for wnid in wnids:
            os.makedirs(os.path.join(root, "train", wnid, "images"))
        with open(os.path.join(root, "wnids.txt"), "w") as file:
            file.write("".join(f"{wnid}\n" for wnid in wnids))
        train_labels = synthetic_labels(train_count, TINY_IMAGENET_CLASSES, rng)
        for number, (label, image) in enumerate(
            zip(train_labels, synthetic_images(train_labels, 64, 3, rng))
        ):
            image_module.fromarray(image).save(
                os.path.join(
                    root, "train", wnids[label], "images", f"{wnids[label]}_{number}.JPEG"
                ),
                format="JPEG",
                quality=90,
            )
        test_labels = synthetic_labels(test_count, TINY_IMAGENET_CLASSES, rng)
        annotations = []
        for number, (label, image) in enumerate(
            zip(test_labels, synthetic_images(test_labels, 64, 3, rng))
        ):
            image_module.fromarray(image).save(
                os.path.join(root, "val", "images", f"val_{number}.JPEG"), format="JPEG", quality=90
            )
            annotations.append(f"val_{number}.JPEG\t{wnids[label]}\t0\t0\t63\t63\n")
        with open(os.path.join(root, "val", "val_annotations.txt"), "w") as file:
            file.write("".join(annotations))
        os.rename(root, os.path.join(folder, TINY_IMAGENET_FOLDER))
    finally:
        shutil.rmtree(temporary_folder, ignore_errors=True)


SYNTHETIC_WRITERS = {
    "mnist": write_synthetic_mnist,
    "fashion-mnist": write_synthetic_mnist,
    "cifar10": write_synthetic_cifar10,
    "tiny-imagenet": write_synthetic_tiny_imagenet,
}
SYNTHETIC_MINIMUM_TRAIN = {
    "mnist": 1,
    "fashion-mnist": 1,
    "cifar10": len(CIFAR10_TRAIN_FILES),
    "tiny-imagenet": TINY_IMAGENET_CLASSES,
}


def write_synthetic_dataset(
    name: str, data_dir, train_count: int, test_count: int, seed: int = 0
) -> str:
    """Write a small learnable dataset `name` into data_dir/<name>/ in its official format, so
    load_dataset(name, data_dir) reads it. Returns that folder. Refuses (DataError) to touch a
    folder that already exists, so it never mixes with, or overwrites, real data."""
    folder = os.path.join(os.path.expanduser(os.fspath(data_dir)), name)
    if os.path.lexists(folder):
        raise DataError(f"{folder} already exists; choose another --data-dir or delete it first")
    if train_count < SYNTHETIC_MINIMUM_TRAIN[name] or test_count < 1:
        raise DataError(
            f"a synthetic {name} needs at least {SYNTHETIC_MINIMUM_TRAIN[name]} training "
            f"and 1 test image, got {train_count} and {test_count}"
        )
    SYNTHETIC_WRITERS[name](folder, train_count, test_count, np.random.default_rng(seed))
    return folder


# ----------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------


def main(argv=None) -> int:
    """`python data.py NAME [--data-dir DIR] [--no-download]`: download (if needed), verify and
    summarise a dataset; `python data.py synthetic NAME --data-dir DIR`: see synthetic_main;
    `python data.py first NAME COUNT --out DIR`: see first_main."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["synthetic"]:
        return synthetic_main(argv[1:])
    if argv[:1] == ["first"]:
        return first_main(argv[1:])
    parser = argparse.ArgumentParser(
        description="Download (if needed), verify and summarise a dataset.",
        epilog="'python data.py synthetic NAME --data-dir DIR' writes a small learnable stand-in "
        "in the official format instead (see 'python data.py synthetic --help').",
    )
    parser.add_argument("name", choices=sorted(LOADERS), help="which dataset")
    parser.add_argument(
        "--data-dir", default=None, help=f"folder holding <name>/ (default: {default_data_dir()})"
    )
    parser.add_argument(
        "--no-download", action="store_true", help="fail instead of downloading missing files"
    )
    arguments = parser.parse_args(argv)
    try:
        dataset = load_dataset(
            arguments.name, arguments.data_dir, download=not arguments.no_download
        )
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"{dataset.description}, {len(dataset.test_images):,} test images, "
        f"{dataset.num_classes} classes; "
        f"training pixels in [0, 1]: mean {' '.join(f'{value:.4f}' for value in dataset.mean)}, "
        f"std {' '.join(f'{value:.4f}' for value in dataset.std)}"
    )
    return 0


IDX_FILES = {"mnist": MNIST_FILES, "fashion-mnist": FASHION_MNIST_FILES}


def write_first_images(dataset: Dataset, count: int, folder: str, source=None) -> str:
    """Write the first `count` training images and labels of an MNIST-like `dataset`, and its
    whole test set, as the four IDX .gz files of folder/NAME/: a data folder that gives, to
    every command, what `--train-images count` gives snip_min.py (the same images, the same
    statistics). source: the dataset's own folder, whose test files are copied byte for byte
    when they are there (so that they stay the official files). Returns folder/NAME;
    DataError if it exists already or count is too large. The folder appears whole or not
    at all: the files are written into a hidden sibling folder, renamed into place at the end
    (and removed if anything fails on the way)."""
    if dataset.name not in IDX_FILES:
        raise DataError(f"only {', '.join(IDX_FILES)} are written as IDX files, not {dataset.name}")
    total = len(dataset.train_labels)
    if not 1 <= count <= total:
        raise DataError(f"{dataset.description} has {total:,} training images, not {count:,}")
    target = os.path.join(os.path.expanduser(folder), dataset.name)
    if os.path.exists(target):
        raise DataError(f"{target} exists already: choose another folder")
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    partial = tempfile.mkdtemp(prefix=f".{dataset.name}.", dir=os.path.dirname(target) or ".")
    try:
        write_idx_files(dataset, count, partial, source)
        os.rename(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def write_idx_files(dataset: Dataset, count: int, folder: str, source) -> None:
    """The four IDX .gz files of write_first_images, into folder."""
    arrays = {
        "train_images": dataset.train_images[:count, :, :, 0],
        "train_labels": dataset.train_labels[:count].astype(np.uint8),
        "test_images": dataset.test_images[:, :, :, 0],
        "test_labels": dataset.test_labels.astype(np.uint8),
    }
    for role, (file_name, _) in IDX_FILES[dataset.name].items():
        original = os.path.join(source, file_name) if source else None
        if role.startswith("test") and original and os.path.isfile(original):
            with open(original, "rb") as file:
                write_file_atomically(os.path.join(folder, file_name), file.read())
        else:
            write_idx(os.path.join(folder, file_name), arrays[role])


def first_main(argv) -> int:
    """`python data.py first NAME COUNT [--data-dir DIR] --out OUT`."""
    parser = argparse.ArgumentParser(
        prog="data.py first",
        description="Write the first COUNT training images of MNIST or Fashion-MNIST (and its "
        "whole test set) into OUT/NAME/, in the official format: the same data, for every "
        "command, as --train-images COUNT gives snip_min.py.",
    )
    parser.add_argument("name", choices=sorted(IDX_FILES), help="which dataset")
    parser.add_argument("count", type=int, help="how many training images, from the first")
    parser.add_argument(
        "--data-dir", default=None, help=f"where the dataset is (default: {default_data_dir()})"
    )
    parser.add_argument("--out", required=True, help="the data folder to write NAME/ into")
    parser.add_argument(
        "--no-download", action="store_true", help="fail instead of downloading missing files"
    )
    arguments = parser.parse_args(argv)
    try:
        dataset = load_dataset(arguments.name, arguments.data_dir, not arguments.no_download)
        source = os.path.join(
            os.path.expanduser(arguments.data_dir or default_data_dir()), arguments.name
        )
        target = write_first_images(dataset, arguments.count, arguments.out, source)
    except DataError as error:
        print(f"data.py: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a folder that cannot be written, a full disk
        print(
            f"data.py: error: cannot write into {arguments.out}: {error.strerror}", file=sys.stderr
        )
        return 2
    except KeyboardInterrupt:
        print("data.py: interrupted; nothing was written", file=sys.stderr)
        return 130
    print(
        f"wrote the first {arguments.count:,} training images of {dataset.description} and its "
        f"{len(dataset.test_labels):,} test images to {target}; use it with --data-dir "
        f"{arguments.out}"
    )
    return 0


def synthetic_main(argv) -> int:
    """`python data.py synthetic NAME --data-dir DIR [--train N] [--test M] [--seed S]`."""
    parser = argparse.ArgumentParser(
        prog="data.py synthetic",
        description="Write a small, learnable dataset in the official format into DIR/NAME/ "
        "(class k: a 7x7 square whose colour and position depend on k, on noise).",
    )
    parser.add_argument("name", choices=sorted(SYNTHETIC_WRITERS), help="which dataset to imitate")
    parser.add_argument(
        "--data-dir", required=True, help="folder to write <name>/ into (must not hold one yet)"
    )
    parser.add_argument(
        "--train",
        type=int,
        default=None,
        help="training images (default: 500; 2,000 for tiny-imagenet)",
    )
    parser.add_argument(
        "--test", type=int, default=None, help="test images (default: 100; 400 for tiny-imagenet)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    arguments = parser.parse_args(argv)
    default_train, default_test = SYNTHETIC_DEFAULT_COUNTS[arguments.name]
    train_count = default_train if arguments.train is None else arguments.train
    test_count = default_test if arguments.test is None else arguments.test
    try:
        folder = write_synthetic_dataset(
            arguments.name, arguments.data_dir, train_count, test_count, arguments.seed
        )
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"wrote a synthetic {arguments.name} ({train_count:,} training, "
        f"{test_count:,} test images) to {folder}"
    )
    print(
        f"use it: python snip_min.py --model {EXAMPLE_MODEL[arguments.name]} "
        f"--dataset {arguments.name} --data-dir {arguments.data_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
