"""A trained sparse network on disk: network.npz, the product of a run.

    write_network(path, model, ...)   the trained values of every parameter (batch-norm
                                      statistics included), by name, with their masks, the
                                      model's name, dataset and shapes, the statistics that
                                      standardised its inputs and the fingerprint of its test
                                      set; one .npz, no pickle, written atomically
    read_network(path)                its contents, checked: NetworkFileError, one line,
                                      for a file that is missing, damaged or not a network
    load_network(path)                (the model with those values and masks, ...)
    read_masks(path, model, scope)    the masks of a network.npz or a masks.npz for `model`,
                                      names and shapes checked (snip_min.py --mask FILE)
    evaluate_network(path, ...)       the test loss and error of a saved network on its
                                      dataset (snip_min.py --evaluate DIR)
    network_arrays, masks_by_name     a network's arrays by name, as this file and a
                                      checkpoint store them

Arrays are stored in snip-min's layouts (convolution weights (KH, KW, C, F), linear
(D_in, D_out)); extensions/pytorch_twin.py converts them to PyTorch's. The command line
writes network.npz beside results.json and masks.npz for every run with --out.
docs/saving.md describes the files; tests/test_network_file.py proves them.
"""

import hashlib
import io
import os

import numpy

import data
import models
import snip_min as sm

NETWORK_FILE = "network.npz"
MASKS_FILE = "masks.npz"
FORMAT = "snip-min network"
VERSION = 1


class NetworkFileError(Exception):
    """A network or mask file that cannot be used; the message is one line."""


def masks_by_name(gated):
    """{name: boolean host array} of the gated Params' masks: a masks.npz's contents."""
    return {p.name: sm.to_host(p.mask).astype(bool) for p in gated}


def network_arrays(model, gated):
    """{'param/NAME': value, 'mask/NAME': mask} on the host, for every Param of `model` and
    the masks of the gated ones: what network.npz and a checkpoint store of a network."""
    arrays = {f"param/{p.name}": sm.to_host(p.value) for p in sm.parameters_of(model)}
    arrays.update({f"mask/{name}": mask for name, mask in masks_by_name(gated).items()})
    return arrays


def arrays_under(arrays, part):
    """{NAME: array} of the arrays named 'PART/NAME'."""
    prefix = part + "/"
    return {name[len(prefix) :]: array for name, array in arrays.items() if name.startswith(prefix)}


def network_path(place):
    """A run's folder means its network.npz; a file is itself."""
    return os.path.join(place, NETWORK_FILE) if os.path.isdir(place) else place


def write_network(path, model, model_name, dataset, gated, results=None):
    """Save `model` (built by models.build(model_name, dataset.name)) with the masks of its
    gated Params, the per-channel mean and std of `dataset` (a data.Dataset, as the run
    read it) its inputs were standardised with, and the fingerprint of its test set.
    results: a few settings of the run to keep with it (cli.NETWORK_RESULTS: data, sparsity,
    seed, method, mask, batch size); the test error, measured after the file is written, is
    results.json's."""
    settings = {
        "format": FORMAT,
        "version": VERSION,
        "model": model_name,
        "dataset": dataset.name,
        "shapes": {p.name: list(p.shape) for p in sm.parameters_of(model)},
        "test_data": data.fingerprint(dataset)["test"],
        "results": results or {},
    }
    arrays = network_arrays(model, gated)
    arrays["mean"] = numpy.asarray(dataset.mean, dtype=numpy.float32)
    arrays["std"] = numpy.asarray(dataset.std, dtype=numpy.float32)
    data.write_archive(path, arrays, settings)


def read_network(path):
    """{model, dataset, shapes, test_data, results, param: {name: array}, mask: {name:
    array}, mean, std}, its settings checked; NetworkFileError if it cannot be used."""
    arrays, settings = read_npz(path)
    if not isinstance(settings, dict) or settings.get("format") != FORMAT:
        raise NetworkFileError(
            f"{path} is not a snip-min network; a run with --out writes one as {NETWORK_FILE}"
        )
    if settings.get("version") != VERSION:
        raise NetworkFileError(
            f"{path} is a version {settings.get('version')} network file; this snip-min reads "
            f"version {VERSION}"
        )
    if settings.get("model") not in models.MODELS:
        raise NetworkFileError(f"{path} names no known model ({settings.get('model')!r})")
    contents = dict(settings)
    contents["param"], contents["mask"] = (
        arrays_under(arrays, "param"),
        arrays_under(arrays, "mask"),
    )
    for key in ("mean", "std"):
        if key not in arrays:
            raise NetworkFileError(f"{path} is damaged: it has no {key}")
        contents[key] = arrays[key]
    return contents


def read_npz(path, source=None):
    """(arrays, settings or None) of an .npz archive at `path` (or in `source`, a file object
    holding its bytes), loaded without pickle (data.read_archive); NetworkFileError, in the
    project's words, for a file that is missing or damaged."""
    if source is None and not os.path.isfile(path):
        raise NetworkFileError(f"no file at {path}")
    try:
        return data.read_archive(source or path)
    except Exception:  # a damaged archive fails in many ways (zip, npy header, pickled object)
        raise NetworkFileError(f"{path} is damaged or not a NumPy .npz archive") from None


def load_network(path, dtype=None):
    """(model, gated Params, contents): the network saved at `path`, built afresh on the
    current device with its saved values and masks."""
    contents = read_network(path)
    model = models.build(contents["model"], contents["dataset"])
    dtype = dtype or sm.xp.float32
    for p in sm.parameters_of(model):
        saved = contents["param"].get(p.name)
        if saved is None or saved.shape != p.shape:
            found = "missing" if saved is None else f"of shape {saved.shape}"
            raise NetworkFileError(
                f"{path} does not fit model {contents['model']}: {p.name} is {found}, "
                f"expected {p.shape}"
            )
        if not numpy.isfinite(saved).all():
            raise NetworkFileError(f"{path} is damaged: {p.name} holds non-finite values")
        p.value, p.mask, p.grad = sm.xp.asarray(saved, dtype=dtype), None, None
    gated = [p for p in sm.parameters_of(model) if p.name in contents["mask"]]
    masks = check_masks(contents["mask"], gated, path)
    for p, mask in zip(gated, masks):
        p.mask = sm.xp.asarray(mask, dtype=p.value.dtype)
    return model, gated, contents


def read_masks(path, model, scope):
    """(masks, sha256): the masks for `model`'s prunable Params (scope: --prune's), from a
    network.npz or a masks.npz ({name: bool array}, snip-min's layouts, as a run writes it),
    one 0/1 host array per Param of sm.prunable_parameters(model, scope), and the SHA-256
    of the file they came from. NetworkFileError naming the first Param that is missing or
    of the wrong shape, or a name the model does not gate."""
    if not os.path.isfile(path):
        raise NetworkFileError(f"no file at {path}")
    with open(path, "rb") as file:
        raw = file.read()
    arrays, settings = read_npz(path, io.BytesIO(raw))
    if settings is not None:  # a network.npz: its masks
        arrays = arrays_under(arrays, "mask")
    params = sm.prunable_parameters(model, scope)
    known = {p.name for p in params}
    unknown = sorted(name for name in arrays if name not in known)
    if unknown:
        raise NetworkFileError(
            f"{path} has a mask for {unknown[0]}, which this model does not gate "
            f"(gated: {', '.join(sorted(known))})"
        )
    return check_masks(arrays, params, path), hashlib.sha256(raw).hexdigest()


def check_masks(arrays, params, path):
    """[one 0/1 host mask per Param of params], each checked: present, of the Param's shape,
    boolean or 0/1 values."""
    masks = []
    for p in params:
        mask = arrays.get(p.name)
        if mask is None:
            raise NetworkFileError(f"{path} has no mask for {p.name}")
        if mask.shape != p.shape:
            raise NetworkFileError(
                f"{path}: the mask for {p.name} is {mask.shape}, but the model's {p.name} is "
                f"{p.shape}"
            )
        if mask.dtype != bool and not numpy.isin(mask, (0, 1)).all():
            raise NetworkFileError(f"{path}: the mask for {p.name} holds values other than 0, 1")
        masks.append(mask.astype(bool))
    return masks


def evaluate_network(path, data_dir=None, download=True, batch_size=None, notice=print):
    """(test loss, test error in percent, contents) of the network saved at `path` (a run's
    folder: its network.npz) on its dataset's test set, standardised with the statistics
    saved with it, on the current device, in batches of batch_size (default: the run's, so
    that the figures are the run's own exactly). NetworkFileError, naming both, if the test
    set found is not the one the run measured its test error on."""
    path = network_path(path)
    model, _, contents = load_network(path)
    batch_size = batch_size or contents["results"].get("batch_size") or 100
    dataset = data.load_dataset(contents["dataset"], data_dir, download=download, notice=notice)
    found, theirs = data.fingerprint(dataset)["test"], contents.get("test_data")
    if theirs is not None and found != theirs:
        raise NetworkFileError(
            f"{path} was tested on other test images ({theirs['images']:,}, SHA-256 "
            f"{theirs['sha256'][:12]}) than {dataset.description} gives ({found['images']:,}, "
            f"{found['sha256'][:12]}): evaluate it with the run's own --data-dir"
        )
    test = sm.DeviceSplit(
        dataset.test_images, dataset.test_labels, contents["mean"], contents["std"]
    )
    loss, error = sm.evaluate(model, test, batch_size=batch_size)
    return loss, error, contents
