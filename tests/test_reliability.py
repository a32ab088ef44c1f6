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

import models
import snip_min as sm
from extensions import checkpoints, cli
from helpers import child_environment
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
    assert_refused(result, "--iterations, --lr cannot be given")


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
        sm.UsageError, match="made with 270 training images, but this data gives 450"
    ):
        cli.run(
            cli.parse_arguments(["--resume", str(tmp_path / "run"), "--data-dir", other]), log=quiet
        )


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
    assert not (out / "results.json").exists()  # never NaN results written as if fine


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
    with pytest.raises(RuntimeError):
        cli.main(["--data-dir", tiny_mnist, "--iterations", "2", "--debug"])
