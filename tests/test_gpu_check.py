"""scripts/gpu-check, the one-shot check for a machine with a GPU, explains itself, refuses
bad arguments, and runs every one of its steps end to end (here on the strict stand-in for
CuPy, with --quick: the GPU's own run is the real proof)."""

import os
import subprocess
import sys

import pytest

import helpers

SCRIPT = os.path.join(helpers.ROOT, "scripts", "gpu-check")


def run_script(*arguments, env=None):
    return subprocess.run(
        [SCRIPT, *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env or dict(os.environ),
    )


def test_gpu_check_explains_itself():
    result = run_script("--help")
    assert result.returncode == 0
    for promise in (
        "pytest --device gpu",
        "snip_min.py --model lenet5 --sparsity 0.99 --device gpu",
        "scripts/bench.py --device gpu",
        "lenet5, lenet300 and vgg-d",
        "lstm-s, gru-s",
        "lstm-s-pixels, gru-s-pixels",
        "milliseconds per training step",
        "DATA_DIR",
        "--quick",
    ):
        assert promise in result.stdout, promise


@pytest.mark.parametrize(
    "arguments,message",
    [
        ([], "give the data folder"),
        (["--nope"], "unknown option"),
        (["NOWHERE"], "is not a folder"),
    ],
)
def test_gpu_check_refuses_bad_arguments_in_one_line(arguments, message, tmp_path):
    result = run_script(*[str(tmp_path / "nowhere") if a == "NOWHERE" else a for a in arguments])
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr, (
        result.stderr
    )


def test_gpu_check_runs_every_step_and_prints_its_table(tiny_mnist, tmp_path, backend):
    if backend == "gpu":
        pytest.skip("on a GPU, run scripts/gpu-check itself")
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        PYTHONPATH=os.pathsep.join([helpers.STAND_IN, helpers.ROOT]),
    )  # CuPy: the stand-in
    result = run_script("--quick", "--out", tmp_path / "out", tiny_mnist, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout[result.stdout.index("step ") :]
    rows = {line.split("  ")[0]: line for line in table.splitlines()[1:]}
    assert list(rows) == [
        "tests (pytest --device gpu)",
        "main command (lenet5, 99%)",
        "scripts/bench.py --model lenet300",
        "scripts/bench.py --model gru-s",  # a recurrent model too, timed per training step
    ]
    assert all("  ok  " in row for row in rows.values()), table
    assert "passed" in rows["tests (pytest --device gpu)"]
    assert "test error" in rows["main command (lenet5, 99%)"] and "4,311 of 431,080 kept" in table
    for model in ("lenet300", "gru-s"):
        row = rows[f"scripts/bench.py --model {model}"]
        assert "ms (batch 20)" in row and "train" in row and "peak" in row, row
    assert "GPU: " in result.stdout
