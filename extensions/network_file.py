"""A trained sparse network on disk: network.npz, the product of a run.

    write_network(path, model, ...)   the trained values of every parameter (batch-norm
                                      statistics included), by name, with their masks, the
                                      model's name, dataset and shapes, and the statistics
                                      that standardised its inputs; one .npz, no pickle,
                                      written atomically
    read_network(path)                its contents, checked: NetworkFileError, one line,
                                      for a file that is missing, damaged or not a network
    load_network(path)                (the model with those values and masks, the contents)
    read_masks(path, model)           the masks of a network.npz or a masks.npz for `model`,
                                      names and shapes checked (snip_min.py --mask FILE)
    evaluate_network(folder, ...)     the test loss and error of a saved network on its
                                      dataset (snip_min.py --evaluate DIR)

Arrays are stored in snip-min's layouts (convolution weights (KH, KW, C, F), linear
(D_in, D_out)); extensions/pytorch_twin.py converts them to PyTorch's. The command line
writes network.npz beside results.json and masks.npz for every run with --out.
docs/saving.md describes the files; tests/test_network_file.py proves them.
"""

import io
import json
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


def write_network(path, model, model_name, dataset_name, gated, mean, std, results=None):
    """Save `model` (built by models.build(model_name, dataset_name)) with the masks of its
    gated Params, and the per-channel mean and std its inputs were standardised with.
    results: a few figures of the run to keep with it (test error, seed, sparsity ...)."""
    arrays = {f"param/{p.name}": sm.to_host(p.value) for p in sm.parameters_of(model)}
    arrays.update({f"mask/{p.name}": sm.to_host(p.mask).astype(bool) for p in gated})
    arrays["mean"] = numpy.asarray(mean, dtype=numpy.float32)
    arrays["std"] = numpy.asarray(std, dtype=numpy.float32)
    settings = {
        "format": FORMAT,
        "version": VERSION,
        "model": model_name,
        "dataset": dataset_name,
        "shapes": {p.name: list(p.shape) for p in sm.parameters_of(model)},
        "results": results or {},
    }
    arrays["settings"] = numpy.frombuffer(json.dumps(settings).encode(), dtype=numpy.uint8)
    buffer = io.BytesIO()
    numpy.savez(buffer, **arrays)
    data.write_file_atomically(path, buffer.getvalue())


def read_network(path):
    """{model, dataset, shapes, results, param: {name: array}, mask: {name: array}, mean,
    std}, checked against the model it names; NetworkFileError if it cannot be used."""
    arrays = read_npz(path)
    try:
        settings = json.loads(arrays.pop("settings").tobytes().decode())
    except (KeyError, ValueError, UnicodeDecodeError):
        raise NetworkFileError(
            f"{path} is not a snip-min network (no readable settings); a run with --out "
            f"writes one as {NETWORK_FILE}"
        ) from None
    if not isinstance(settings, dict) or settings.get("format") != FORMAT:
        raise NetworkFileError(f"{path} is not a snip-min network")
    if settings.get("version") != VERSION:
        raise NetworkFileError(
            f"{path} is a version {settings.get('version')} network file; this snip-min reads "
            f"version {VERSION}"
        )
    if settings.get("model") not in models.MODELS:
        raise NetworkFileError(f"{path} names no known model ({settings.get('model')!r})")
    contents = dict(settings)
    for part in ("param", "mask"):
        contents[part] = {
            name.split("/", 1)[1]: array
            for name, array in arrays.items()
            if name.startswith(part + "/")
        }
    for key in ("mean", "std"):
        if key not in arrays:
            raise NetworkFileError(f"{path} is damaged: it has no {key}")
        contents[key] = arrays[key]
    return contents


def read_npz(path):
    """Every array of an .npz archive, loaded without pickle; NetworkFileError, in the
    project's words, for a file that is missing or damaged."""
    if not os.path.isfile(path):
        raise NetworkFileError(f"no file at {path}")
    try:
        with numpy.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except Exception:  # a damaged archive fails in many ways (zip, npy header, pickled object)
        raise NetworkFileError(f"{path} is damaged or not a NumPy .npz archive") from None


def load_network(path, dtype=None):
    """(model, gated Params, contents): the network saved at `path`, built afresh on the
    current device with its saved values and masks."""
    contents = read_network(path)
    model = models.build(contents["model"], contents["dataset"])
    sm.initialise(model, "vs-h", numpy.random.default_rng(0), dtype=dtype)  # then overwritten
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
        p.value = sm.xp.asarray(saved, dtype=p.value.dtype)
    gated = [p for p in sm.parameters_of(model) if p.name in contents["mask"]]
    masks = check_masks(contents["mask"], model, gated, path)
    for p, mask in zip(gated, masks):
        p.mask = sm.xp.asarray(mask, dtype=p.value.dtype)
    return model, gated, contents


def read_masks(path, model, scope):
    """The masks for `model`'s prunable Params (scope: --prune's), from a network.npz or a
    masks.npz ({name: bool array}, snip-min's layouts, as a run writes it): one 0/1 host
    array per Param of sm.prunable_parameters(model, scope). NetworkFileError naming the
    first Param that is missing or of the wrong shape, or a name the model does not have."""
    arrays = read_npz(path)
    if "settings" in arrays:  # a network.npz: its masks
        arrays = read_network(path)["mask"]
    params = sm.prunable_parameters(model, scope)
    known = {p.name for p in params}
    unknown = sorted(name for name in arrays if name not in known)
    if unknown:
        raise NetworkFileError(
            f"{path} has a mask for {unknown[0]}, which this model does not gate "
            f"(gated: {', '.join(sorted(known))})"
        )
    return check_masks(arrays, model, params, path)


def check_masks(arrays, model, params, path):
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


def evaluate_network(folder, data_dir=None, download=True, batch_size=None, notice=print):
    """(test loss, test error in percent, contents) of the network saved in `folder` (or at
    the path `folder` itself), on its dataset's test set, standardised with the statistics
    saved with it, on the current device, in batches of batch_size (default: the run's, so
    that the figures are the run's own exactly)."""
    path = os.path.join(folder, NETWORK_FILE) if os.path.isdir(folder) else folder
    model, _, contents = load_network(path)
    batch_size = batch_size or contents["results"].get("batch_size") or 100
    dataset = data.load_dataset(contents["dataset"], data_dir, download=download, notice=notice)
    test = sm.DeviceSplit(
        dataset.test_images, dataset.test_labels, contents["mean"], contents["std"]
    )
    loss, error = sm.evaluate(model, test, batch_size=batch_size)
    return loss, error, contents
