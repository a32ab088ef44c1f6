"""A trained network on disk (extensions/network_file.py) and on its way to PyTorch and back
(extensions/pytorch_twin.py, scripts/pytorch_io.py).

- network.npz holds every value and mask exactly; a damaged or foreign file, a mask of the
  wrong shape or for a parameter the model does not gate, is refused in one line naming it.
- A saved network evaluates to what the network in memory evaluates to, exactly.
- Exported to PyTorch, the twin loaded from the state_dict computes the same logits
  (float32 tolerance) for LeNet-300-100, LeNet-5-Caffe, a convolutional network with batch
  norm (ResNet-18) and a recurrent one (LSTM-s), with the masks applied or registered.
- A mask taken to PyTorch and brought back is the same mask, bit for bit.
"""

import hashlib
import json
import os

import numpy
import pytest

import data
import models
import snip_min as sm
from extensions import network_file
from helpers import run_python

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pruned_model(name, sparsity=0.9, seed=0):
    """(model, gated Params, images): `name` initialised and pruned by SNIP on random images
    (a few training steps move the values away from their initial draw)."""
    rng = numpy.random.default_rng(seed)
    dataset = models.MODELS[name].dataset
    model = models.build(name, dataset)
    sm.initialise(model, "vs-h", rng)
    shape = (4,) + models.INPUT_SHAPE[dataset]
    images = sm.xp.asarray(rng.standard_normal(shape), dtype=sm.xp.float32)
    labels = sm.xp.asarray(rng.integers(0, models.NUM_CLASSES[dataset], 4))
    gated = sm.snip(model, images, labels, sparsity)
    optimiser = sm.SGD(sm.parameters_of(model))
    for _ in range(2):
        sm.train_step(model, optimiser, images, labels, lr=0.01)
    return model, gated, images


def stand_in_dataset(name="mnist", test_images=6, seed=0):
    """A data.Dataset with a few random images of `name`'s shape: what write_network reads of
    a run's data (its name, input statistics and test-set fingerprint)."""
    rng = numpy.random.default_rng(seed)
    shape = models.INPUT_SHAPE[name]
    images = rng.integers(0, 256, (test_images, *shape), dtype=numpy.uint8)
    labels = rng.integers(0, 10, test_images)
    channels = shape[-1]
    return data.Dataset(
        name=name,
        train_images=images,
        train_labels=labels,
        test_images=images,
        test_labels=labels,
        num_classes=10,
        mean=numpy.full(channels, 0.5, numpy.float32),
        std=numpy.full(channels, 0.25, numpy.float32),
        augment=None,
        description=f"{name}, {test_images} random images",
    )


def save(tmp_path, model, gated, name="lenet300"):
    path = str(tmp_path / network_file.NETWORK_FILE)
    dataset = stand_in_dataset(models.MODELS[name].dataset)
    network_file.write_network(path, model, name, dataset, gated, {"seed": 0})
    return path


def test_a_saved_network_holds_every_value_and_mask_exactly(tmp_path):
    model, gated, _ = pruned_model("lenet300")
    loaded, loaded_gated, contents = network_file.load_network(save(tmp_path, model, gated))
    assert contents["model"] == "lenet300" and contents["results"] == {"seed": 0}
    for p, q in zip(sm.parameters_of(model), sm.parameters_of(loaded)):
        assert p.name == q.name
        numpy.testing.assert_array_equal(sm.to_host(p.value), sm.to_host(q.value))
    assert [p.name for p in loaded_gated] == [p.name for p in gated]
    for p, q in zip(gated, loaded_gated):
        numpy.testing.assert_array_equal(sm.to_host(p.mask), sm.to_host(q.mask))
    with numpy.load(tmp_path / network_file.NETWORK_FILE, allow_pickle=False) as archive:
        assert all(archive[name].dtype != object for name in archive.files)  # no pickle


@pytest.mark.parametrize(
    "damage, complaint",
    [
        (lambda path: open(path, "wb").write(b"not a zip"), "damaged or not a NumPy .npz"),
        (lambda path: numpy.savez(path, x=numpy.zeros(2)), "not a snip-min network"),
        (lambda path: rewrite_settings(path, model="no-such-net"), "names no known model"),
        (lambda path: rewrite_settings(path, version=99), "version 99 network file"),
        (lambda path: rewrite_param(path, "fc1.weight", numpy.zeros((3, 3))), "fc1.weight is of"),
        (lambda path: rewrite_param(path, "fc2.bias", numpy.full(100, numpy.nan)), "non-finite"),
    ],
)
def test_a_damaged_or_foreign_network_file_is_refused_in_one_line(tmp_path, damage, complaint):
    model, gated, _ = pruned_model("lenet300")
    path = save(tmp_path, model, gated)
    damage(path)
    with pytest.raises(network_file.NetworkFileError, match=complaint) as caught:
        network_file.load_network(path)
    assert "\n" not in str(caught.value)


def rewrite_settings(path, **changes):
    arrays = dict(numpy.load(path, allow_pickle=False))
    settings = json.loads(arrays["settings"].tobytes().decode())
    settings.update(changes)
    arrays["settings"] = numpy.frombuffer(json.dumps(settings).encode(), dtype=numpy.uint8)
    numpy.savez(path, **arrays)


def rewrite_param(path, name, value):
    arrays = dict(numpy.load(path, allow_pickle=False))
    arrays[f"param/{name}"] = value.astype(numpy.float32)
    numpy.savez(path, **arrays)


def test_masks_are_read_from_a_network_or_a_masks_file_and_checked_against_the_model(tmp_path):
    model, gated, _ = pruned_model("lenet300")
    path = save(tmp_path, model, gated)
    fresh = models.build("lenet300", "mnist")
    sm.initialise(fresh, "vs-h", numpy.random.default_rng(5))
    from_network, network_sha = network_file.read_masks(path, fresh, "weights+biases")
    masks_path = tmp_path / "masks.npz"
    numpy.savez(masks_path, **{p.name: sm.to_host(p.mask).astype(bool) for p in gated})
    from_masks, masks_sha = network_file.read_masks(str(masks_path), fresh, "weights+biases")
    assert network_sha == hashlib.sha256(open(path, "rb").read()).hexdigest() != masks_sha
    for p, a, b in zip(gated, from_network, from_masks):
        numpy.testing.assert_array_equal(a, sm.to_host(p.mask).astype(bool))
        numpy.testing.assert_array_equal(b, a)
    wrong = {p.name: numpy.ones(p.shape, bool) for p in gated}
    wrong["fc2.weight"] = numpy.ones((2, 2), bool)
    numpy.savez(masks_path, **wrong)
    with pytest.raises(network_file.NetworkFileError, match=r"fc2\.weight is \(2, 2\)"):
        network_file.read_masks(str(masks_path), fresh, "weights+biases")
    with pytest.raises(network_file.NetworkFileError, match="which this model does not gate"):
        network_file.read_masks(path, fresh, "weights")  # the file masks biases too
    del wrong["fc2.weight"]
    numpy.savez(masks_path, **wrong)
    with pytest.raises(network_file.NetworkFileError, match="no mask for fc2.weight"):
        network_file.read_masks(str(masks_path), fresh, "weights+biases")


def test_a_saved_network_evaluates_to_what_it_evaluated_to_in_memory(tiny_mnist, tmp_path):
    dataset = data.load_dataset("mnist", tiny_mnist, download=False)
    model, gated, _ = pruned_model("lenet300")
    path = str(tmp_path / network_file.NETWORK_FILE)
    network_file.write_network(path, model, "lenet300", dataset, gated)
    test = sm.DeviceSplit(dataset.test_images, dataset.test_labels, dataset.mean, dataset.std)
    expected = sm.evaluate(model, test)
    loss, error, _ = network_file.evaluate_network(
        str(tmp_path), tiny_mnist, download=False, notice=lambda line: None
    )
    assert (loss, error) == expected


def test_a_saved_network_is_not_evaluated_on_other_test_images(tiny_mnist, tmp_path):
    """The error --evaluate reports is the run's only on the run's test set: another one (here
    six random images standing in for a different download) is refused, naming both."""
    model, gated, _ = pruned_model("lenet300")
    save(tmp_path, model, gated)
    with pytest.raises(network_file.NetworkFileError, match="was tested on other test images"):
        network_file.evaluate_network(
            str(tmp_path), tiny_mnist, download=False, notice=lambda line: None
        )


# -- to PyTorch and back ----------------------------------------------------------------------

torch_models = pytest.mark.parametrize("name", ["lenet300", "lenet5", "resnet18", "lstm-s"])


@torch_models
@pytest.mark.parametrize("masks", ["apply", "register"])
def test_the_exported_state_dict_computes_the_same_logits_in_pytorch(name, masks, tmp_path):
    torch = pytest.importorskip("torch")
    from extensions import pytorch_twin

    model, gated, images = pruned_model(name, sparsity=0.95)
    _, state = pytorch_twin.export_state_dict(model, torch, masks=masks)
    assert any(key.endswith("_mask") for key in state) == (masks == "register")
    buffer = tmp_path / "network.pt"
    torch.save(state, buffer)
    # the user's side: a fresh twin of a freshly drawn network, then the saved state
    fresh = models.build(name, models.MODELS[name].dataset)
    sm.initialise(fresh, "vs-h", numpy.random.default_rng(99))
    twin, _ = pytorch_twin.to_torch(fresh, torch)
    if masks == "register":  # the same pruning parametrisation before loading its entries
        import torch.nn.utils.prune

        for module_name, module in twin.named_modules():
            for entry in list(state):
                owner, _, attribute = entry.rpartition(".")
                if owner == module_name and attribute.endswith("_mask"):
                    torch.nn.utils.prune.identity(module, attribute[: -len("_mask")])
    twin.load_state_dict(torch.load(buffer, weights_only=True))
    twin.eval()
    with torch.no_grad():
        theirs = twin(torch.as_tensor(sm.to_host(images))).numpy()
    ours = sm.to_host(model.forward(images, train=False))
    sm.forget_caches(model)
    numpy.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-4 * numpy.abs(ours).max())


@torch_models
def test_a_mask_taken_to_pytorch_and_back_is_the_same_mask(name):
    torch = pytest.importorskip("torch")
    from extensions import pytorch_twin

    model, gated, _ = pruned_model(name, sparsity=0.95)
    _, state = pytorch_twin.export_state_dict(model, torch, masks="register")
    masks, unmasked = pytorch_twin.masks_from_state_dict(model, state, torch)
    assert unmasked == [] and sorted(masks) == sorted(p.name for p in gated)
    for p in gated:
        numpy.testing.assert_array_equal(masks[p.name], sm.to_host(p.mask).astype(bool))


def test_the_script_exports_and_imports_and_refuses_bad_input_in_one_line(tmp_path):
    pytest.importorskip("torch")
    model, gated, _ = pruned_model("lenet300")
    save(tmp_path, model, gated)
    script = os.path.join(ROOT, "scripts", "pytorch_io.py")
    exported = run_python([script, "export", tmp_path, "--masks", "register"], timeout=300)
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "network.pt").is_file()
    out = tmp_path / "back.npz"
    command = [script, "import-masks", tmp_path / "network.pt", "--model", "lenet300"]
    brought = run_python(command + ["--out", out], timeout=300)
    assert brought.returncode == 0, brought.stderr
    back, _ = network_file.read_npz(str(out))
    for p in gated:
        numpy.testing.assert_array_equal(back[p.name], sm.to_host(p.mask).astype(bool))
    before = out.read_bytes()
    again = run_python(command + ["--out", out], timeout=300)
    assert_one_line(again, "exists already: replace it with --overwrite")
    assert out.read_bytes() == before  # nothing a user made is lost
    missing = run_python([script, "export", tmp_path / "nowhere"], timeout=300)
    assert_one_line(missing, "no file at")
    applied = run_python(
        [script, "export", tmp_path, "--out", tmp_path / "applied.pt"], timeout=300
    )
    assert applied.returncode == 0, applied.stderr
    no_masks = [script, "import-masks", tmp_path / "applied.pt", "--model", "lenet300"]
    refused = run_python(no_masks + ["--out", tmp_path / "none.npz"], timeout=300)
    assert_one_line(refused, "holds no NAME_mask entry for this model")
    other = [script, "import-masks", tmp_path / "network.pt", "--model", "lenet5"]
    assert_one_line(run_python(other + ["--out", tmp_path / "o.npz"], timeout=300), "another model")
    assert not (tmp_path / "none.npz").exists() and not (tmp_path / "o.npz").exists()


def assert_one_line(result, complaint):
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr and complaint in result.stderr


# -- the command line: every run keeps its network; --evaluate; --mask --------------------------


def run_quietly(*arguments):
    from extensions import cli

    return cli.run(cli.parse_arguments(list(map(str, arguments))), log=lambda line: None)


def test_a_run_with_out_keeps_a_network_that_evaluates_to_its_own_test_error_exactly(
    tiny_mnist, tmp_path, device
):
    from extensions import cli

    out = tmp_path / "run"
    flags = ["--data-dir", tiny_mnist, "--device", device, "--batch-size", "30"]
    results = run_quietly(
        "--model",
        "lenet5",
        "--sparsity",
        "0.95",
        "--lr",
        "0.01",
        "--iterations",
        "12",
        "--out",
        out,
        *flags,
    )
    assert (out / network_file.NETWORK_FILE).is_file()
    args = cli.parse_arguments(["--evaluate", str(out), "--data-dir", tiny_mnist])
    lines = []
    loss, error = cli.evaluate_saved(args, log=lines.append)
    assert (loss, error) == (results["test_loss"], results["test_error"])
    assert f"the run in that folder: lenet5, seed 0, test error {error:.2f}%" in lines[-1]
    saved = network_file.read_network(str(out / network_file.NETWORK_FILE))
    assert saved["model"] == "lenet5" and saved["results"]["batch_size"] == 30


def test_another_seeds_mask_trains_under_its_name_and_is_recorded(tiny_mnist, tmp_path, device):
    flags = ["--data-dir", tiny_mnist, "--device", device, "--iterations", "6"]
    first = run_quietly("--model", "lenet300", "--sparsity", "0.9", "--out", tmp_path / "a", *flags)
    masks = tmp_path / "a" / network_file.MASKS_FILE
    second = run_quietly("--model", "lenet300", "--seed", "1", "--mask", masks, *flags)
    assert second["mask"]["file"] == str(masks) and len(second["mask"]["sha256"]) == 64
    assert second["method"] is None and second["seed"] == 1
    assert second["per_layer"] == first["per_layer"]  # the same connections kept, layer by layer
    assert second["params_kept"] == first["params_kept"] == 26_661
    from_network = run_quietly(
        "--model", "lenet300", "--seed", "1", "--mask", tmp_path / "a" / "network.npz", *flags
    )
    assert from_network["per_layer"] == first["per_layer"]


def test_a_mask_that_does_not_fit_is_refused_naming_the_first_mismatch(
    tiny_mnist, tmp_path, device
):
    from test_cli import assert_refused, run_cli

    wrong = {p.name: numpy.ones(p.shape, bool) for p in pruned_model("lenet300")[1]}
    wrong["fc2.weight"] = numpy.ones((100, 300), bool)
    numpy.savez(tmp_path / "wrong.npz", **wrong)
    common = ["--data-dir", tiny_mnist, "--iterations", "2"]
    result = run_cli(
        "--model", "lenet300", "--mask", tmp_path / "wrong.npz", *common, device=device
    )
    assert_refused(result, "the mask for fc2.weight is (100, 300), but the model's fc2.weight is")
    other = run_cli("--model", "lenet5", "--mask", tmp_path / "wrong.npz", *common, device=device)
    assert_refused(other, "has a mask for fc3.bias, which this model does not gate")
    assert "not the official MNIST" not in other.stderr  # refused before the data was read


def test_a_mask_that_keeps_nothing_or_disconnects_a_layer_is_refused(tiny_mnist, tmp_path):
    """A given mask is checked as a scored one is: keeping no connection at all is refused; an
    empty layer is a warning, and with --strict a refusal naming the layer."""
    gated = pruned_model("lenet300")[1]
    nothing = {p.name: numpy.zeros(p.shape, bool) for p in gated}
    numpy.savez(tmp_path / "nothing.npz", **nothing)
    empty_layer = {p.name: numpy.ones(p.shape, bool) for p in gated}
    empty_layer["fc2.weight"][:] = False
    numpy.savez(tmp_path / "empty.npz", **empty_layer)
    flags = ["--model", "lenet300", "--data-dir", tiny_mnist, "--iterations", "2"]
    with pytest.raises(sm.UsageError, match="keeps no connection: there is nothing to train"):
        run_quietly(*flags, "--mask", tmp_path / "nothing.npz")
    with pytest.raises(sm.UsageError, match="keeps no connection in fc2.weight") as caught:
        run_quietly(*flags, "--mask", tmp_path / "empty.npz", "--strict")
    assert f"the mask {tmp_path / 'empty.npz'} is the problem" in str(caught.value)


def test_overwrite_refuses_to_replace_the_mask_the_run_trains(tiny_mnist, tmp_path):
    flags = ["--model", "lenet300", "--data-dir", tiny_mnist, "--iterations", "2"]
    run_quietly(*flags, "--sparsity", "0.9", "--out", tmp_path / "a")
    masks = tmp_path / "a" / network_file.MASKS_FILE
    before = masks.read_bytes()
    with pytest.raises(sm.UsageError, match="the mask this run trains: copy it elsewhere first"):
        run_quietly(*flags, "--mask", masks, "--out", tmp_path / "a", "--overwrite")
    assert masks.read_bytes() == before


@pytest.mark.parametrize(
    "flag",
    [
        ["--method", "grasp"],
        ["--sanity-check", "shuffle"],
        ["--sparsity", "0.5"],
        ["--two-draws"],
    ],  # fmt: skip
)
def test_mask_refuses_the_flags_that_choose_or_change_a_mask(flag, tmp_path, capsys):
    from extensions import cli

    with pytest.raises(SystemExit) as exit_:
        cli.parse_arguments(["--mask", str(tmp_path / "m.npz"), *flag])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert f"--mask trains the mask it is given; {flag[0]} cannot be given with it" in error


def test_evaluate_trains_nothing_and_refuses_training_flags(capsys):
    from extensions import cli

    with pytest.raises(SystemExit) as exit_:
        cli.parse_arguments(["--evaluate", "runs/a", "--sparsity", "0.5"])
    assert exit_.value.code == 2
    assert "--sparsity cannot be given with it" in capsys.readouterr().err


def test_a_diverged_run_keeps_no_network(tiny_mnist, tmp_path, device):
    from test_cli import run_cli

    out = tmp_path / "diverged"
    result = run_cli(
        "--model", "lenet300", "--lr", "1e30", "--iterations", "40", "--data-dir", tiny_mnist,
        "--out", out, device=device,
    )  # fmt: skip
    assert result.returncode == 1 and "diverged" in result.stderr
    assert (out / "results.json").is_file() and not (out / network_file.NETWORK_FILE).exists()
    assert "no network.npz: a diverged network is not kept" in result.stdout


def test_the_python_example_of_the_docs_runs(tmp_path, monkeypatch):
    """docs/saving.md's code block, run as written, on a saved LeNet-300-100."""
    pytest.importorskip("torch")
    page = open(os.path.join(ROOT, "docs", "saving.md"), encoding="utf-8").read()
    block = page.split("```python\n", 1)[1].split("```", 1)[0]
    model, gated, _ = pruned_model("lenet300")
    (tmp_path / "runs" / "a").mkdir(parents=True)
    network_file.write_network(
        str(tmp_path / "runs" / "a" / "network.npz"), model, "lenet300", stand_in_dataset(), gated
    )
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(block, "docs/saving.md", "exec"), namespace)
    assert tuple(namespace["logits"].shape) == (1, 10)
    assert len(block.strip().splitlines()) <= 6
