"""The benchmark runs and reports sane figures (no timing is asserted), and its PyTorch
twin of a network computes what snip-min computes."""

import json
import os

import numpy
import pytest

import models
import snip_min as sm
from helpers import run_python

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_benchmark_prints_one_json_object_with_every_figure(device):
    result = run_python(
        [
            os.path.join(ROOT, "scripts", "bench.py"),
            "--model",
            "lenet300",
            "--batch-size",
            "20",
            "--repeats",
            "2",
            "--steps",
            "2",
            "--json",
            "--device",
            device,
        ],
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in ("train_images_per_second", "infer_images_per_second"):
        assert report[key] > 0, key
    assert report["peak_memory_bytes"] >= 0  # a warmed-up small step may need nothing new
    assert 0 < report["snip_seconds"] < 60
    spread = report["spread"]["train_images_per_second"]
    assert spread["min"] <= spread["median"] <= spread["max"]
    if "torch" in report:  # PyTorch is optional; on a GPU it needs CUDA
        assert set(report["ratios"]) >= {
            "train_images_per_second",
            "snip_seconds",
            "infer_images_per_second",
        }
        for key, ratio in report["ratio_spread"].items():  # the median of the pairwise ratios
            assert ratio["min"] <= ratio["median"] == report["ratios"][key] <= ratio["max"], key


def test_the_profile_times_every_layer_of_the_step(device):
    result = run_python(
        [
            os.path.join(ROOT, "scripts", "bench.py"),
            "--model",
            "lenet5",
            "--batch-size",
            "10",
            "--repeats",
            "2",
            "--steps",
            "2",
            "--profile",
            "--json",
            "--device",
            device,
        ],
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    parts = {row["part"]: row for row in report["parts"]}
    assert list(parts) == [
        "conv1",
        "MaxPool2D 2",
        "conv2",
        "MaxPool2D 4",
        "Flatten 5",
        "fc1",
        "ReLU 7",
        "fc2",
        "loss",
        "SGD update",
    ]
    for name in ("conv1", "conv2", "fc1", "fc2"):
        assert parts[name]["forward"] > 0 and parts[name]["backward"] > 0, name
    assert set(parts["loss"]) == {"part", "forward"} and set(parts["SGD update"]) == {
        "part",
        "backward",
    }
    assert report["step_seconds"] > 0


def test_an_unknown_model_is_refused_in_one_line():
    result = run_python(
        [os.path.join(ROOT, "scripts", "bench.py"), "--model", "nope"], timeout=120, cwd=ROOT
    )
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("name", ["lenet300", "lenet5", "lstm-s", "gru-s", "gru-s-pixels"])
def test_the_pytorch_twin_gives_the_same_logits_and_gradients(name):
    torch = pytest.importorskip("torch")
    from extensions import pytorch_twin

    rng = numpy.random.default_rng(0)
    model = models.build(name)
    sm.initialise(model, "vs-h", rng, dtype=sm.xp.float64)
    images = sm.xp.asarray(rng.standard_normal((4, 28, 28, 1)))
    labels = sm.xp.asarray(rng.integers(0, 10, 4))
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # build the twin in float64, no rounding
    try:
        twin, links = pytorch_twin.to_torch(model, torch)
    finally:
        torch.set_default_dtype(default)
    logits = model.forward(images, train=True)
    _, dlogits = sm.softmax_cross_entropy(logits, labels)
    model.backward(dlogits)
    x = torch.as_tensor(sm.to_host(images))
    their_logits = twin(x)
    assert numpy.allclose(their_logits.detach().numpy(), sm.to_host(logits), rtol=1e-10, atol=1e-12)
    torch.nn.functional.cross_entropy(their_logits, torch.as_tensor(sm.to_host(labels))).backward()
    for p, target, layout in links:
        # where a layout embeds a Param in a larger PyTorch one (a GRU's b_hn in bias_hh), the
        # rest of that tensor is PyTorch's own (held at zero in the twin's training): compare
        # the Param's part
        part = layout(sm.xp.ones_like(p.grad)).numpy() != 0
        assert numpy.allclose(
            target.grad.numpy()[part], layout(p.grad).numpy()[part], rtol=1e-9, atol=1e-12
        ), p.name


def test_the_benchmark_times_the_compacted_network_beside_the_masked_one(device):
    result = run_python(
        [
            os.path.join(ROOT, "scripts", "bench.py"),
            "--model",
            "lenet300",
            "--sparsity",
            "0.98",
            "--batch-size",
            "20",
            "--repeats",
            "2",
            "--steps",
            "2",
            "--json",
            "--compact",
            "--no-memory",
            "--device",
            device,
        ],
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    compact = json.loads(result.stdout)["compact"]
    assert compact["train_images_per_second"] > 0 and compact["infer_images_per_second"] > 0
    for key in ("train_images_per_second", "infer_images_per_second"):
        ratio = compact["over_masked"][key]  # the compacted network over the masked one
        assert 0 < ratio["min"] <= ratio["median"] <= ratio["max"], key


def test_the_benchmark_refuses_to_compact_a_network_it_cannot(device):
    result = run_python(
        [
            os.path.join(ROOT, "scripts", "bench.py"),
            "--model",
            "resnet18",
            "--batch-size",
            "2",
            "--repeats",
            "1",
            "--steps",
            "1",
            "--compact",
            "--no-memory",
            "--no-torch",
            "--device",
            device,
        ],
        cwd=ROOT,
    )
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("bench.py: error: cannot compact a network with batch norm")


def test_the_benchmark_scores_and_trains_on_real_images_from_a_data_folder(tiny_mnist, device):
    # the masks of real images differ from those of random ones: with --data-dir the work is
    # the first batch of the training set, and the compacted network's size is reported
    result = run_python(
        [
            os.path.join(ROOT, "scripts", "bench.py"),
            "--model",
            "lenet300",
            "--sparsity",
            "0.98",
            "--batch-size",
            "20",
            "--repeats",
            "1",
            "--steps",
            "2",
            "--json",
            "--compact",
            "--no-memory",
            "--no-torch",
            "--data-dir",
            tiny_mnist,
            "--device",
            device,
        ],
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["data"] == "the first 20 images of MNIST, 300 training images"
    adds = report["compact"]["multiply_adds"]
    assert adds["full"] == 784 * 300 + 300 * 100 + 100 * 10 and 0 < adds["compact"] < adds["full"]


def test_a_missing_data_folder_is_one_line_and_status_2(tmp_path):
    result = run_python(
        [
            os.path.join(ROOT, "scripts", "bench.py"),
            "--model",
            "lenet300",
            "--data-dir",
            str(tmp_path),
        ],
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "mnist" in result.stderr
