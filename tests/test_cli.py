"""The command line end to end, on a tiny generated MNIST, in a subprocess as a user runs it."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy
import pytest

import data
import helpers
import snip_min as sm
from extensions import cli
from helpers import run_python

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*arguments, device):
    """snip_min.py in a subprocess, as a user runs it, on the suite's backend."""
    return run_python([os.path.join(ROOT, "snip_min.py"), "--device", device, *arguments], cwd=ROOT)


def error_lines(stderr):
    """stderr without the one-line notes about non-official data files."""
    return [line for line in stderr.splitlines() if not line.startswith("note:")]


def assert_refused(result, message):
    """Bad input: exit status 2, one line on stderr holding `message`, no traceback."""
    assert result.returncode == 2, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr, (
        result.stderr
    )


@pytest.mark.parametrize(
    "model,sparsity,kept", [("lenet300", 0.9, 26_661), ("lenet5", 0.99, 4_311)]
)
def test_a_run_prunes_trains_and_writes_its_results(
    tiny_mnist, tmp_path, device, model, sparsity, kept
):
    out = tmp_path / "out"
    result = run_cli(
        "--model",
        model,
        "--sparsity",
        str(sparsity),
        "--data-dir",
        tiny_mnist,
        "--epochs",
        "2",
        "--out",
        str(out),
        "--seed",
        "3",
        device=device,
    )
    assert result.returncode == 0, result.stderr
    assert error_lines(result.stderr) == []
    assert "test error:" in result.stdout and "->" in result.stdout
    results = json.loads((out / "results.json").read_text())
    for key in (
        "model",
        "dataset",
        "sparsity",
        "init",
        "seed",
        "params_total",
        "params_kept",
        "per_layer",
        "test_error",
        "train_seconds",
        "train_images_per_second",
    ):
        assert key in results, key
    assert results["model"] == model and results["seed"] == 3 and results["sparsity"] == sparsity
    assert results["augment"] is None  # the paper does not augment MNIST
    assert results["params_kept"] == kept
    assert sum(row["kept"] for row in results["per_layer"]) == kept
    assert 0.0 <= results["test_error"] <= 100.0 and results["train_images_per_second"] > 0
    with numpy.load(out / "masks.npz", allow_pickle=False) as masks:
        assert sorted(masks.files) == sorted(row["name"] for row in results["per_layer"])
        assert sum(int(masks[name].sum()) for name in masks.files) == kept
    assert not [name for name in os.listdir(out) if name.startswith(".")]  # no temporary files left


def test_the_synthetic_task_is_learned(tiny_mnist, device):
    result = run_cli(
        "--model",
        "lenet300",
        "--sparsity",
        "0.5",
        "--data-dir",
        tiny_mnist,
        "--epochs",
        "8",
        "--seed",
        "0",
        device=device,
    )
    assert result.returncode == 0, result.stderr
    error = float(result.stdout.split("test error: ")[1].split("%")[0])
    assert error < 20.0, result.stdout  # chance is 90%


def test_the_same_seed_gives_the_same_mask_and_loss_curve(tiny_mnist, tmp_path, device):
    runs = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        args = cli.parse_arguments(
            [
                "--model",
                "lenet5",
                "--sparsity",
                "0.95",
                "--data-dir",
                tiny_mnist,
                "--epochs",
                "2",
                "--seed",
                str(seed),
                "--out",
                str(tmp_path / name),
                "--device",
                device,
            ]
        )
        results = cli.run(args, log=lambda line: None)
        with numpy.load(tmp_path / name / "masks.npz", allow_pickle=False) as masks:
            runs.append((results["history"], {k: masks[k] for k in masks.files}))
    (history_a, masks_a), (history_b, masks_b), (_, masks_c) = runs
    assert all(numpy.array_equal(masks_a[k], masks_b[k]) for k in masks_a)
    assert not all(numpy.array_equal(masks_a[k], masks_c[k]) for k in masks_a)
    if device == "cpu":  # GPU reductions need not be bit-reproducible
        assert [h["train_loss"] for h in history_a] == [h["train_loss"] for h in history_b]
        assert [h["val_loss"] for h in history_a] == [h["val_loss"] for h in history_b]


# In the table below NOWHERE stands for a folder that does not exist, A_FILE for a file where
# a folder is expected; without --data-dir the tiny MNIST is used.
@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return str(path)


@pytest.mark.parametrize(
    "arguments,message",
    [
        (["--model", "resnet9000"], "invalid choice"),
        (["--sparsity", "1.0"], "sparsity must be a number in [0, 1)"),
        (["--sparsity", "-0.1"], "sparsity must be a number in [0, 1)"),
        (["--sparsity", "lots"], "sparsity must be a number in [0, 1)"),
        (["--weight-decay", "-1"], "expected a number >= 0"),
        (["--epochs", "0"], "positive integer"),
        (["--init", "zeros"], "invalid choice"),
        (["--lr", "nan"], "positive number"),
        (["--epochs", "2", "--iterations", "5"], "choose one of --epochs, --iterations"),
        (["--decay-every", "5"], "--decay-every goes with --iterations"),
        (["--seed", "-1"], "the seed must be an integer >= 0"),
        (["--batch-size", "0"], "expected a positive integer"),
        (["--momentum", "1.5"], "expected a number in [0, 1)"),
        (["--val-fraction", "1"], "expected a number in [0, 1)"),
        (["--lr", "inf"], "expected a positive number"),
        (["--checkpoint-every", "-3"], "expected a positive integer"),
        (["--prune", "everything"], "invalid choice"),
        (["--dataset", "imagenet"], "invalid choice"),
        (
            ["--model", "lenet5", "--dataset", "cifar10"],
            "model lenet5 is defined for mnist, fashion-mnist, not cifar10",
        ),
        (["--resume", "NOWHERE"], "no checkpoint at"),
        (["--out", "A_FILE"], "is a file, not a folder"),
        (["--out", "A_FILE/sub"], "cannot create the folder"),  # before any training
        (
            [
                "--resume",
                "NOWHERE",
                "--model",
                "lenet5",
                "--lr",
                "0.1",
            ],  # typed, even at the default
            "--model cannot be given",
        ),
        (["--data-dir", "A_FILE"], "is a file, not a folder"),
        (["--translate", "-1"], "expected an integer >= 0"),
        (["--translate", "1", "--no-augment"], "--translate augments and --no-augment does not"),
        (["--translate", "28"], "a move must be smaller than the images (28x28 pixels on mnist)"),
        (["--clip-norm", "-1"], "expected a number >= 0"),
        (["--method", "optimal-brain-damage"], "invalid choice"),
        (["--out", ""], "argument --out: expected a folder name, got ''"),
        (["--resume", " "], "argument --resume: expected a folder name, got ' '"),
        (["--resume", "A_FILE"], "is a file; --resume takes the folder of a run"),
        (["--model", "lenet5", "--sparsity", "0.9999999"], "--sparsity 0.9999999 keeps kappa"),
        (
            ["--model", "vgg-d", "--dataset", "cifar10", "--compact"],
            "cannot compact a network with batch norm",
        ),
    ],
)
def test_every_bad_input_gives_one_line_and_exit_status_2(
    arguments, message, tiny_mnist, tmp_path, a_file, device
):
    arguments = [
        a.replace("NOWHERE", str(tmp_path / "nowhere")).replace("A_FILE", a_file) for a in arguments
    ]
    if "--data-dir" not in arguments:
        arguments = ["--data-dir", tiny_mnist, *arguments]
    assert_refused(run_cli(*arguments, device=device), message)


def test_missing_data_gives_one_line_and_exit_status_2(tmp_path, device):
    result = run_cli("--data-dir", str(tmp_path / "nowhere"), "--no-download", device=device)
    assert_refused(result, "train-images-idx3-ubyte.gz is missing")


def test_corrupt_data_gives_one_line_naming_the_file(tiny_mnist, tmp_path, device):
    import shutil

    folder = tmp_path / "data"
    shutil.copytree(tiny_mnist, folder)
    broken = folder / "mnist" / "t10k-images-idx3-ubyte.gz"
    broken.write_bytes(broken.read_bytes()[:100])
    result = run_cli("--data-dir", str(folder), "--no-download", device=device)
    assert_refused(result, str(broken))


def test_a_batch_larger_than_the_training_set_is_refused(tiny_mnist, device):
    result = run_cli("--data-dir", tiny_mnist, "--batch-size", "5000", device=device)
    assert_refused(result, "--batch-size 5000")


def test_a_diverging_run_stops_with_one_line_and_exit_status_1(tiny_mnist, tmp_path, device):
    result = run_cli(
        "--data-dir",
        tiny_mnist,
        "--model",
        "lenet300",
        "--lr",
        "1e30",
        "--epochs",
        "3",
        "--out",
        str(tmp_path / "out"),
        device=device,
    )
    assert result.returncode == 1
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and "training diverged" in lines[0], result.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())  # no NaN results
    assert results["diverged"] is True and results["test_error"] is None  # written as if fine


def test_gpu_without_cupy_gives_one_line_and_exit_status_2(tiny_mnist):
    # a plain environment, without the strict stand-in even under --device strict
    if importlib.util.find_spec("cupy") is not None and not helpers.USING_STAND_IN:
        pytest.skip("CuPy is installed here")
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "snip_min.py"),
            "--device",
            "gpu",
            "--data-dir",
            tiny_mnist,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert_refused(result, "CuPy")


@pytest.mark.parametrize("model", ["resnet18", "squeezenet-bypass", "densenet121", "wrn-16-8"])
def test_a_cifar_model_runs_end_to_end_on_a_generated_cifar10(model, tiny_cifar, tmp_path, device):
    out = tmp_path / "out"
    result = run_cli(
        "--model",
        model,
        "--sparsity",
        "0.95",
        "--data-dir",
        tiny_cifar,
        "--iterations",
        "2",
        "--batch-size",
        "8",
        "--out",
        str(out),
        device=device,
    )
    assert result.returncode == 0, result.stderr
    assert (
        "augmented: random flips, moves of up to 4 pixels" in result.stdout
        and "test error:" in result.stdout
    )
    results = json.loads((out / "results.json").read_text())
    assert (
        results["dataset"] == "cifar10"
        and results["iterations"] == 2
        and results["batch_size"] == 8
    )
    assert results["augment"] == {"flip": True, "max_shift": 4}


@pytest.mark.parametrize(
    "dataset,flags,expected",
    [
        ("mnist", [], None),  # the paper does not augment MNIST
        ("mnist", ["--translate", "0"], None),
        ("mnist", ["--translate", "3"], (False, 3)),  # moves, never mirrored digits
        ("cifar10", [], (True, 4)),  # the authors' flips and moves
        ("cifar10", ["--translate", "0"], (True, 0)),  # flips only
        ("cifar10", ["--translate", "2"], (True, 2)),
        ("cifar10", ["--no-augment"], None),
        ("tiny-imagenet", ["--translate", "8"], (True, 8)),
    ],
)
def test_the_flags_choose_the_augmentation(dataset, flags, expected):
    args = cli.parse_arguments(flags)
    augment = cli.augmentation(args, dataset)
    assert augment == (None if expected is None else data.Augmentation(*expected))


def test_translate_changes_the_training_and_translate_0_does_not(tiny_mnist, device):
    histories = {}
    for name, flags in (("none", []), ("0", ["--translate", "0"]), ("1", ["--translate", "1"])):
        args = cli.parse_arguments(
            [
                "--model",
                "lenet300",
                "--data-dir",
                tiny_mnist,
                "--epochs",
                "2",
                "--device",
                device,
                *flags,
            ]
        )
        histories[name] = [h["train_loss"] for h in cli.run(args, log=lambda line: None)["history"]]
    assert histories["0"] == histories["none"] and histories["1"] != histories["none"]


def test_translate_moves_mnist_digits_without_flipping_them(tiny_mnist, tmp_path, device):
    result = run_cli(
        "--model",
        "lenet300",
        "--data-dir",
        tiny_mnist,
        "--iterations",
        "3",
        "--translate",
        "2",
        "--out",
        str(tmp_path),
        device=device,
    )
    assert result.returncode == 0, result.stderr
    assert "augmented: moves of up to 2 pixels" in result.stdout and "flips" not in result.stdout
    assert json.loads((tmp_path / "results.json").read_text())["augment"] == {
        "flip": False,
        "max_shift": 2,
    }


def test_vgg_d_at_95_percent_prints_15245130_to_762257(tiny_cifar, device):
    result = run_cli(
        "--model",
        "vgg-d",
        "--dataset",
        "cifar10",
        "--sparsity",
        "0.95",
        "--data-dir",
        tiny_cifar,
        "--iterations",
        "1",
        "--batch-size",
        "4",
        device=device,
    )
    assert result.returncode == 0, result.stderr
    assert "parameters: 15,245,130 -> 762,257 (95.00% pruned)" in result.stdout


def test_a_model_with_a_dataset_it_is_not_defined_for_gives_one_line(tiny_mnist, device):
    result = run_cli(
        "--model", "resnet18", "--dataset", "mnist", "--data-dir", tiny_mnist, device=device
    )
    assert_refused(result, "resnet18 is defined for cifar10, not mnist")


def test_fashion_mnist_trains_the_mnist_models_under_its_own_name(tmp_path, device):
    data.write_synthetic_dataset(
        "fashion-mnist", tmp_path / "data", train_count=300, test_count=100
    )
    out = tmp_path / "out"
    result = run_cli(
        "--model",
        "lenet300",
        "--sparsity",
        "0.98",
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        str(tmp_path / "data"),
        "--iterations",
        "3",
        "--out",
        str(out),
        device=device,
    )
    assert result.returncode == 0, result.stderr
    assert "data: Fashion-MNIST, 300 training images; 270 for training" in result.stdout
    assert (
        "Fashion-MNIST, 300 training images" in result.stdout.splitlines()[-2]
    )  # the test error's line
    results = json.loads((out / "results.json").read_text())
    assert (
        results["dataset"] == "fashion-mnist"
        and results["data"] == "Fashion-MNIST, 300 training images"
    )
    assert results["params_kept"] == 5_332 and results["augment"] is None
    refused = run_cli(
        "--model",
        "vgg-d",
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        str(tmp_path / "data"),
        device=device,
    )
    assert_refused(refused, "vgg-d is defined for cifar10, tiny-imagenet, not fashion-mnist")


def test_cifar_defaults_are_the_papers(tiny_cifar):
    args = cli.parse_arguments(["--model", "vgg-d", "--data-dir", tiny_cifar])
    assert cli.training_schedule(args, "cifar10", steps_per_epoch=10) == (
        150_000,
        [30_000, 60_000, 90_000, 120_000],
    )
    assert cli.PAPER_SETUP["cifar10"]["batch_size"] == 128
    args = cli.parse_arguments(["--model", "lenet5", "--paper-schedule"])
    assert cli.training_schedule(args, "mnist", steps_per_epoch=10) == (
        100_000,
        [25_000, 50_000, 75_000],
    )
    args = cli.parse_arguments(["--model", "lenet5"])
    assert cli.training_schedule(args, "mnist", steps_per_epoch=10) == (12_000, [6_000, 9_000])


def test_random_pruning_is_the_baseline_method(tiny_mnist, tmp_path, device):
    result = run_cli(
        "--model",
        "lenet300",
        "--sparsity",
        "0.9",
        "--method",
        "random",
        "--data-dir",
        tiny_mnist,
        "--iterations",
        "2",
        "--out",
        str(tmp_path / "random"),
        device=device,
    )
    assert result.returncode == 0, result.stderr
    assert "random pruning (the baseline, not SNIP): lenet300, sparsity 0.9" in result.stdout
    results = json.loads((tmp_path / "random" / "results.json").read_text())
    assert results["method"] == "random" and results["params_kept"] == sm.kappa_for(0.9, 266_610)
    kept_biases = sum(row["kept"] for row in results["per_layer"] if row["name"].endswith(".bias"))
    assert kept_biases > 0  # SNIP would prune every (zero) bias; chance keeps about 10%
