"""Every experiment script runs end to end at a tiny size on a generated MNIST and writes
sane numbers and figures. The heavy runs that fill the README are not part of the suite."""

import csv
import importlib
import json
import math
import os
import sys

import numpy
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))


def experiment(name):
    return importlib.import_module(name)


def rows_of(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", path
    assert 1_000 < os.path.getsize(path) < 400_000, path


def figures_expected():
    return importlib.util.find_spec("matplotlib") is not None


def test_sparsity_sweep_compares_snip_with_random_pruning(tiny_mnist, tmp_path, device):
    out = tmp_path / "a"
    assert experiment("sparsity_sweep").main(
        ["--data-dir", tiny_mnist, "--out", str(out), "--device", device, "--epochs", "1", "--seeds", "2",
         "--sparsities", "0", "0.9"]) == 0
    rows = rows_of(out / "sweep.csv")
    assert len(rows) == 2 * 2 * 2 * 2                                     # models x sparsities x methods x seeds
    assert {r["method"] for r in rows} == {"snip", "random"}
    for r in rows:
        assert 0 <= float(r["test_error"]) <= 100 or r["diverged"] == "True"
        expected = {"lenet300": 266_610, "lenet5": 431_080}[r["model"]]
        assert int(r["params_kept"]) == round((1 - float(r["sparsity"])) * expected)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["models"]) == {"lenet300", "lenet5"} and "MNIST" in summary["data"]
    if figures_expected():
        assert_png(out / "sweep-lenet300.png")
        assert_png(out / "sweep-lenet5.png")


def test_kept_connections_differ_between_digit_classes(tiny_mnist, tmp_path, device):
    out = tmp_path / "c"
    assert experiment("kept_connections").main(
        ["--data-dir", tiny_mnist, "--out", str(out), "--device", device, "--batch-size", "10"]) == 0
    with numpy.load(out / "maps.npz", allow_pickle=False) as maps:
        assert sorted(maps.files) == sorted([str(d) for d in range(10)] + ["mixed"])
        stacked = numpy.stack([maps[str(d)] for d in range(10)])
    assert stacked.shape == (10, 28, 28) and stacked.min() >= 0 and stacked.max() <= 300
    assert len({m.tobytes() for m in stacked}) == 10                       # every class keeps its own
    summary = json.loads((out / "summary.json").read_text())
    assert summary["maps_differ_between_classes"]
    # the generated digits are bright squares at class-dependent places: the maps must find them
    assert summary["classes_most_similar_to_their_own_digit"] >= 8
    if figures_expected():
        assert_png(out / "kept_connections.png")


def test_data_and_initialisation_experiment_writes_both_parts(tiny_mnist, tmp_path, device):
    out = tmp_path / "d"
    assert experiment("data_and_init").main(
        ["--data-dir", tiny_mnist, "--out", str(out), "--device", device, "--epochs", "1", "--seeds", "1",
         "--batch-sizes", "1", "10"]) == 0
    batch_rows = rows_of(out / "batch.csv")
    assert {(r["composition"], r["batch_size"]) for r in batch_rows} == {
        ("random", "1"), ("random", "10"), ("one class", "1"), ("one class", "10")}
    init_rows = rows_of(out / "init.csv")
    assert {(r["model"], r["init"]) for r in init_rows} == {
        (m, i) for m in ("lenet300", "lenet5") for i in ("rn", "tn", "vs-x", "vs-h")}
    table = (out / "init_table.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "±" in line]
    assert len(rows) == 4 and all(line.count("±") == 2 for line in rows) and "VS-H (He)" in table
    if figures_expected():
        assert_png(out / "scoring_batch.png")
        assert_png(out / "initialisation.png")


def test_random_labels_experiment_records_four_loss_curves_per_network(tiny_mnist, tmp_path, device):
    out = tmp_path / "e"
    assert experiment("random_labels").main(
        ["--data-dir", tiny_mnist, "--out", str(out), "--device", device, "--models", "lenet300",
         "--epochs", "4", "--train-images", "120", "--window", "2"]) == 0
    rows = rows_of(out / "losses.csv")
    runs = {r["run"] for r in rows}
    assert runs == {"dense, true labels", "dense, random labels", "pruned, true labels", "pruned, random labels"}
    assert all(math.isfinite(float(r["loss"])) and float(r["loss"]) >= 0 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    kept = {run["run"]: run["params_kept"] for run in summary["runs"]}
    assert kept["dense, true labels"] == 266_610 and kept["pruned, true labels"] == 5_332
    if figures_expected():
        assert_png(out / "random_labels-lenet300.png")


def test_zoo_table_has_a_row_per_model_and_takes_errors_from_results_files(tmp_path):
    zoo = experiment("zoo_table")
    results = tmp_path / "results" / "run"
    results.mkdir(parents=True)
    (results / "results.json").write_text(json.dumps(
        {"model": "vgg-d", "dataset": "cifar10", "sparsity": 0.95, "test_error": 7.25, "seed": 0,
         "data": "CIFAR-10, 50,000 training images"}))
    # runs augmented otherwise than by the authors are other experiments, left out of the table
    # (older files record the augmentation as true or false)
    for name, model, dataset, error, augment in (
            ("mnist-paper", "lenet300", "mnist", 3.5, None),
            ("mnist-old-file", "lenet300", "mnist", 3.6, False),
            ("mnist-translated", "lenet300", "mnist", 2.9, {"flip": False, "max_shift": 1}),
            ("cifar-paper", "resnet18", "cifar10", 8.5, {"flip": True, "max_shift": 4}),
            ("cifar-old-file", "resnet18", "cifar10", 8.6, True),
            ("cifar-not-augmented", "resnet18", "cifar10", 11.0, None)):
        (tmp_path / "results" / name).mkdir()
        (tmp_path / "results" / name / "results.json").write_text(json.dumps(
            {"model": model, "dataset": dataset, "sparsity": 0.98 if model == "lenet300" else 0.95,
             "test_error": error, "seed": 0, "data": "some data", "augment": augment}))
    rows = zoo.table_rows(str(tmp_path / "results"))
    assert len(rows) == 25
    assert next(r for r in rows if r["model"] == "lenet300")["test_errors"] == [3.6, 3.5]
    assert next(r for r in rows if r["model"] == "resnet18")["test_errors"] == [8.6, 8.5]
    vgg = next(r for r in rows if r["model"] == "vgg-d" and r["dataset"] == "cifar10")
    assert vgg["params_before"] == 15_245_130 and vgg["params_after"] == 762_257
    assert vgg["test_errors"] == [7.25]
    text = zoo.markdown(rows)
    assert "15,245,130 → 762,257 | 7.25%, CIFAR-10, 50,000 training images" in text
    assert text.count("\n") == 26
