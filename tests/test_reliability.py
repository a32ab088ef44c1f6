"""Failures a long run meets: interruption, divergence, damaged checkpoints, degenerate masks,
running out of memory. Each must end in one clear line and lose nothing already computed."""

import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

import data
import models
import snip_min as sm
from extensions import checkpoints, cli
from helpers import child_environment, run_python
from test_cli import ROOT, assert_refused, error_lines, run_cli


def quiet(line):
    pass


def checkpoint_arrays(folder):
    """Every array of folder/checkpoint.npz except the JSON settings, as host arrays."""
    with numpy.load(
        os.path.join(folder, checkpoints.CHECKPOINT_FILE), allow_pickle=False
    ) as archive:
        return {name: archive[name] for name in archive.files if name != "settings"}


def arguments(data_dir, out, device, *extra):
    return cli.parse_arguments(
        [
            "--model",
            "lenet5",
            "--sparsity",
            "0.95",
            "--data-dir",
            data_dir,
            "--batch-size",
            "25",
            "--iterations",
            "40",
            "--decay-every",
            "15",
            "--checkpoint-every",
            "7",
            "--seed",
            "4",
            "--out",
            str(out),
            "--device",
            device,
            *extra,
        ]
    )


def stop_at(monkeypatch, iteration):
    """Make the training loop receive a stop request (as from Ctrl-C) during `iteration`."""
    original, calls = sm.train_step, [0]

    def step(*args, **kwargs):
        calls[0] += 1
        if calls[0] == iteration:
            sm.request_stop()
        return original(*args, **kwargs)

    monkeypatch.setattr(sm, "train_step", step)


# ------------------------------------------------------------------------------------------
# Checkpoints and resuming
# ------------------------------------------------------------------------------------------


# 270 training images in batches of 25: 11 batches an epoch, so 11 ends an epoch, 5 and 23
# are inside one, and 40 is the last iteration.
@pytest.mark.parametrize(
    "stop,extra",
    [(5, []), (11, []), (23, []), (40, []), (16, ["--translate", "2", "--lr", "0.01"])],
)  # an augmented epoch's moves too
def test_a_resumed_run_ends_bit_identical_to_an_uninterrupted_one(
    tiny_mnist, tmp_path, device, backend, monkeypatch, stop, extra
):
    whole = cli.run(arguments(tiny_mnist, tmp_path / "whole", device, *extra), log=quiet)

    stop_at(monkeypatch, stop)
    with pytest.raises(sm.Interrupted, match=f"stopped at iteration {stop}"):
        cli.run(arguments(tiny_mnist, tmp_path / "halves", device, *extra), log=quiet)
    saved = checkpoints.read_checkpoint(str(tmp_path / "halves" / checkpoints.CHECKPOINT_FILE))
    assert saved["state"]["iteration"] == stop
    monkeypatch.undo()

    if extra:
        assert saved["moves"] is not None and saved["moves"].shape == (3, len(saved["order"]))
    resumed = cli.run(cli.parse_arguments(["--resume", str(tmp_path / "halves")]), log=quiet)
    assert resumed["iterations"] == whole["iterations"] == 40
    if backend == "gpu":  # GPU reductions need not be bit-reproducible (the stand-in's are)
        return
    a, b = checkpoint_arrays(tmp_path / "whole"), checkpoint_arrays(tmp_path / "halves")
    assert sorted(a) == sorted(b)
    for name in a:  # weights, batch statistics, masks, momentum buffers
        assert numpy.array_equal(a[name], b[name]), name
    assert (
        resumed["test_error"] == whole["test_error"] and resumed["test_loss"] == whole["test_loss"]
    )
    assert [h["train_loss"] for h in resumed["history"]] == [
        h["train_loss"] for h in whole["history"]
    ]


def test_a_checkpoint_holds_everything_named_and_pruned_weights_stay_zero(
    tiny_mnist, tmp_path, device
):
    cli.run(arguments(tiny_mnist, tmp_path, device), log=quiet)
    contents = checkpoints.read_checkpoint(str(tmp_path / checkpoints.CHECKPOINT_FILE))
    assert contents["state"]["iteration"] == 40 and contents["args"]["model"] == "lenet5"
    assert set(contents["mask"]) <= set(contents["param"]) == set(contents["velocity"])
    for name, mask in contents["mask"].items():
        assert mask.dtype == bool
        assert (
            not contents["param"][name][~mask].any() and not contents["velocity"][name][~mask].any()
        )
    kept = sum(int(mask.sum()) for mask in contents["mask"].values())
    assert kept == sm.kappa_for(0.95, 431_080)


def test_ctrl_c_saves_a_loadable_checkpoint_and_the_run_can_continue(tiny_mnist, tmp_path, device):
    out = tmp_path / "run"
    command = [
        sys.executable,
        os.path.join(ROOT, "snip_min.py"),
        "--model",
        "lenet300",
        "--sparsity",
        "0.9",
        "--data-dir",
        tiny_mnist,
        "--batch-size",
        "10",
        "--iterations",
        "1000000",
        "--checkpoint-every",
        "5",
        "--out",
        str(out),
        "--device",
        device,
    ]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_environment(PYTHONUNBUFFERED="1"),
    )
    deadline = time.time() + 120
    while not (out / checkpoints.CHECKPOINT_FILE).exists() and time.time() < deadline:
        time.sleep(0.05)  # training has begun once the first checkpoint exists
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    lines = [
        line for line in error_lines(stderr) if not line.startswith("stopping after this step")
    ]
    assert len(lines) == 1 and f"--resume {out}" in lines[0] and "Traceback" not in stderr, stderr

    contents = checkpoints.read_checkpoint(str(out / checkpoints.CHECKPOINT_FILE))
    stopped_at = contents["state"]["iteration"]
    assert stopped_at >= 5 and contents["args"]["iterations"] == 1_000_000

    model = models.build("lenet300", "mnist")
    checkpoints.restore_checkpoint(contents, model, sm.prunable_parameters(model))
    assert contents["order"] is not None and contents["state"]["position"] == 10 * (
        stopped_at % 27 or 27
    )


def test_resuming_continues_from_the_saved_iteration(tiny_mnist, tmp_path, device, monkeypatch):
    stop_at(monkeypatch, 9)
    with pytest.raises(sm.Interrupted):
        cli.run(arguments(tiny_mnist, tmp_path, device), log=quiet)
    monkeypatch.undo()
    lines = []
    cli.run(cli.parse_arguments(["--resume", str(tmp_path)]), log=lines.append)
    assert any(
        f"resuming from {tmp_path / checkpoints.CHECKPOINT_FILE} at iteration 9" in line
        for line in lines
    )
    assert (tmp_path / "results.json").exists()
    assert not [
        name for name in os.listdir(tmp_path) if name.startswith(".")
    ]  # no temporaries left


def test_a_model_with_batch_norm_resumes_bit_identically(tiny_cifar, tmp_path, device, monkeypatch):
    """Batch norm's running statistics travel in the checkpoint (they have no momentum)."""

    def args(out):
        return cli.parse_arguments(
            [
                "--model",
                "squeezenet",
                "--sparsity",
                "0.9",
                "--data-dir",
                tiny_cifar,
                "--batch-size",
                "8",
                "--iterations",
                "8",
                "--checkpoint-every",
                "100",
                "--seed",
                "1",
                "--out",
                str(out),
                "--device",
                device,
            ]
        )

    whole = cli.run(args(tmp_path / "whole"), log=quiet)
    stop_at(monkeypatch, 3)
    with pytest.raises(sm.Interrupted):
        cli.run(args(tmp_path / "halves"), log=quiet)
    monkeypatch.undo()
    resumed = cli.run(cli.parse_arguments(["--resume", str(tmp_path / "halves")]), log=quiet)
    if device == "cpu":
        a, b = checkpoint_arrays(tmp_path / "whole"), checkpoint_arrays(tmp_path / "halves")
        assert any(name.endswith("running_var") for name in a)
        assert all(numpy.array_equal(a[name], b[name]) for name in a)
        assert resumed["test_loss"] == whole["test_loss"]


def test_resuming_refuses_flags_that_would_change_the_run(tiny_mnist, tmp_path, device):
    cli.run(arguments(tiny_mnist, tmp_path, device), log=quiet)
    result = run_cli("--resume", str(tmp_path), "--lr", "0.01", "--iterations", "80", device=device)
    assert_refused(result, "--iterations cannot be given")  # --lr may be: see the divergence


def test_a_moved_run_resumes_into_its_new_folder(tiny_mnist, tmp_path, device, monkeypatch):
    import shutil

    stop_at(monkeypatch, 9)
    with pytest.raises(sm.Interrupted):
        cli.run(arguments(tiny_mnist, tmp_path / "old", device), log=quiet)
    monkeypatch.undo()
    shutil.move(tmp_path / "old", tmp_path / "new")
    cli.run(cli.parse_arguments(["--resume", str(tmp_path / "new")]), log=quiet)
    assert (tmp_path / "new" / "results.json").exists() and not (tmp_path / "old").exists()


def test_resuming_with_other_data_is_refused(tiny_mnist, tmp_path, device, monkeypatch):
    from conftest import write_tiny_mnist

    stop_at(monkeypatch, 9)
    with pytest.raises(sm.Interrupted):
        cli.run(arguments(tiny_mnist, tmp_path / "run", device), log=quiet)
    monkeypatch.undo()
    other = write_tiny_mnist(tmp_path / "other", n_train=500)
    with pytest.raises(
        sm.UsageError, match="made with 300 training images, but this data gives 500"
    ):
        cli.run(
            cli.parse_arguments(["--resume", str(tmp_path / "run"), "--data-dir", other]), log=quiet
        )


def test_a_checkpoint_from_before_clipping_resumes_without_it(tiny_mnist, tmp_path, device):
    """A checkpoint written before --clip-norm existed holds no clip_norm: its run did not clip,
    and resumes so, although LeNet-5-Caffe clips by default now."""
    stop_at_run = tmp_path / "run"
    with pytest.MonkeyPatch.context() as patch:
        stop_at(patch, 9)
        with pytest.raises(sm.Interrupted):
            cli.run(arguments(tiny_mnist, stop_at_run, device), log=quiet)
    path = stop_at_run / checkpoints.CHECKPOINT_FILE

    def forget_clipping(arrays, settings):
        assert settings["args"].pop("clip_norm") == 1.0  # the run clipped: lenet5's default
        settings["args"].pop("clip_norm_is_models", None)
        return settings

    rewritten_checkpoint(path, path, forget_clipping)
    resumed = cli.run(cli.parse_arguments(["--resume", str(stop_at_run)]), log=quiet)
    assert resumed["clip_norm"] is None and resumed["departs_from_paper"] == []


def rewritten_checkpoint(source, target, change):
    """Copy a checkpoint with change(arrays, settings) applied to its contents."""
    with numpy.load(source, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    settings = json.loads(arrays["settings"].tobytes())
    settings = change(arrays, settings)
    arrays["settings"] = numpy.frombuffer(json.dumps(settings).encode(), dtype=numpy.uint8)
    buffer = io.BytesIO()
    numpy.savez(buffer, **arrays)
    target.write_bytes(buffer.getvalue())
    return target


def drop(key):
    def change(arrays, settings):
        del settings["state"][key]
        return settings

    return change


@pytest.mark.parametrize(
    "change",
    [
        lambda arrays, settings: [settings],
        lambda arrays, settings: {**settings, "version": 99},
        lambda arrays, settings: {**settings, "args": {**settings["args"], "model": "lenet9"}},
        lambda arrays, settings: {**settings, "state": "everything"},
        drop("iteration"),
        drop("rng"),
        drop("history"),
        lambda arrays, settings: {**settings, "state": {**settings["state"], "rng": {"state": 1}}},
        lambda arrays, settings: {**settings, "state": {**settings["state"], "position": -4}},
        lambda arrays, settings: {**settings, "state": {**settings["state"], "epoch_loss": "nan"}},
        lambda arrays, settings: {
            **settings,
            "state": {**settings["state"], "epoch_loss": float("nan")},
        },
        lambda arrays, settings: {**settings, "data": None},  # version 3: a fingerprint
        lambda arrays, settings: {**settings, "data": {**settings["data"], "test": {}}},
    ],
)
def test_a_checkpoint_with_damaged_settings_is_refused_when_read(
    saved_checkpoint, tmp_path, change
):
    path = rewritten_checkpoint(saved_checkpoint, tmp_path / checkpoints.CHECKPOINT_FILE, change)
    with pytest.raises(checkpoints.CheckpointError, match="is not a usable checkpoint"):
        checkpoints.read_checkpoint(str(path))


def test_a_checkpoint_whose_array_header_claims_a_huge_shape_is_refused(saved_checkpoint, tmp_path):
    """An .npy header is parsed before anything is checked: a claimed shape of 2**40 floats
    must become a CheckpointError, not an allocation or a MemoryError."""
    original = saved_checkpoint.read_bytes()
    header = b"'shape': (300,"  # fc2.weight's header in the stored zip entries
    assert header in original
    path = tmp_path / checkpoints.CHECKPOINT_FILE
    path.write_bytes(original.replace(header, b"'shape': (1099511627776,", 1))
    with pytest.raises(checkpoints.CheckpointError):
        checkpoints.read_checkpoint(str(path))


def damaged_copies(path):
    """A checkpoint's bytes, truncated or with bytes overwritten, as hypothesis strategies."""
    original = path.read_bytes()
    truncated = st.integers(0, len(original) - 1).map(lambda n: original[:n])
    overwritten = st.tuples(
        st.integers(0, len(original) - 1), st.binary(min_size=1, max_size=16)
    ).map(lambda edit: original[: edit[0]] + edit[1] + original[edit[0] + len(edit[1]) :])
    return st.one_of(truncated, overwritten, st.binary(max_size=256))


@pytest.fixture(scope="module")
def saved_checkpoint(tiny_mnist, tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoint")
    args = cli.parse_arguments(
        [
            "--model",
            "lenet300",
            "--sparsity",
            "0.9",
            "--data-dir",
            tiny_mnist,
            "--iterations",
            "3",
            "--batch-size",
            "50",
            "--checkpoint-every",
            "3",
            "--out",
            str(folder),
        ]
    )
    cli.run(args, log=quiet)
    return folder / checkpoints.CHECKPOINT_FILE


@given(data=st.data())
def test_a_damaged_checkpoint_is_read_or_refused_with_checkpoint_error_only(
    saved_checkpoint, tmp_path_factory, data
):
    damaged = data.draw(damaged_copies(saved_checkpoint))
    path = tmp_path_factory.mktemp("damaged") / checkpoints.CHECKPOINT_FILE
    path.write_bytes(damaged)
    try:
        contents = checkpoints.read_checkpoint(str(path))
    except checkpoints.CheckpointError as error:
        assert "\n" not in str(error) and str(path) in str(error)
        return
    model = models.build(contents["args"]["model"], "mnist")
    try:
        checkpoints.restore_checkpoint(contents, model, sm.prunable_parameters(model))
    except checkpoints.CheckpointError as error:
        assert "\n" not in str(error)


def test_a_checkpoint_with_the_wrong_shapes_is_refused(saved_checkpoint):
    contents = checkpoints.read_checkpoint(str(saved_checkpoint))
    model = models.build("lenet5", "mnist")
    with pytest.raises(checkpoints.CheckpointError, match="does not fit"):
        checkpoints.restore_checkpoint(contents, model, sm.prunable_parameters(model))


def test_the_data_fingerprint_changes_with_any_image_label_or_shape_and_nothing_else(tiny_mnist):
    import dataclasses

    dataset = data.load_dataset("mnist", tiny_mnist, notice=quiet)
    fingerprint = data.fingerprint(dataset)
    assert fingerprint == data.fingerprint(data.load_dataset("mnist", tiny_mnist))
    assert fingerprint["train"]["images"] == 300 and fingerprint["test"]["images"] == 100
    pixel = dataset.train_images.copy()
    pixel[123, 4, 5, 0] ^= 1
    label = dataset.test_labels.copy()
    label[7] = (label[7] + 1) % 10
    changed = [
        dataclasses.replace(dataset, train_images=pixel),
        dataclasses.replace(dataset, test_labels=label),
        dataclasses.replace(dataset, train_images=dataset.train_images.reshape(300, 28, 1, 28)),
        data.first_training_images(dataset, 299),
    ]
    for other in changed:
        theirs = data.fingerprint(other)
        assert (theirs["train"], theirs["test"]) != (fingerprint["train"], fingerprint["test"])


def test_a_resume_on_another_test_set_is_refused_naming_both(
    tiny_mnist, tmp_path, device, monkeypatch
):
    from conftest import write_tiny_mnist

    stop_at(monkeypatch, 9)
    with pytest.raises(sm.Interrupted):
        cli.run(arguments(tiny_mnist, tmp_path / "run", device), log=quiet)
    monkeypatch.undo()
    other = write_tiny_mnist(tmp_path / "other", n_test=120)  # the same training images
    with pytest.raises(sm.UsageError) as refused:
        cli.run(
            cli.parse_arguments(["--resume", str(tmp_path / "run"), "--data-dir", other]), log=quiet
        )
    assert "made with 100 test images, but this data gives 120 (SHA-256 " in str(refused.value)


def test_a_version_2_checkpoint_resumes_with_a_note_that_its_data_is_counted_only(
    tiny_mnist, tmp_path, device, monkeypatch, capsys
):
    stop_at(monkeypatch, 9)
    with pytest.raises(sm.Interrupted):
        cli.run(arguments(tiny_mnist, tmp_path / "run", device), log=quiet)
    monkeypatch.undo()
    whole = cli.run(arguments(tiny_mnist, tmp_path / "whole", device), log=quiet)

    def version_2(arrays, settings):
        del settings["data"], settings["iterations"]
        return {**settings, "version": 2}

    old = tmp_path / "old"
    old.mkdir()
    rewritten_checkpoint(
        tmp_path / "run" / checkpoints.CHECKPOINT_FILE, old / checkpoints.CHECKPOINT_FILE, version_2
    )
    capsys.readouterr()
    resumed = cli.run(cli.parse_arguments(["--resume", str(old)]), log=quiet)
    assert "from before checkpoints recorded their data (version 2)" in capsys.readouterr().err
    assert resumed["iterations"] == 40 and len(resumed["history"]) == len(whole["history"])
    assert checkpoints.read_checkpoint(str(old / checkpoints.CHECKPOINT_FILE))["version"] == 3


def test_a_checkpoint_is_never_saved_with_a_non_finite_value(tiny_mnist, tmp_path, device):
    args = arguments(tiny_mnist, tmp_path, device)
    model = models.build("lenet300", "mnist")
    sm.initialise(model, "vs-h", numpy.random.default_rng(0))
    optimiser = sm.SGD(sm.parameters_of(model))
    saver = checkpoints.Saver(str(tmp_path), model, [], optimiser, args, 0.0)
    state = sm.TrainingState(numpy.random.default_rng(0))
    state.iteration, state.epoch_loss = 5, sm.xp.asarray(numpy.inf)
    with pytest.raises(sm.Diverged, match="the loss became non-finite by iteration 5"):
        saver(state)
    state.epoch_loss = 0.0
    first = sm.parameters_of(model)[0]
    first.value = sm.xp.where(
        sm.xp.arange(first.size).reshape(first.shape) == 0, numpy.nan, first.value
    )
    with pytest.raises(sm.Diverged, match="the weights became non-finite by iteration 5"):
        saver(state)
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------
# Divergence
# ------------------------------------------------------------------------------------------


def test_divergence_names_the_iteration_and_the_last_good_checkpoint(tiny_mnist, tmp_path, device):
    out = tmp_path / "out"
    result = run_cli(
        "--data-dir",
        tiny_mnist,
        "--model",
        "lenet300",
        "--sparsity",
        "0.5",
        "--lr",
        "20",
        "--iterations",
        "200",
        "--batch-size",
        "10",
        "--checkpoint-every",
        "1",
        "--out",
        str(out),
        device=device,
    )
    assert result.returncode == 1, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and "training diverged" in lines[0] and "by iteration" in lines[0], lines
    assert f"the last good checkpoint is {out / checkpoints.CHECKPOINT_FILE}" in lines[0], lines
    contents = checkpoints.read_checkpoint(str(out / checkpoints.CHECKPOINT_FILE))
    assert all(numpy.isfinite(value).all() for value in contents["param"].values())
    assert f"(iteration {contents['state']['iteration']:,})" in lines[0]
    results = json.loads((out / "results.json").read_text())  # never NaN results as if fine:
    assert results["diverged"] is True and results["test_error"] is None  # a divergence


# ------------------------------------------------------------------------------------------
# Degenerate masks
# ------------------------------------------------------------------------------------------


def test_a_disconnected_network_is_named_in_a_warning_or_refused_with_strict(
    tiny_mnist, tmp_path, device
):
    common = (
        "--data-dir",
        tiny_mnist,
        "--model",
        "lenet300",
        "--sparsity",
        "0.99999",
        "--iterations",
        "2",
        "--batch-size",
        "10",
    )
    warned = run_cli(*common, device=device)
    assert warned.returncode == 0, warned.stderr
    warnings = [line for line in error_lines(warned.stderr) if line.startswith("warning:")]
    assert len(warnings) == 1 and "keeps no connection in" in warnings[0], warned.stderr
    assert "fc" in warnings[0].split("keeps no connection in")[1]

    refused = run_cli(*common, "--strict", device=device)
    assert_refused(refused, "keeps no connection in")


def test_kappa_beyond_the_non_zero_scores_is_deterministic_and_reported(capsys):
    """All-black images give the first layer's weights zero sensitivity (dL/dW = x^T delta = 0),
    and with zero biases nothing downstream of it moves either: most scores are 0, and kappa
    reaches into them. Those are kept by position, lowest global index first."""
    model = models.build("lenet300", "mnist")
    sm.initialise(model, "vs-h", numpy.random.default_rng(0))
    images = sm.xp.zeros((20, 28, 28, 1), dtype=sm.xp.float32)
    labels = sm.xp.asarray(numpy.arange(20) % 10)
    params = sm.prunable_parameters(model)
    g = numpy.concatenate(
        [sm.to_host(s).ravel() for s in sm.connection_sensitivity(model, images, labels, params)]
    )
    report = {}
    gated = sm.snip(model, images, labels, 0.01, report=report)
    assert report["nonzero_scores"] == int((g != 0).sum()) < report["kappa"] < report["m"] == g.size

    zero = numpy.flatnonzero(g == 0)
    expected = g != 0
    expected[zero[: report["kappa"] - report["nonzero_scores"]]] = True
    kept = numpy.concatenate([sm.to_host(p.mask).ravel() for p in gated]).astype(bool)
    assert numpy.array_equal(kept, expected) and kept.sum() == report["kappa"]

    cli.check_masks(gated, report, cli.parse_arguments(["--sparsity", "0.01"]))
    note = capsys.readouterr().err
    assert note.startswith("note:") and f"{report['nonzero_scores']:,} connections" in note


def test_sparsity_zero_keeps_every_connection(tiny_mnist, device):
    result = run_cli(
        "--data-dir",
        tiny_mnist,
        "--model",
        "lenet5",
        "--sparsity",
        "0",
        "--iterations",
        "1",
        "--batch-size",
        "10",
        device=device,
    )
    assert result.returncode == 0 and "431,080 -> 431,080 (0.00% pruned)" in result.stdout, (
        result.stdout
    )


# ------------------------------------------------------------------------------------------
# A damaged checkpoint, running out of memory, an unforeseen error: one line, the right status
# ------------------------------------------------------------------------------------------


def test_a_damaged_checkpoint_on_resume_gives_one_line_and_exit_status_2(tmp_path, device):
    (tmp_path / checkpoints.CHECKPOINT_FILE).write_bytes(b"PK\x03\x04 half a checkpoint")
    result = run_cli("--resume", str(tmp_path), device=device)
    assert_refused(result, "is not a usable checkpoint")


def test_running_out_of_memory_names_the_batch_size_to_try(tiny_mnist, monkeypatch, capsys):
    def no_memory(*args, **kwargs):
        raise MemoryError("out of memory allocating 1,234,567,890 bytes")

    monkeypatch.setattr(sm, "train_step", no_memory)
    status = cli.main(["--data-dir", tiny_mnist, "--batch-size", "64", "--iterations", "2"])
    assert status == 1
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "out of memory" in lines[0] and "--batch-size 32" in lines[0], lines


def test_an_unforeseen_error_is_one_line_and_debug_shows_the_traceback(
    tiny_mnist, monkeypatch, capsys
):
    def broken(*args, **kwargs):
        raise RuntimeError("something\nunexpected")

    monkeypatch.setattr(sm, "train_step", broken)
    assert cli.main(["--data-dir", tiny_mnist, "--iterations", "2"]) == 1
    lines = error_lines(capsys.readouterr().err)
    assert lines == [
        "snip_min.py: error: RuntimeError: something unexpected (run again with --debug "
        "for details)"
    ]
    assert cli.main(["--data-dir", tiny_mnist, "--iterations", "2", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: something" in err  # and the status stays


# ------------------------------------------------------------------------------------------
# The table of faults in docs/reliability.md, row by row: each row's fault, tried as a user
# meets it, must give what the row says. test_the_tests_follow_the_table_row_by_row keeps the
# table and FAULTS the same list, in the same order.
# ------------------------------------------------------------------------------------------

RELIABILITY_PAGE = os.path.join(ROOT, "docs", "reliability.md")
FAULT_TABLE_HEADING = "## What each fault gives"
QUICK = ("--model", "lenet300", "--sparsity", "0.9", "--batch-size", "10", "--iterations", "3")


def table_faults():
    """The first cell of every row of docs/reliability.md's table of faults, in order."""
    with open(RELIABILITY_PAGE, encoding="utf-8") as f:
        page = f.read()
    section = page[page.index(FAULT_TABLE_HEADING) :]
    section = section[: section.find("\n## ", 1)]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]  # no header
    return [row[2:].split(" | ")[0].strip() for row in rows]


FAULTS = {}  # a row's fault -> the scenario that tries it


def fault(row):
    """Register the scenario of the table's row `row` (its first cell, as written there)."""

    def register(scenario):
        FAULTS[row] = scenario
        return scenario

    return register


class Trial:
    """What a scenario works with: the tiny MNIST, a folder of its own, the suite's device,
    pytest's monkeypatch and capsys; `command` runs snip_min.py's main in this process."""

    def __init__(self, data, folder, device, monkeypatch, capsys):
        self.data, self.folder, self.device = data, folder, device
        self.monkeypatch, self.capsys = monkeypatch, capsys

    def command(self, *argv):
        """cli.main(argv) with the suite's --device (and the tiny MNIST unless --data-dir or
        --resume is given): (exit status, stdout, the lines of stderr but the data's notes)."""
        argv = [str(word) for word in argv]
        if "--data-dir" not in argv and "--resume" not in argv:
            argv = ["--data-dir", self.data, *argv]
        self.capsys.readouterr()
        try:
            status = cli.main(["--device", self.device, *argv])
        except SystemExit as stop:  # a flag refused by argparse
            status = stop.code
        except KeyboardInterrupt:  # (not to stop the test session)
            pytest.fail("a Ctrl-C escaped snip_min.py's main as a traceback")
        out, err = self.capsys.readouterr()
        data_notes = [line for line in err.splitlines() if "is a valid IDX file" in line]
        return status, out, [line for line in err.splitlines() if line not in data_notes]

    def refused(self, message, *argv):
        """The command refuses argv with exit status 2 and one line holding `message`."""
        status, _, lines = self.command(*argv)
        assert status == 2 and len(lines) == 1 and message in lines[0], (status, lines)
        return lines[0]

    def stopped_run(self, out, stop, *extra):
        """A run into `out` (a checkpoint every 7 iterations of 40) stopped by Ctrl-C during
        iteration `stop`; returns its checkpoint's path."""
        stop_at(self.monkeypatch, stop)
        status, _, lines = self.command(*QUICK, "--iterations", "40", "--out", out, *extra)
        assert status == 130 and f"stopped at iteration {stop}" in lines[-1], lines
        self.monkeypatch.undo()
        return out / checkpoints.CHECKPOINT_FILE


def first_line(lines, start):
    return next(line for line in lines if line.startswith(start))


def rewritten_copy(trial, change):
    """A stopped run's folder, copied, its checkpoint rewritten by change(arrays, settings)."""
    path = trial.stopped_run(trial.folder / "run", 9)
    target = trial.folder / "rewritten"
    target.mkdir()
    rewritten_checkpoint(path, target / checkpoints.CHECKPOINT_FILE, change)
    return target


@fault("a flag out of range (`--sparsity 1.0`)")
def flag_out_of_range(trial):
    trial.refused(
        "argument --sparsity: sparsity must be a number in [0, 1), got '1.0'",
        *QUICK[:2],
        "--sparsity",
        "1.0",
    )


@fault("an empty folder name (`--out ''`, `--data-dir ''`)")
def empty_folder_name(trial):
    trial.refused("argument --out: expected a folder name, got ''", *QUICK, "--out", "")
    trial.refused("argument --data-dir: expected a folder name, got ''", "--data-dir", "", *QUICK)


@fault("a sparsity that keeps no connection (`--sparsity 0.9999999`)")
def sparsity_keeping_nothing(trial):
    line = trial.refused(
        "--sparsity 0.9999999 keeps kappa = round((1 - 0.9999999) x 431,080) = 0",
        "--model",
        "lenet5",
        "--sparsity",
        "0.9999999",
        "--iterations",
        "2",
    )
    highest = line.split("a sparsity of at most ")[1].split()[0]
    assert sm.kappa_for(float(highest), 431_080) == 1 and "sparsity 1 " not in line


@fault("a layer left without a connection")
def disconnected_layer(trial):
    argv = (*QUICK[:2], "--sparsity", "0.99999", *QUICK[4:])
    status, _, lines = trial.command(*argv)
    assert status == 0 and "keeps no connection in fc" in first_line(lines, "warning:")
    trial.refused("keeps no connection in fc", *argv, "--strict")


@fault("a model on a dataset it is not defined for")
def model_on_another_dataset(trial):
    trial.refused(
        "model lenet5 is defined for mnist, fashion-mnist, not cifar10",
        "--model",
        "lenet5",
        "--dataset",
        "cifar10",
    )


@fault("a batch larger than the training split")
def batch_larger_than_the_split(trial):
    trial.refused(
        "--batch-size 5000 is larger than the 270 training images", "--batch-size", "5000"
    )


@fault("`--out` naming a file")
def out_naming_a_file(trial):
    (trial.folder / "a-file").write_text("not a folder")
    trial.refused("is a file, not a folder", *QUICK, "--out", trial.folder / "a-file")


@fault("`--out` that cannot be created")
def out_that_cannot_be_created(trial):
    (trial.folder / "a-file").write_text("not a folder")
    trial.refused("cannot create the folder", *QUICK, "--out", trial.folder / "a-file" / "sub")


@fault("a new run into a folder that holds an earlier run")
def new_run_into_an_earlier_one(trial):
    out = trial.folder / "out"
    assert trial.command(*QUICK, "--seed", "3", "--out", out)[0] == 0
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    line = trial.refused(f"--out {out} already holds a run", "--model", "lenet5", "--out", out)
    assert "results.json: lenet300, seed 3, test error" in line and "masks.npz" in line
    assert "replace it with --overwrite, or write elsewhere with --out DIR" in line
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before  # untouched


@fault("the command of an interrupted run typed again")
def interrupted_run_typed_again(trial):
    trial.monkeypatch.chdir(trial.folder)  # where the run's own folder goes without --out
    stop_at(trial.monkeypatch, 5)
    assert trial.command(*QUICK, "--iterations", "400")[0] == 130
    trial.monkeypatch.undo()
    trial.monkeypatch.chdir(trial.folder)
    folder = "snip-min-lenet300-seed0"
    line = trial.refused("already holds a run", *QUICK, "--iterations", "400")
    assert "checkpoint.npz: lenet300, seed 0, stopped at iteration 5 of 400" in line
    assert f"continue it with --resume {folder}" in line
    saved = checkpoints.read_checkpoint(os.path.join(folder, checkpoints.CHECKPOINT_FILE))
    assert saved["state"]["iteration"] == 5  # not replaced by the new run's


@fault("`--overwrite` over an earlier run")
def overwrite_over_an_earlier_run(trial):
    out = trial.folder / "out"
    trial.stopped_run(out, 9, "--seed", "3")  # checkpoint.npz of seed 3, at iteration 9
    assert trial.command(*QUICK, "--seed", "3", "--iterations", "40", "--out", out)[0] == 2
    status, stdout, _ = trial.command(*QUICK, "--out", out, "--overwrite")  # no --checkpoint-every
    assert (
        status == 0
        and f"--overwrite: removed the earlier run's checkpoint.npz from {out}" in stdout
    )
    # no stale checkpoint beside the new run's files
    assert sorted(os.listdir(out)) == ["masks.npz", "network.npz", "results.json"]
    assert json.loads((out / "results.json").read_text())["seed"] == 0


@fault("data missing, with downloads off")
def data_missing(trial):
    trial.refused(
        "train-images-idx3-ubyte.gz is missing",
        "--data-dir",
        trial.folder / "nowhere",
        "--no-download",
    )


@fault("data that cannot be downloaded (a misspelt `--data-dir`)")
def data_that_cannot_be_downloaded(trial):

    trial.monkeypatch.setattr(data, "MNIST_MIRRORS", [(trial.folder / "mirror").as_uri() + "/"])
    trial.monkeypatch.setattr(data.time, "sleep", lambda seconds: None)  # no pause to retry
    misspelt = trial.folder / "dta"
    status, _, lines = trial.command("--data-dir", misspelt)
    progress = [line for line in lines if line.startswith(("downloading ", "note: file:"))]
    assert status == 2 and progress and len(lines) == len(progress) + 1, lines  # and the error:
    line = lines[-1]
    assert "could not download train-images-idx3-ubyte.gz" in line
    assert f"--data-dir {misspelt} did not exist before this run: is it spelt right?" in line
    assert not misspelt.exists()  # no empty folders left behind


@fault("a truncated data file")
def truncated_data_file(trial):
    import shutil

    shutil.copytree(trial.data, trial.folder / "data")
    broken = trial.folder / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"
    broken.write_bytes(broken.read_bytes()[:100])
    trial.refused(
        f"{broken} is not a valid IDX file", "--data-dir", trial.folder / "data", "--no-download"
    )


@fault("`--device gpu` without CuPy")
def gpu_without_cupy(trial):
    import importlib.util

    import helpers

    if importlib.util.find_spec("cupy") is not None and not helpers.USING_STAND_IN:
        pytest.skip("CuPy is installed here")
    plain = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # without the stand-in
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "snip_min.py"),
            "--device",
            "gpu",
            "--data-dir",
            trial.data,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=plain,
    )
    assert_refused(result, "--device gpu needs CuPy, which is not installed")


@fault("`--resume` of a folder without a checkpoint")
def resume_without_a_checkpoint(trial):
    trial.refused(f"no checkpoint at {trial.folder / 'checkpoint.npz'}", "--resume", trial.folder)


@fault("`--resume` given the checkpoint file itself")
def resume_given_the_file(trial):
    path = trial.stopped_run(trial.folder / "run", 9)
    status, stdout, _ = trial.command("--resume", path)
    assert status == 0 and f"resuming from {path} at iteration 9" in stdout


@fault("a damaged checkpoint")
def damaged_checkpoint(trial):
    def objects(arrays, settings):  # an array that only unpickling could read
        arrays["param/fc1.bias"] = numpy.array([1, "x"], dtype=object)
        return settings

    folder = rewritten_copy(trial, objects)
    line = trial.refused("is not a usable checkpoint", "--resume", folder)
    assert "the file is damaged" in line and "pickle" not in line  # never NumPy's advice


@fault("a checkpoint of another network")
def checkpoint_of_another_network(trial):
    def lenet5(arrays, settings):
        settings["args"]["model"] = "lenet5"
        return settings

    line = trial.refused(
        "the checkpoint (its settings name lenet5) does not fit this network",
        "--resume",
        rewritten_copy(trial, lenet5),
    )
    assert "of shape (" in line and " object at 0x" not in line


@fault("a checkpoint holding non-finite weights")
def checkpoint_with_non_finite_weights(trial):
    def nan(arrays, settings):
        arrays["param/fc2.weight"] = numpy.full_like(arrays["param/fc2.weight"], numpy.nan)
        return settings

    line = trial.refused(
        "fc2.weight or its momentum holds non-finite values", "--resume", rewritten_copy(trial, nan)
    )
    assert "the file is damaged" in line and "diverged" not in line


@fault("`--resume` with a flag that changes the run")
def resume_with_a_changing_flag(trial):
    path = trial.stopped_run(trial.folder / "run", 9)
    trial.refused(
        "--iterations cannot be given with it", "--resume", path.parent, "--iterations", "80"
    )


@fault("`--resume` on data with another number of images")
def resume_on_more_images(trial):
    from conftest import write_tiny_mnist

    path = trial.stopped_run(trial.folder / "run", 9)
    other = write_tiny_mnist(trial.folder / "other", n_train=500)
    trial.refused(
        "made with 300 training images, but this data gives 500",
        "--resume",
        path.parent,
        "--data-dir",
        other,
    )


@fault("`--resume` on other images of the same number")
def resume_on_other_images(trial):
    from conftest import write_tiny_mnist

    path = trial.stopped_run(trial.folder / "run", 9)
    other = write_tiny_mnist(trial.folder / "other", seed=1)  # 300 images too, other ones
    line = trial.refused(
        "the checkpoint was made with other training images than this data gives",
        "--resume",
        path.parent,
        "--data-dir",
        other,
    )
    assert "SHA-256 " in line and "MNIST, 300 training images" in line


@fault("`--resume` of a finished run on other data")
def resume_finished_run_on_other_data(trial):
    from conftest import write_tiny_mnist

    out = trial.folder / "run"
    assert trial.command(*QUICK, "--checkpoint-every", "100", "--out", out)[0] == 0
    results = (out / "results.json").read_bytes()
    other = write_tiny_mnist(trial.folder / "other", n_train=400)
    trial.refused(
        "made with 300 training images, but this data gives 400",
        "--resume",
        out,
        "--data-dir",
        other,
    )
    assert (out / "results.json").read_bytes() == results


@fault("training that diverges")
def training_that_diverges(trial):
    out = trial.folder / "out"
    argv = ("--sparsity", "0.5", "--lr", "20", "--checkpoint-every", "1", "--out", out)
    status, _, lines = trial.command(*QUICK[:2], *QUICK[4:6], "--iterations", "200", *argv)
    assert (
        status == 1
        and len(lines) == 1
        and lines[0].startswith("snip_min.py: error: training diverged: the loss became")
    ), lines
    saved = checkpoints.read_checkpoint(str(out / checkpoints.CHECKPOINT_FILE))["state"]
    good = (
        f"the last good checkpoint is {out / 'checkpoint.npz'} (iteration {saved['iteration']:,})"
    )
    assert (
        good in lines[0]
        and f"continue from it with a smaller learning rate: --resume {out} --lr 2" in lines[0]
    )
    results = json.loads((out / "results.json").read_text())
    assert results["diverged"] is True and results["test_error"] is None
    assert f"by iteration {results['diverged_at_iteration']:,}" in lines[0]
    assert results["history"] == saved["history"]  # what it trained up to the divergence


@fault("`--resume DIR --lr X` after a divergence")
def resume_with_a_smaller_lr(trial):
    out, real_step, calls = trial.folder / "out", sm.train_step, [0]

    def blows_up_at_13(*args, **kwargs):  # the loss of step 13 is NaN (the weights stay)
        loss, correct = real_step(*args, **kwargs)
        calls[0] += 1
        return (loss * numpy.nan if calls[0] == 13 else loss), correct

    trial.monkeypatch.setattr(sm, "train_step", blows_up_at_13)
    argv = (*QUICK[:6], "--iterations", "40", "--checkpoint-every", "5", "--out", out)
    status, _, lines = trial.command(*argv)
    assert status == 1 and f"--resume {out} --lr 0.01" in lines[0], lines
    trial.monkeypatch.undo()
    status, stdout, lines = trial.command("--resume", out, "--lr", "0.01")
    assert status == 0 and "learning rate 0.1 -> 0.01 from iteration 10 on" in stdout, lines
    results = json.loads((out / "results.json").read_text())
    assert (
        results["diverged"] is False and results["iterations"] == 40 and results["lr"] == 0.1
    )  # the first rate
    assert results["lr_changes"] == [{"iteration": 10, "from": 0.1, "to": 0.01}]


@fault("running out of memory")
def out_of_memory(trial):
    def no_memory(*args, **kwargs):
        raise MemoryError("out of memory allocating 1,234,567,890 bytes")

    trial.monkeypatch.setattr(sm, "train_step", no_memory)
    status, _, lines = trial.command(*QUICK[:4], "--batch-size", "64", "--iterations", "2")
    assert (
        status == 1
        and len(lines) == 1
        and "out of memory" in lines[0]
        and "--batch-size 32" in lines[0]
    )


@fault("an unforeseen error")
def unforeseen_error(trial):
    def broken(*args, **kwargs):
        raise RuntimeError("something\nunexpected")

    trial.monkeypatch.setattr(sm, "train_step", broken)
    line = (
        "snip_min.py: error: RuntimeError: something unexpected (run again with --debug "
        "for details)"
    )
    status, _, lines = trial.command(*QUICK)
    assert status == 1 and lines == [line]
    status, _, lines = trial.command(*QUICK, "--debug")
    assert status == 1 and lines[0] == "Traceback (most recent call last):"  # the same status
    assert lines[-1] == line


@fault("Ctrl-C or SIGTERM while training")
def ctrl_c_while_training(trial):
    out = trial.folder / "run"
    stop_at(trial.monkeypatch, 9)
    status, _, lines = trial.command(*QUICK, "--iterations", "40", "--out", out)
    assert status == 130 and lines == [
        f"snip_min.py: interrupted: stopped at iteration 9; checkpoint saved in "
        f"{out / 'checkpoint.npz'}: continue with --resume {out}"
    ]


@fault("a second Ctrl-C")
def second_ctrl_c(trial):
    out, real_write = trial.folder / "run", checkpoints.write_checkpoint

    def interrupted_at_9(folder, model, gated, velocities, state, *args, **kwargs):
        if state.iteration == 9:  # Ctrl-C again while the first one's checkpoint is written
            raise KeyboardInterrupt
        return real_write(folder, model, gated, velocities, state, *args, **kwargs)

    trial.monkeypatch.setattr(checkpoints, "write_checkpoint", interrupted_at_9)
    stop_at(trial.monkeypatch, 9)
    status, _, lines = trial.command(
        *QUICK, "--iterations", "40", "--checkpoint-every", "7", "--out", out
    )
    assert status == 130 and lines == [
        f"snip_min.py: interrupted at once; no new checkpoint saved; the last one, "
        f"{out / 'checkpoint.npz'} (iteration 7), is as it was: continue with --resume {out}"
    ]
    saved = checkpoints.read_checkpoint(str(out / checkpoints.CHECKPOINT_FILE))
    assert saved["state"]["iteration"] == 7


@fault("Ctrl-C while the command starts")
def ctrl_c_while_starting(trial):
    def interrupted(argv=None):
        raise KeyboardInterrupt

    trial.monkeypatch.setattr(cli, "parse_arguments", interrupted)
    status, _, lines = trial.command(*QUICK)
    assert status == 130 and lines == ["snip_min.py: interrupted at once; nothing saved"]


@fault("Ctrl-C while Python loads NumPy")
def ctrl_c_while_numpy_loads(trial):
    """A stand-in `numpy` that interrupts its own import: snip_min.py, run as the command,
    must end with status 130 and print nothing."""
    fake = trial.folder / "interrupting"
    (fake / "numpy").mkdir(parents=True)
    (fake / "numpy" / "__init__.py").write_text(
        "import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(5)\n"
    )
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "snip_min.py"), "--model", "lenet300"],
        env=dict(os.environ, PYTHONPATH=str(fake)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 130 and result.stderr == "" and result.stdout == ""


@fault("`--test-every` beyond the run")
def periodic_test_beyond_the_run(trial):
    status, _, lines = trial.command(*QUICK, "--test-every", "100")
    assert status == 0 and lines == [
        "warning: --test-every 100 is more than the run's 3 iterations: no test error is "
        "measured along the way and best_of_last_five stays null; choose --test-every 3 or less"
    ]


@fault("`--test-every` measuring fewer than five test errors")
def periodic_test_fewer_than_five(trial):
    status, _, lines = trial.command(*QUICK, "--test-every", "1")
    assert status == 0 and lines == [
        "note: --test-every 1 measures the test error 3 times in the run's 3 iterations: the "
        "best of the last 5 is the best of 3"
    ]


def script_result(name, *argv):
    """An experiment script in a subprocess, as a user runs it."""
    return run_python([os.path.join(ROOT, "experiments", f"{name}.py"), *argv], cwd=ROOT)


SCRIPTS_TRIED = (
    "kept_connections",
    "alive_units",
    "data_and_init",
    "initial_loss",
    "sparsity_sweep",
)


@fault("an experiment script on a truncated data file")
def experiment_on_truncated_data(trial):
    import shutil

    shutil.copytree(trial.data, trial.folder / "data")
    broken = trial.folder / "data" / "mnist" / "train-labels-idx1-ubyte.gz"
    broken.write_bytes(broken.read_bytes()[:30])
    for name in SCRIPTS_TRIED:
        result = script_result(
            name, "--data-dir", trial.folder / "data", "--out", trial.folder / name
        )
        assert_refused(result, f"{name}.py: error: {broken} is not a valid IDX file")


@fault("an experiment script with `--device gpu` without CuPy")
def experiment_on_gpu_without_cupy(trial):
    import importlib.util

    import helpers

    if importlib.util.find_spec("cupy") is not None and not helpers.USING_STAND_IN:
        pytest.skip("CuPy is installed here")  # (a child does not find the stand-in)
    for name in SCRIPTS_TRIED:
        result = subprocess.run(
            [
                sys.executable,
                os.path.join(ROOT, "experiments", f"{name}.py"),
                "--device",
                "gpu",
                "--data-dir",
                trial.data,
                "--out",
                trial.folder / name,
                *(["--batch-sizes", "10"] if name == "data_and_init" else []),  # (270 images)
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ROOT,
        )
        assert_refused(result, f"{name}.py: error: --device gpu needs CuPy, which is not installed")


@fault("`--collect` when no run's file can be used")
def collect_with_no_usable_run(trial):
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    import sparsity_sweep

    out = trial.folder / "sweep"
    grid = [
        "--data-dir",
        trial.data,
        "--out",
        out,
        "--device",
        trial.device,
        "--epochs",
        "1",
        "--seeds",
        "1",
        "--models",
        "lenet300",
        "--sparsities",
        "0.9",
        "--methods",
        "snip",
    ]
    grid = [str(word) for word in grid]
    assert sparsity_sweep.main(grid) == 0 and (out / "sweep.csv").exists()
    [run] = (out / "runs").iterdir()
    run.write_text("{")  # damaged
    trial.capsys.readouterr()
    assert sparsity_sweep.main(grid + ["--collect"]) == 1
    err = trial.capsys.readouterr().err
    assert "nothing collected: no run of the grid has a usable result file; " in err
    assert "summary.json, sweep-lenet300.png, sweep.csv in" in err or (
        "summary.json, sweep.csv in" in err  # (without matplotlib, no figure)
    )
    assert "are from an earlier collection" in err


@pytest.mark.parametrize("row", table_faults())
def test_each_fault_gives_what_the_table_says(
    row, tiny_mnist, tmp_path, device, monkeypatch, capsys
):
    assert row in FAULTS, f"docs/reliability.md's row {row!r} has no scenario here"
    FAULTS[row](Trial(tiny_mnist, tmp_path, device, monkeypatch, capsys))


def test_the_tests_follow_the_table_row_by_row():
    assert list(FAULTS) == table_faults()
