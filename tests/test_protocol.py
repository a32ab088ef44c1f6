"""protocol.py: --protocol and its pieces (--init lecun, --two-draws, --momentum, --constant-lr,
--test-every), and --train-images."""

import dataclasses
import json
import math
import types

import numpy
import pytest

import data
import models
import snip_min as sm
from extensions import checkpoints, cli, protocol
from helpers import run_python
from test_cli import assert_refused
from test_reliability import stop_at


def arguments(*flags):
    return cli.parse_arguments(["--model", "lenet300", *flags])


# --- the switch and its pieces --------------------------------------------------------------------


def test_each_protocol_sets_its_pieces():
    ours, authors = arguments(), arguments("--protocol", "authors")
    assert (ours.init, ours.two_draws, ours.momentum, ours.constant_lr, ours.test_every) == (
        "vs-h",
        False,
        0.9,
        False,
        0,
    )
    assert (
        authors.init,
        authors.two_draws,
        authors.momentum,
        authors.constant_lr,
        authors.test_every,
    ) == ("lecun", True, 0.0, True, 1000)
    assert ours.lr == authors.lr == 0.1 and ours.weight_decay == authors.weight_decay == 5e-4


def test_a_flag_beside_the_protocol_wins():
    args = arguments(
        "--protocol",
        "authors",
        "--momentum",
        "0.9",
        "--no-two-draws",
        "--init",
        "vs-x",
        "--no-constant-lr",
        "--test-every",
        "0",
    )
    assert (args.init, args.two_draws, args.momentum, args.constant_lr, args.test_every) == (
        "vs-x",
        False,
        0.9,
        False,
        0,
    )
    args = arguments("--two-draws", "--constant-lr", "--test-every", "500")
    assert (args.init, args.two_draws, args.momentum, args.constant_lr, args.test_every) == (
        "vs-h",
        True,
        0.9,
        True,
        500,
    )


def settings(*flags):
    args = cli.parse_arguments(list(flags))
    return args.clip_norm, args.paper_schedule, protocol.departures(args)


def test_clipping_is_lenet5s_default_only_and_the_paper_protocol_is_the_papers_text():
    """Experiment I's choice: LeNet-5-Caffe clips at norm 1 by default, the others do not;
    --protocol paper and authors never clip; a --clip-norm given wins, 0 meaning never; and
    every run that departs from the paper's text names the flags."""
    assert settings("--model", "lenet5") == (1.0, False, ["--clip-norm 1"])
    assert settings("--model", "lenet300") == (None, False, [])
    assert settings("--model", "lstm-s") == (None, False, [])
    assert settings("--model", "lenet5", "--protocol", "paper") == (None, True, [])
    assert settings("--model", "lenet5", "--protocol", "paper", "--iterations", "50") == (
        None,
        False,
        [],
    )
    assert settings("--model", "lenet5", "--protocol", "authors") == (None, False, [])
    assert settings("--model", "lenet5", "--clip-norm", "0") == (None, False, [])
    assert settings("--model", "lenet300", "--clip-norm", "2", "--warmup", "5")[2] == [
        "--clip-norm 2",
        "--warmup 5",
    ]
    paper = cli.parse_arguments(["--model", "lenet5", "--protocol", "paper"])
    ours = cli.parse_arguments(["--model", "lenet5"])
    for piece in ("init", "two_draws", "momentum", "constant_lr", "lr", "weight_decay", "warmup"):
        assert getattr(paper, piece) == getattr(ours, piece), piece
    line = protocol.departure_line(ours)
    assert "--clip-norm 1, LeNet-5-Caffe's default" in line and "--clip-norm 0 turns it off" in line
    assert protocol.departure_line(paper) is None
    typed = cli.parse_arguments(["--model", "lenet5", "--protocol", "authors", "--clip-norm", "1"])
    assert protocol.departure_line(typed) == "departs from the paper's text: --clip-norm 1"


def test_a_run_records_its_departures_and_a_divergence_names_the_models_remedy(
    tiny_mnist, tmp_path
):
    from extensions import failures

    flags = ["--model", "lenet5", "--iterations", "3", "--data-dir", tiny_mnist]
    lines = []
    results = cli.run(cli.parse_arguments([*flags, "--out", str(tmp_path / "a")]), lines.append)
    assert results["clip_norm"] == 1.0 and results["departs_from_paper"] == ["--clip-norm 1"]
    assert any(line.startswith("departs from the paper's text: --clip-norm 1") for line in lines)
    error = checkpoints.DivergedRun("the loss became nan by iteration 20", None, 0.1, "lenet5")
    assert failures.divergence_message(error).endswith(
        "LeNet-5-Caffe trains at every sparsity with --clip-norm 1, its default, in a new run "
        "(this run had no clipping; docs/choices.md)"
    )
    clipped = checkpoints.DivergedRun("nan", None, 0.1, "lenet5", clip_norm=1.0)
    elsewhere = checkpoints.DivergedRun("nan", None, 0.1, "lenet300")
    for message in map(failures.divergence_message, (clipped, elsewhere)):
        assert "its default" not in message and "--lr 0.01" in message


@pytest.mark.parametrize(
    "flags, complaint",
    [
        (
            ["--protocol", "authors", "--sanity-check", "reinit"],
            "--sanity-check reinit would draw a third",
        ),
        (["--protocol", "theirs"], "argument --protocol: invalid choice"),
        (["--test-every", "-1"], "--test-every"),
        (["--train-images", "0"], "expected a positive integer"),
    ],
)
def test_bad_protocol_flags_give_one_line_and_status_2(flags, complaint):
    assert_refused(run_python(["snip_min.py", "--model", "lenet300", *flags]), complaint)


def test_constant_lr_removes_every_decay_and_nothing_else():
    for flags in ([], ["--iterations", "100", "--decay-every", "25"], ["--epochs", "8"]):
        decayed = cli.training_schedule(arguments(*flags), "mnist", 10)
        constant = cli.training_schedule(arguments(*flags, "--constant-lr"), "mnist", 10)
        assert decayed[1] and constant == (decayed[0], [])
    assert cli.training_schedule(
        arguments("--iterations", "100", "--decay-every", "25"), "mnist", 10
    ) == (100, [25, 50, 75])


# --- two draws ------------------------------------------------------------------------------------


def test_scoring_biases_are_drawn_like_weights_of_fan_n_after_the_same_weights():
    plain, scoring = models.build("lenet300"), models.build("lenet300")
    sm.initialise(plain, "lecun", numpy.random.default_rng(3))
    rng = numpy.random.default_rng(3)
    sm.initialise(scoring, "lecun", rng)
    protocol.draw_scoring_biases(scoring, "lecun", rng)
    for p, q in zip(sm.parameters_of(plain), sm.parameters_of(scoring)):
        if p.kind == "bias":
            bound = 2 * math.sqrt(1 / p.shape[0]) / sm.TRUNCATED_STD  # lecun's truncation
            values = sm.to_host(q.value)
            assert (sm.to_host(p.value) == 0).all() and (values != 0).all()
            assert numpy.abs(values).max() <= bound + 1e-6
            assert values.std() == pytest.approx(math.sqrt(1 / p.shape[0]), rel=0.5)
        else:
            assert (
                sm.to_host(p.value) == sm.to_host(q.value)
            ).all()  # the mask's weights are the same


def two_draw_pruned(seed=0, keep_scoring_copy=True):
    """(scoring copy's values, the model with the training copy, gated) for LeNet-300-100 at 98%."""
    model = models.build("lenet300")
    rng = numpy.random.default_rng(seed)
    sm.initialise(model, "lecun", rng)
    protocol.draw_scoring_biases(model, "lecun", rng)
    images = sm.xp.asarray(rng.standard_normal((20, 28, 28, 1)), dtype=sm.xp.float32)
    labels = sm.xp.asarray(rng.integers(0, 10, 20))
    gated = sm.snip(model, images, labels, 0.98)
    scoring = [sm.to_host(p.value) for p in sm.parameters_of(model)] if keep_scoring_copy else None
    protocol.draw_training_copy(model, gated, "lecun", seed, log=lambda line: None)
    return scoring, model, gated


def test_the_training_copy_is_fresh_with_zero_biases_under_the_scoring_copys_mask():
    scoring, model, gated = two_draw_pruned()
    assert sum(int(sm.to_host(p.mask).sum()) for p in gated) == 5_332
    for p, before in zip(sm.parameters_of(model), scoring):
        value, mask = sm.to_host(p.value), sm.to_host(p.mask).astype(bool)
        assert (value[~mask] == 0).all()  # pruned entries exactly zero
        if p.kind == "bias":
            assert (value == 0).all()  # weights_ap's biases start at zero
        else:
            kept = mask & (before != 0)
            assert (
                kept.any() and (value[kept] != before[kept]).all()
            )  # a fresh draw, not the scored one
    biases_kept = sum(int(sm.to_host(p.mask).sum()) for p in gated if p.kind == "bias")
    assert biases_kept > 0  # drawn biases score above zero, so some are kept (as in the code)


def test_two_draws_are_the_same_for_the_same_seed_and_differ_between_seeds():
    first, second, other = (two_draw_pruned(seed)[1] for seed in (0, 0, 1))
    for p, q, r in zip(*(sm.parameters_of(m) for m in (first, second, other))):
        assert (sm.to_host(p.value) == sm.to_host(q.value)).all()
    assert any(
        (sm.to_host(p.value) != sm.to_host(r.value)).any()
        for p, r in zip(sm.parameters_of(first), sm.parameters_of(other))
    )


def test_two_draws_neither_wait_for_the_device_nor_slow_a_training_step(stand_in):
    two_draw_pruned(keep_scoring_copy=False)
    with stand_in.counting() as record:
        _, model, gated = two_draw_pruned(keep_scoring_copy=False)
    assert record.syncs == 0, record.summary()
    images = sm.xp.asarray(
        numpy.random.default_rng(0).standard_normal((20, 28, 28, 1)), dtype=sm.xp.float32
    )
    labels = sm.xp.asarray(numpy.arange(20) % 10)
    optimiser = sm.SGD(sm.parameters_of(model), momentum=0.0)
    sm.train_step(model, optimiser, images, labels, 0.1)
    with stand_in.counting() as record:
        sm.train_step(model, optimiser, images, labels, 0.1)
    assert record.syncs == 0 and record.transfers == 0, record.summary()


# --- a run under the authors' protocol ------------------------------------------------------------


def run_authors(data_dir, out, device, *extra):
    lines = []
    args = cli.parse_arguments(
        [
            "--model",
            "lenet300",
            "--sparsity",
            "0.98",
            "--data-dir",
            str(data_dir),
            "--batch-size",
            "25",
            "--iterations",
            "12",
            "--test-every",
            "2",
            "--protocol",
            "authors",
            "--out",
            str(out),
            "--device",
            device,
            *extra,
        ]
    )
    return cli.run(args, log=lines.append), lines


def test_an_authors_run_records_its_test_checkpoints_and_the_best_of_the_last_five(
    tiny_mnist, tmp_path, device
):
    results, lines = run_authors(tiny_mnist, tmp_path, device)
    assert results["params_kept"] == 5_332
    assert [i for i, _ in results["test_checkpoints"]] == [2, 4, 6, 8, 10, 12]
    assert results["best_of_last_five"] == min(e for _, e in results["test_checkpoints"][1:])
    assert results["test_checkpoints"][-1][1] == pytest.approx(results["test_error"])
    with open(tmp_path / "results.json") as f:
        saved = json.load(f)
    assert (
        saved["protocol"],
        saved["init"],
        saved["momentum"],
        saved["two_draws"],
        saved["constant_lr"],
    ) == ("authors", "lecun", 0.0, True, True)
    assert {record["lr"] for record in saved["history"]} == {0.1}  # no decay
    assert any(
        line.startswith(
            "the authors' figure: best test error of the checkpoints at iterations 4-12"
        )
        for line in lines
    )
    assert any(line.startswith("two draws:") for line in lines)


def test_the_test_checkpoints_survive_a_checkpoint_and_resume():
    state = sm.TrainingState(numpy.random.default_rng(0))
    test_errors = [[1000, 1.5], [2000, 1.25]]
    record = json.loads(json.dumps(checkpoints.state_record(state, test_errors)))
    assert checkpoints.saved_test_errors(record) == [
        [1000, 1.5],
        [2000, 1.25],
    ]
    del record["test_checkpoints"]  # a checkpoint from before --test-every
    assert checkpoints.saved_test_errors(record) == []


def test_the_test_checkpoints_of_a_run_stopped_and_resumed_are_those_of_a_run_left_alone(
    tiny_mnist, tmp_path, device, monkeypatch
):
    whole, _ = run_authors(tiny_mnist, tmp_path / "whole", device, "--checkpoint-every", "3")
    stop_at(monkeypatch, 7)  # after the checkpoints at 2, 4 and 6 were measured
    with pytest.raises(sm.Interrupted, match="stopped at iteration 7"):
        run_authors(tiny_mnist, tmp_path / "halves", device, "--checkpoint-every", "3")
    monkeypatch.undo()
    saved = checkpoints.read_checkpoint(str(tmp_path / "halves" / checkpoints.CHECKPOINT_FILE))
    assert [i for i, _ in saved["state"]["test_checkpoints"]] == [2, 4, 6]
    resumed = cli.run(
        cli.parse_arguments(["--resume", str(tmp_path / "halves")]), log=lambda line: None
    )
    assert [i for i, _ in resumed["test_checkpoints"]] == [2, 4, 6, 8, 10, 12]
    assert resumed["best_of_last_five"] == min(e for _, e in resumed["test_checkpoints"][-5:])
    if device != "gpu":  # (GPU reductions need not be bit-reproducible)
        assert resumed["test_checkpoints"] == whole["test_checkpoints"]


def test_test_evaluations_are_not_training_time(tiny_mnist, tmp_path, device, monkeypatch):
    # a clock that moves 1 s in each training step and 100 s in each evaluation, and nowhere else
    clock = [0.0]
    real_step, real_evaluate = sm.train_step, sm.evaluate

    def step(*args, **kwargs):
        clock[0] += 1.0
        return real_step(*args, **kwargs)

    def evaluate(*args, **kwargs):
        clock[0] += 100.0
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(sm, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(sm, "train_step", step)
    monkeypatch.setattr(sm, "evaluate", evaluate)
    results, _ = run_authors(tiny_mnist, tmp_path, device)  # 12 steps, 6 test checkpoints
    assert len(results["test_checkpoints"]) == 6
    assert results["train_seconds"] == 12.0


def test_best_of_last_takes_the_last_five_only():
    records = [[i, e] for i, e in enumerate([0.5, 3.0, 2.0, 4.0, 2.5, 2.2, 2.9])]
    assert protocol.best_of_last(records) == 2.0 and protocol.best_of_last([]) is None


# --- the first N training images ------------------------------------------------------------------


def test_first_training_images_keeps_them_with_their_own_statistics(tiny_mnist):
    whole = data.load_dataset("mnist", tiny_mnist, download=False, notice=lambda line: None)
    part = data.first_training_images(whole, 120)
    assert (part.train_images == whole.train_images[:120]).all()
    assert (part.train_labels == whole.train_labels[:120]).all() and (
        part.test_images == whole.test_images
    ).all()
    assert (part.mean, part.std) == data.pixel_statistics(whole.train_images[:120], source="")
    assert "the first 120 of 300 training images" in part.description
    assert data.first_training_images(whole, 300) is whole
    with pytest.raises(data.DataError, match="--train-images 301"):
        data.first_training_images(whole, 301)
    other = dataclasses.replace(
        whole, description="MNIST as written by hand"
    )  # no "300 training images"
    assert (
        data.first_training_images(other, 120).description
        == "MNIST as written by hand (the first 120 of 300 training images)"
    )


def test_train_images_from_the_command_line(tiny_mnist, tmp_path, device):
    args = cli.parse_arguments(
        [
            "--model",
            "lenet300",
            "--sparsity",
            "0.98",
            "--data-dir",
            str(tiny_mnist),
            "--batch-size",
            "25",
            "--iterations",
            "2",
            "--train-images",
            "200",
            "--out",
            str(tmp_path),
            "--device",
            device,
        ]
    )
    results = cli.run(args, log=lambda line: None)
    assert (
        results["train_images"] == 200 and "the first 200 of 300 training images" in results["data"]
    )
    refused = run_python(
        [
            "snip_min.py",
            "--model",
            "lenet300",
            "--data-dir",
            str(tiny_mnist),
            "--no-download",
            "--train-images",
            "301",
            "--iterations",
            "1",
        ]
    )
    assert_refused(refused, "--train-images 301")
