"""Every experiment script runs end to end at a tiny size on a generated MNIST and writes
sane numbers and figures; their grids of runs lose nothing and split over tasks, worker
processes and SLURM array tasks into the same results. The heavy runs that fill the README
are not part of the suite."""

import csv
import glob
import importlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy
import pytest

import helpers

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
    assert (
        experiment("sparsity_sweep").main(
            [
                "--data-dir",
                tiny_mnist,
                "--out",
                str(out),
                "--device",
                device,
                "--epochs",
                "1",
                "--seeds",
                "2",
                "--sparsities",
                "0",
                "0.9",
            ]
        )
        == 0
    )
    rows = rows_of(out / "sweep.csv")
    assert len(rows) == 2 * 2 * 2 * 2  # models x sparsities x methods x seeds
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
    assert (
        experiment("kept_connections").main(
            ["--data-dir", tiny_mnist, "--out", str(out), "--device", device, "--batch-size", "10"]
        )
        == 0
    )
    with numpy.load(out / "maps.npz", allow_pickle=False) as maps:
        assert sorted(maps.files) == sorted([str(d) for d in range(10)] + ["mixed"])
        stacked = numpy.stack([maps[str(d)] for d in range(10)])
    assert stacked.shape == (10, 28, 28) and stacked.min() >= 0 and stacked.max() <= 300
    assert len({m.tobytes() for m in stacked}) == 10  # every class keeps its own
    summary = json.loads((out / "summary.json").read_text())
    assert summary["maps_differ_between_classes"]
    # the generated digits are bright squares at class-dependent places: the maps must find them
    assert summary["classes_most_similar_to_their_own_digit"] >= 8
    if figures_expected():
        assert_png(out / "kept_connections.png")


def test_data_and_initialisation_experiment_writes_both_parts(tiny_mnist, tmp_path, device):
    out = tmp_path / "d"
    assert (
        experiment("data_and_init").main(
            [
                "--data-dir",
                tiny_mnist,
                "--out",
                str(out),
                "--device",
                device,
                "--epochs",
                "1",
                "--seeds",
                "1",
                "--batch-sizes",
                "1",
                "10",
            ]
        )
        == 0
    )
    batch_rows = rows_of(out / "batch.csv")
    assert {(r["composition"], r["batch_size"]) for r in batch_rows} == {
        ("random", "1"),
        ("random", "10"),
        ("one class", "1"),
        ("one class", "10"),
    }
    init_rows = rows_of(out / "init.csv")
    assert {(r["model"], r["init"]) for r in init_rows} == {
        (m, i) for m in ("lenet300", "lenet5") for i in ("rn", "tn", "vs-x", "vs-h")
    }
    table = (out / "init_table.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "±" in line]
    assert len(rows) == 4 and all(line.count("±") == 2 for line in rows) and "VS-H (He)" in table
    if figures_expected():
        assert_png(out / "scoring_batch.png")
        assert_png(out / "initialisation.png")


def test_random_labels_experiment_records_four_loss_curves_per_network(
    tiny_mnist, tmp_path, device
):
    out = tmp_path / "e"
    assert (
        experiment("random_labels").main(
            [
                "--data-dir",
                tiny_mnist,
                "--out",
                str(out),
                "--device",
                device,
                "--models",
                "lenet300",
                "--epochs",
                "4",
                "--train-images",
                "120",
                "--window",
                "2",
            ]
        )
        == 0
    )
    rows = rows_of(out / "losses.csv")
    runs = {r["run"] for r in rows}
    assert runs == {
        "dense, true labels",
        "dense, random labels",
        "pruned, true labels",
        "pruned, random labels",
    }
    assert all(math.isfinite(float(r["loss"])) and float(r["loss"]) >= 0 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    kept = {run["run"]: run["params_kept"] for run in summary["runs"]}
    assert kept["dense, true labels"] == 266_610 and kept["pruned, true labels"] == 5_332
    if figures_expected():
        assert_png(out / "random_labels-lenet300.png")


def test_sanity_checks_experiment_runs_every_criterion_and_check_and_collects_the_same(
    tiny_mnist, tmp_path, device, capsys
):
    out = tmp_path / "f"
    flags = [
        "--data-dir",
        tiny_mnist,
        "--out",
        str(out),
        "--device",
        device,
        "--iterations",
        "3",
        "--seeds",
        "1",
        "--models",
        "lenet300",
        "--sparsities",
        "0.98",
        "--rounds",
        "3",
        "--quiet",
    ]
    assert experiment("sanity_checks").main(flags) == 0
    rows = rows_of(out / "runs.csv")
    pairs = {(r["method"], r["sanity_check"]) for r in rows}
    assert len(rows) == len(pairs) == 3 * 5 + 2 * 4 + 1  # data-reading x 5, data-free x 4, random
    assert ("random", "none") in pairs and ("synflow", "corrupt-data") not in pairs
    assert ("grasp", "corrupt-data") in pairs and ("magnitude", "invert") in pairs
    assert all(int(r["params_kept"]) == 5_332 for r in rows)
    by_pair = {(r["method"], r["sanity_check"]): r for r in rows}
    for method in ("snip", "grasp", "synflow"):  # shuffle and reinit keep every array's count
        for check in ("shuffle", "reinit"):
            assert all(
                by_pair[(method, check)][k] == by_pair[(method, "none")][k]
                for k in rows[0]
                if k.startswith("kept ")
            )
    assert (
        by_pair[("snip", "invert")]["kept fc1.weight"]
        != by_pair[("snip", "none")]["kept fc1.weight"]
    )
    table = (out / "table.md").read_text()
    assert "| SNIP |" in table and "| random |" in table and "corrupt-data" in table
    summary = json.loads((out / "summary.json").read_text())
    assert summary["error"]["lenet300"]["0.98"]["snip"]["none"]["runs"] == 1
    if figures_expected():
        assert_png(out / "sanity_checks.png")
        assert_png(out / "layer_densities.png")
    written = {name: (out / name).read_bytes() for name in ("runs.csv", "table.md", "summary.json")}
    capsys.readouterr()
    assert experiment("sanity_checks").main(flags + ["--collect"]) == 0  # from the run files alone
    assert all((out / name).read_bytes() == contents for name, contents in written.items())


def test_sanity_checks_cells_say_what_is_unusual():
    cell = experiment("sanity_checks").format_cell
    nan = float("nan")
    assert (
        cell({"mean": nan, "std": nan, "runs": 1, "diverged": 1, "disconnected": 0}, 1)
        == "diverged"
    )
    assert (
        cell({"mean": nan, "std": nan, "runs": 1, "diverged": 1, "disconnected": 0}, 3)
        == "diverged (1 run)"
    )
    assert (
        cell({"mean": 1.5, "std": 0.1, "runs": 3, "diverged": 1, "disconnected": 0}, 3)
        == "1.50 ± 0.10 (1 of 3 diverged)"
    )
    assert (
        cell({"mean": 90.2, "std": 0.0, "runs": 2, "diverged": 0, "disconnected": 2}, 3)
        == "90.20 ± 0.00 (2 runs, 2 of 2 disconnected)"
    )


def test_zoo_table_has_a_row_per_model_and_takes_errors_from_results_files(tmp_path):
    zoo = experiment("zoo_table")
    results = tmp_path / "results" / "run"
    results.mkdir(parents=True)
    (results / "results.json").write_text(
        json.dumps(
            {
                "model": "vgg-d",
                "dataset": "cifar10",
                "sparsity": 0.95,
                "test_error": 7.25,
                "seed": 0,
                "data": "CIFAR-10, 50,000 training images",
            }
        )
    )
    # runs augmented otherwise than by the authors are other experiments, left out of the table
    # (older files record the augmentation as true or false)
    for name, model, dataset, error, augment in (
        ("mnist-paper", "lenet300", "mnist", 3.5, None),
        ("mnist-old-file", "lenet300", "mnist", 3.6, False),
        ("mnist-translated", "lenet300", "mnist", 2.9, {"flip": False, "max_shift": 1}),
        ("cifar-paper", "resnet18", "cifar10", 8.5, {"flip": True, "max_shift": 4}),
        ("cifar-old-file", "resnet18", "cifar10", 8.6, True),
        ("cifar-not-augmented", "resnet18", "cifar10", 11.0, None),
    ):
        (tmp_path / "results" / name).mkdir()
        (tmp_path / "results" / name / "results.json").write_text(
            json.dumps(
                {
                    "model": model,
                    "dataset": dataset,
                    "sparsity": 0.98 if model == "lenet300" else 0.95,
                    "test_error": error,
                    "seed": 0,
                    "data": "some data",
                    "augment": augment,
                }
            )
        )
    (tmp_path / "results" / "mnist-random").mkdir()  # the baseline, not SNIP: left out
    (tmp_path / "results" / "mnist-random" / "results.json").write_text(
        json.dumps(
            {
                "model": "lenet300",
                "dataset": "mnist",
                "sparsity": 0.98,
                "test_error": 40.0,
                "seed": 0,
                "data": "some data",
                "augment": None,
                "method": "random",
            }
        )
    )
    (tmp_path / "results" / "mnist-compact").mkdir()  # --compact: reported elsewhere
    (tmp_path / "results" / "mnist-compact" / "results.json").write_text(
        json.dumps(
            {
                "model": "lenet300",
                "dataset": "mnist",
                "sparsity": 0.98,
                "test_error": 30.0,
                "seed": 0,
                "data": "some data",
                "augment": None,
                "compact": True,
            }
        )
    )
    rows = zoo.table_rows(str(tmp_path / "results"))
    assert len(rows) == 33
    assert next(r for r in rows if r["model"] == "lenet300")["test_errors"] == [3.6, 3.5]
    assert next(r for r in rows if r["model"] == "resnet18")["test_errors"] == [8.6, 8.5]
    vgg = next(r for r in rows if r["model"] == "vgg-d" and r["dataset"] == "cifar10")
    assert vgg["params_before"] == 15_245_130 and vgg["params_after"] == 762_257
    assert vgg["test_errors"] == [7.25]
    text = zoo.markdown(rows)
    assert "15,245,130 → 762,257 | 7.25%, CIFAR-10, 50,000 training images" in text
    assert text.count("\n") == 34


# ------------------------------------------------------------------------------------------
# Grids of runs: --list, --task, --jobs, --collect, one result file per run
# ------------------------------------------------------------------------------------------

SLURM_SCRIPT = os.path.join(ROOT, "experiments", "slurm-array.sh")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def sweep_flags(data_dir, out, device, *extra):
    """A sparsity sweep of 4 runs (LeNet-300-100, sparsity 0 and 0.9, SNIP and random, one
    seed, one epoch): indices 0 snip-0, 1 random-0, 2 snip-0.9, 3 random-0.9."""
    return [
        "--data-dir",
        data_dir,
        "--out",
        str(out),
        "--device",
        device,
        "--epochs",
        "1",
        "--seeds",
        "1",
        "--models",
        "lenet300",
        "--sparsities",
        "0",
        "0.9",
        *extra,
    ]


def script_command(name, flags):
    return [sys.executable, os.path.join(ROOT, "experiments", f"{name}.py"), *flags]


def environment(threads=None, **variables):
    """The environment of a test's child process, on the test's backend (helpers), with the
    BLAS thread count set (or left to the script) and no SLURM variables but those given."""
    parent = helpers.child_environment()
    env = {
        k: v for k, v in parent.items() if k not in THREAD_VARIABLES and not k.startswith("SLURM_")
    }
    if threads is not None:
        env.update({name: str(threads) for name in THREAD_VARIABLES})
    return {**env, **{k: str(v) for k, v in variables.items()}}


def run_files(out):
    """{file name: stat} of the result files in out/runs (never the temporary files)."""
    return {
        os.path.basename(p): os.stat(p)
        for p in sorted(glob.glob(os.path.join(out, "runs", "*.json")))
    }


def listed(capsys, argv):
    """The lines --list prints on stdout, and its stderr."""
    capsys.readouterr()  # what was printed before
    assert experiment("sparsity_sweep").main(argv + ["--list"]) == 0
    captured = capsys.readouterr()
    return captured.out.splitlines(), captured.err


@pytest.fixture(scope="module")
def one_process_sweep(tiny_mnist, tmp_path_factory, request):
    """sweep.csv of the 4-run sweep from one process (--jobs 1), with as many BLAS threads as
    each of two workers gets, for the comparisons with --jobs 2 and with the SLURM tasks."""
    out = tmp_path_factory.mktemp("reference")
    device = "cpu" if request.config.getoption("--device") == "cpu" else "gpu"  # as `device` says
    threads = experiment("common").threads_per_worker(2)
    done = subprocess.run(
        script_command("sparsity_sweep", sweep_flags(tiny_mnist, out, device, "--jobs", "1")),
        env=environment(threads),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return (out / "sweep.csv").read_bytes()


def test_list_shows_every_run_once_with_a_stable_index_and_whether_its_file_exists(
    tiny_mnist, tmp_path, device, capsys
):
    flags = sweep_flags(tiny_mnist, tmp_path, device)
    first, err = listed(capsys, flags)
    assert listed(capsys, flags)[0] == first  # stable
    assert [int(line.split()[0]) for line in first] == [0, 1, 2, 3]
    assert all(line.split()[1] == "missing" for line in first)
    assert "sparsity=0.9" in first[2] and "method=random" in first[3]
    assert "the grid has 4" in err and "data=" in err  # the shared settings
    keys = [line.split()[2] for line in first]
    assert len(set(keys)) == 4 and keys[2].startswith("lenet300-90-snip-seed0-")

    assert experiment("sparsity_sweep").main(flags + ["--task", "2/4"]) == 0  # run 2 only
    assert list(run_files(tmp_path)) == [keys[2] + ".json"]
    after, _ = listed(capsys, flags)
    assert [line.split()[1] for line in after] == ["missing", "missing", "done", "missing"]
    assert [line.replace("done   ", "missing") for line in after] == first  # nothing else moved


def test_a_changed_setting_or_other_data_is_a_new_run_never_an_old_result(
    tiny_mnist, tmp_path, device, capsys
):
    from conftest import write_tiny_mnist

    flags = sweep_flags(tiny_mnist, tmp_path, device)
    keys = {line.split()[2] for line in listed(capsys, flags)[0]}
    assert experiment("sparsity_sweep").main(flags) == 0
    for changed in (
        flags + ["--epochs", "2"],
        flags + ["--lr", "0.05"],
        sweep_flags(write_tiny_mnist(tmp_path / "other", n_train=200), tmp_path, device),
    ):
        lines = listed(capsys, changed)[0]
        assert len(lines) == 4 and all(line.split()[1] == "missing" for line in lines)
        assert not keys & {line.split()[2] for line in lines}
    more_seeds = listed(capsys, flags + ["--seeds", "2"])[0]  # a larger grid reuses
    assert sum(line.split()[1] == "done" for line in more_seeds) == 4  # the runs it shares


def test_tasks_then_collect_give_the_same_results_as_one_process(
    tiny_mnist, tmp_path, device, capsys
):
    sweep = experiment("sparsity_sweep")
    assert sweep.main(sweep_flags(tiny_mnist, tmp_path / "one", device)) == 0
    split = tmp_path / "split"
    assert sweep.main(sweep_flags(tiny_mnist, split, device, "--task", "0/2")) == 0
    assert (
        len(run_files(split)) == 2 and not (split / "sweep.csv").exists()
    )  # a task collects nothing
    assert sweep.main(sweep_flags(tiny_mnist, split, device, "--task", "1/2")) == 0
    capsys.readouterr()
    assert sweep.main(sweep_flags(tiny_mnist, split, device, "--collect")) == 0
    assert "missing" not in capsys.readouterr().err
    assert (split / "sweep.csv").read_bytes() == (tmp_path / "one" / "sweep.csv").read_bytes()
    assert (split / "summary.json").read_bytes() == (tmp_path / "one" / "summary.json").read_bytes()
    if figures_expected():
        assert_png(split / "sweep-lenet300.png")


def test_collect_names_the_missing_runs_and_exits_1(tiny_mnist, tmp_path, device, capsys):
    sweep = experiment("sparsity_sweep")
    assert (
        sweep.main(sweep_flags(tiny_mnist, tmp_path, device, "--task", "1/2")) == 0
    )  # runs 1 and 3
    keys = [
        line.split()[2] for line in listed(capsys, sweep_flags(tiny_mnist, tmp_path, device))[0]
    ]
    assert sweep.main(sweep_flags(tiny_mnist, tmp_path, device, "--collect")) == 1
    err = capsys.readouterr().err
    assert f"missing run 0: {keys[0]}" in err and f"missing run 2: {keys[2]}" in err
    assert keys[1] not in err and keys[3] not in err
    assert [r["method"] for r in rows_of(tmp_path / "sweep.csv")] == [
        "random",
        "random",
    ]  # what is there


@pytest.mark.parametrize("task", ["2/2", "0/0", "3", "a/b", "-1/2", "1/2/3", "", "1 /2"])
def test_a_bad_task_is_refused_in_one_line_with_status_2(
    tiny_mnist, tmp_path, device, capsys, task
):
    for name in ("sparsity_sweep", "data_and_init", "random_labels"):
        with pytest.raises(SystemExit) as stopped:
            experiment(name).main(
                [
                    "--data-dir",
                    tiny_mnist,
                    "--out",
                    str(tmp_path),
                    "--device",
                    device,
                    "--task",
                    task,
                ]
            )
        assert stopped.value.code == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "--task" in err, err
    assert not os.path.exists(tmp_path / "runs")


def test_an_interrupted_grid_resumes_without_repeating_its_finished_runs(
    tiny_mnist, tmp_path, device, capsys
):
    flags = sweep_flags(
        tiny_mnist, tmp_path, device, "--sparsities", "0", "0.5", "0.9", "--seeds", "2"
    )
    # Ctrl-C as a terminal sends it (a test runner may start us with SIGINT ignored: undo that)
    process = subprocess.Popen(
        script_command("sparsity_sweep", flags),
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not run_files(tmp_path) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "interrupted" in err
    finished = run_files(tmp_path)
    assert 1 <= len(finished) < 12
    assert not glob.glob(os.path.join(tmp_path, "runs", ".*"))  # no half-written file

    assert experiment("sparsity_sweep").main(flags) == 0  # the same command
    out = capsys.readouterr().out
    assert sum(line.endswith(": already done") for line in out.splitlines()) == len(finished)
    after = run_files(tmp_path)
    assert len(after) == 12 and len(rows_of(tmp_path / "sweep.csv")) == 12
    for name, stat in finished.items():  # not trained again
        assert (after[name].st_mtime_ns, after[name].st_ino) == (stat.st_mtime_ns, stat.st_ino)


def test_a_corrupt_or_foreign_run_file_is_reported_and_run_again(
    tiny_mnist, tmp_path, device, capsys
):
    sweep = experiment("sparsity_sweep")
    flags = sweep_flags(tiny_mnist, tmp_path, device)
    assert sweep.main(flags) == 0
    expected = (tmp_path / "sweep.csv").read_bytes()
    names = sorted(
        run_files(tmp_path),
        key=lambda name: [line.split()[2] + ".json" for line in listed(capsys, flags)[0]].index(
            name
        ),
    )
    runs = tmp_path / "runs"
    whole = (runs / names[0]).read_bytes()
    (runs / names[0]).write_bytes(whole[: len(whole) // 2])  # truncated
    shutil.copyfile(runs / names[2], runs / names[1])  # another run's file
    contents = json.loads((runs / names[3]).read_text())
    contents["settings"]["epochs"] = 7  # made with other settings
    (runs / names[3]).write_text(json.dumps(contents))
    untouched = os.stat(runs / names[2])

    lines, _ = listed(capsys, flags)
    assert [line.split()[1] for line in lines] == ["invalid", "invalid", "done", "invalid"]
    assert sweep.main(flags + ["--collect"]) == 1  # never used
    err = capsys.readouterr().err
    assert all(f"missing run {i}" in err for i in (0, 1, 3)) and "missing run 2" not in err

    assert sweep.main(flags) == 0
    err = capsys.readouterr().err
    assert f"{names[0]}: not a whole JSON file" in err
    assert f"{names[1]}: a foreign file" in err and f"{names[3]}: a foreign file" in err
    assert (tmp_path / "sweep.csv").read_bytes() == expected
    assert [line.split()[1] for line in listed(capsys, flags)[0]] == ["done"] * 4
    assert os.stat(runs / names[2]).st_mtime_ns == untouched.st_mtime_ns


def test_a_diverged_run_is_a_result(tiny_mnist, tmp_path, device, capsys):
    flags = [
        "--data-dir",
        tiny_mnist,
        "--out",
        str(tmp_path),
        "--device",
        device,
        "--epochs",
        "1",
        "--seeds",
        "1",
        "--models",
        "lenet300",
        "--sparsities",
        "0",
        "--methods",
        "snip",
        "--lr",
        "1e6",
    ]
    with numpy.errstate(all="ignore"):
        assert experiment("sparsity_sweep").main(flags) == 0
        [name] = run_files(tmp_path)
        assert json.loads((tmp_path / "runs" / name).read_text())["result"]["diverged"] is True
        assert rows_of(tmp_path / "sweep.csv")[0]["diverged"] == "True"
        assert experiment("sparsity_sweep").main(flags) == 0  # kept, not retried
    assert "already done" in capsys.readouterr().out


def test_jobs_2_gives_the_same_rows_as_jobs_1(tiny_mnist, tmp_path, device, one_process_sweep):
    threads = experiment("common").threads_per_worker(2)
    done = subprocess.run(
        script_command("sparsity_sweep", sweep_flags(tiny_mnist, tmp_path, device, "--jobs", "2")),
        env=environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"2 worker processes, {threads} BLAS thread(s) each" in done.stdout
    assert (tmp_path / "sweep.csv").read_bytes() == one_process_sweep
    files = [json.loads((tmp_path / "runs" / name).read_text()) for name in run_files(tmp_path)]
    assert len({f["pid"] for f in files}) == 2  # two workers trained
    assert all(
        f["blas_threads"] == {name: str(threads) for name in THREAD_VARIABLES} for f in files
    )


def test_the_slurm_array_script_runs_every_task_then_collect_gives_the_same_results(
    tiny_mnist, tmp_path, device, one_process_sweep, capsys
):
    assert os.access(SLURM_SCRIPT, os.X_OK)
    command = [
        "bash",
        SLURM_SCRIPT,
        os.path.join(ROOT, "experiments", "sparsity_sweep.py"),
        *sweep_flags(tiny_mnist, tmp_path, device),
    ]
    refused = subprocess.run(
        command, env=environment(PYTHON=sys.executable), capture_output=True, text=True
    )
    assert refused.returncode != 0 and len(refused.stderr.splitlines()) == 1
    assert "SLURM_ARRAY_TASK_ID" in refused.stderr and not os.path.exists(tmp_path / "runs")

    threads = experiment("common").threads_per_worker(2)
    tasks = [
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(
                PYTHON=sys.executable,
                SLURM_ARRAY_TASK_ID=task,
                SLURM_ARRAY_TASK_COUNT=3,
                SLURM_CPUS_PER_TASK=threads,
            ),
        )
        for task in range(3)
    ]  # 3 tasks for 4 runs: task 0 has two
    for number, task in enumerate(tasks):
        out, err = task.communicate(timeout=300)
        assert task.returncode == 0, err
        trained = [
            int(line[1 : line.index("]")]) for line in out.splitlines() if line.startswith("[")
        ]
        assert trained == [i for i in range(4) if i % 3 == number]  # its share only
    assert len(run_files(tmp_path)) == 4 and not (tmp_path / "sweep.csv").exists()
    assert (
        experiment("sparsity_sweep").main(sweep_flags(tiny_mnist, tmp_path, device, "--collect"))
        == 0
    )
    assert (tmp_path / "sweep.csv").read_bytes() == one_process_sweep


def test_paper_setting_is_the_papers_grid_with_the_papers_figures_beside_ours(
    tiny_mnist, tmp_path, device, capsys
):
    d = experiment("data_and_init")
    assert (
        d.main(["--data-dir", tiny_mnist, "--device", device, "--setting", "paper", "--list"]) == 0
    )
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 5 * 3 + 2 * 4 * 3  # Figure 3: 5 sizes x 3 seeds; Table 3
    assert sum("scoring_batch_size=10000" in line for line in lines) == 3
    assert "sparsity=0.9 " in captured.err and "one class" not in captured.out
    assert os.path.join("results", "data_and_init_paper", "runs") in captured.err  # its own folder

    out = tmp_path / "paper"
    assert (
        d.main(
            [
                "--data-dir",
                tiny_mnist,
                "--out",
                str(out),
                "--device",
                device,
                "--setting",
                "paper",
                "--epochs",
                "1",
                "--seeds",
                "1",
                "--models",
                "lenet300",
                "--batch-sizes",
                "1",
                "10",
            ]
        )
        == 0
    )
    assert {
        (r["composition"], r["batch_size"], r["sparsity"]) for r in rows_of(out / "batch.csv")
    } == {("random", "1", "0.9"), ("random", "10", "0.9")}
    init_table = (out / "init_table.md").read_text()
    assert init_table.startswith("| initialisation | LeNet-300-100 (90%) | paper |")
    assert "| VS-H (He) | " in init_table and init_table.count("1.88 ± 0.10") == 1
    batch_table = (out / "batch_table.md").read_text().splitlines()
    assert batch_table[2].startswith("| 1 | ") and batch_table[2].endswith(" | 1.94 |")
    assert batch_table[3].startswith("| 10 | ") and batch_table[3].endswith(" | 1.72 |")
    assert json.loads((out / "summary.json").read_text())["sparsity"] == {
        "lenet300": 0.9,
        "lenet5": 0.9,
    }

    with pytest.raises(SystemExit) as stopped:  # one class has too few images
        d.main(
            [
                "--data-dir",
                tiny_mnist,
                "--device",
                device,
                "--setting",
                "paper",
                "--compositions",
                "one class",
                "--list",
            ]
        )
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("note:")]
    assert stopped.value.code == 2 and len(err) == 1 and "one-class" in err[0]  # (notes: the data)


# ------------------------------------------------------------------------------------------
# Alive units against sparsity, and where a recurrent network's kept weights are
# ------------------------------------------------------------------------------------------


def test_alive_units_experiment_counts_the_units_of_every_layer(tiny_mnist, tmp_path, device):
    assert (
        experiment("alive_units").main(
            [
                "--data-dir",
                tiny_mnist,
                "--out",
                str(tmp_path),
                "--device",
                device,
                "--seeds",
                "1",
                "--sparsities",
                "0",
                "0.99",
            ]
        )
        == 0
    )
    rows = rows_of(tmp_path / "alive.csv")
    layers = {(r["model"], r["layer"]) for r in rows}
    assert layers == {("lenet300", name) for name in ("input", "fc1", "fc2", "fc3")} | {
        ("lenet5", name) for name in ("input", "conv1", "conv2", "fc1", "fc2")
    }
    for row in rows:
        if float(row["sparsity"]) == 0:  # nothing pruned: everything is alive
            assert row["alive"] == row["total"], row
    fc1 = next(
        r
        for r in rows
        if r["model"] == "lenet300" and r["layer"] == "fc1" and float(r["sparsity"]) == 0.99
    )
    assert 0 < int(fc1["alive"]) < 300 and int(fc1["compact_multiply_adds"]) < int(
        fc1["multiply_adds"]
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["models"]) == {"lenet300", "lenet5"}
    if figures_expected():
        assert_png(tmp_path / "alive-lenet300.png")
        assert_png(tmp_path / "alive-lenet5.png")


def test_recurrent_gates_shows_where_the_kept_weights_are(tiny_mnist, tmp_path, device):
    from extensions import cli

    runs = tmp_path / "runs"
    for method in ("snip", "random"):
        cli.run(
            cli.parse_arguments(
                [
                    "--model",
                    "lstm-s",
                    "--sparsity",
                    "0.95",
                    "--method",
                    method,
                    "--data-dir",
                    tiny_mnist,
                    "--iterations",
                    "2",
                    "--out",
                    str(runs / method),
                    "--device",
                    device,
                ]
            ),
            log=lambda line: None,
        )
    assert experiment("recurrent_gates").main(["--runs", str(runs)]) == 0
    found = json.loads((runs / "gates.json").read_text())
    assert sorted(run["method"] for run in found) == ["random", "snip"]
    for run in found:
        assert set(run["kept_fraction"]) == {"input_weight", "recurrent_weight"}
        assert set(run["kept_fraction"]["input_weight"]) == {"i", "f", "g", "o"}
        assert 0 <= run["units_with_input"] <= 128 and run["alive_units"] <= run["units_with_input"]
    random_run = next(run for run in found if run["method"] == "random")
    for fraction in random_run["kept_fraction"]["recurrent_weight"].values():
        assert 0.03 < fraction < 0.07  # random pruning keeps about 5% of every gate
    if figures_expected():
        assert_png(runs / "gates-lstm-s-95.png")


def test_protocol_ablation_runs_each_variant_records_both_figures_and_collects_the_same(
    tiny_mnist, tmp_path, device, capsys
):
    out = tmp_path / "g"
    flags = [
        "--data-dir",
        tiny_mnist,
        "--out",
        str(out),
        "--device",
        device,
        "--iterations",
        "10",
        "--seeds",
        "1",
        "--sparsities",
        "0.9",
        "--quiet",
    ]
    assert experiment("protocol_ablation").main(flags) == 0
    rows = {(r["model"], r["variant"]): r for r in rows_of(out / "runs.csv")}
    assert len(rows) == 7 + 2  # every variant on LeNet-300-100, two on LeNet-5
    assert (rows[("lenet300", "authors")]["init"], rows[("lenet300", "authors")]["momentum"]) == (
        "lecun",
        "0",
    )
    assert rows[("lenet300", "authors+momentum")]["momentum"] == "0.9"
    assert rows[("lenet300", "authors+decay")]["constant_lr"] == "False"
    assert rows[("lenet300", "ours+two-draws")]["two_draws"] == "True"
    assert rows[("lenet5", "ours")]["lr"] == "0.01" and rows[("lenet5", "authors")]["lr"] == "0.1"
    for r in rows.values():
        if r["diverged"] == "":
            assert int(r["params_kept"]) == {"lenet300": 26_661, "lenet5": 43_108}[r["model"]]
    trained = [
        json.loads(path.read_text())["result"] for path in sorted((out / "runs").glob("*.json"))
    ]
    trained = [result for result in trained if not result["diverged"]]
    assert len(trained) >= 7  # (at lr 0.1 a 10-step run may blow up; most do not)
    for result in trained:  # the figure is the best of the last five checkpoints
        assert [i for i, _ in result["test_checkpoints"]] == [2, 4, 6, 8, 10]
        assert result["best_of_last_five"] == min(e for _, e in result["test_checkpoints"])
        assert float(
            rows[(result["model"], result["variant"])]["best_of_last_five"]
        ) == pytest.approx(result["best_of_last_five"])
    assert "| 90% |" in (out / "table.md").read_text()
    if figures_expected():
        assert_png(out / "protocol_ablation.png")
    written = {name: (out / name).read_bytes() for name in ("runs.csv", "table.md", "summary.json")}
    capsys.readouterr()
    assert experiment("protocol_ablation").main(flags + ["--collect"]) == 0
    assert all((out / name).read_bytes() == contents for name, contents in written.items())


@pytest.mark.parametrize("protocol", ["ours", "authors"])
def test_an_experiments_run_is_snip_min_pys_run_under_either_protocol(
    tiny_mnist, tmp_path, device, protocol
):
    from extensions import cli

    common = experiment("common")
    args = cli.parse_arguments(
        [
            "--model",
            "lenet300",
            "--sparsity",
            "0.9",
            "--data-dir",
            tiny_mnist,
            "--device",
            device,
            "--epochs",
            "4",
            "--protocol",
            protocol,
            "--test-every",
            "0",
            "--out",
            str(tmp_path / "run"),
            "--no-download",
        ]
    )
    expected = cli.run(args, log=lambda line: None)
    dataset = common.data.load_dataset("mnist", tiny_mnist)
    result = common.train_once(
        dataset, "lenet300", 0.9, 0, 4, init=args.init, protocol_name=protocol
    )
    assert result["params_kept"] == expected["params_kept"]
    assert result["test_error"] == expected["test_error"]
    assert [r["train_loss"] for r in expected["history"]][-1] == pytest.approx(
        result["train_loss"], rel=1e-6
    )
    assert len({r["lr"] for r in expected["history"]}) == (
        1 if protocol == "authors" else 3
    )  # decays or not


def test_an_experiments_run_refuses_reinit_under_the_authors_two_draws_as_snip_min_py_does(
    tiny_mnist,
):
    import snip_min as sm

    common = experiment("common")
    dataset = common.data.load_dataset("mnist", tiny_mnist)
    with pytest.raises(sm.UsageError, match="--sanity-check reinit would draw a third"):
        common.train_once(
            dataset, "lenet300", 0.9, 0, 1, protocol_name="authors", sanity_check="reinit"
        )


def test_the_papers_figure_3_under_the_authors_protocol_is_a_grid_of_its_own(
    tiny_mnist, tmp_path, device, capsys
):
    d = experiment("data_and_init")
    flags = ["--data-dir", tiny_mnist, "--device", device, "--setting", "paper", "--part", "batch"]
    assert d.main(flags + ["--protocol", "authors", "--list"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 5 * 3 and "protocol=authors" in captured.err
    assert "init=lecun" in captured.err
    assert os.path.join("results", "data_and_init_paper_authors", "runs") in captured.err
    assert d.main(flags + ["--list"]) == 0  # ours: the committed keys, unchanged
    assert "protocol=" not in capsys.readouterr().err

    out = tmp_path / "authors"
    assert (
        d.main(
            flags
            + [
                "--protocol",
                "authors",
                "--out",
                str(out),
                "--epochs",
                "1",
                "--seeds",
                "1",
                "--batch-sizes",
                "1",
                "10",
            ]
        )
        == 0
    )
    assert {(r["init"], r["batch_size"]) for r in rows_of(out / "batch.csv")} == {
        ("lecun", "1"),
        ("lecun", "10"),
    }
    assert (
        "the authors' protocol: lecun, two draws, momentum 0"
        in (out / "batch_table.md").read_text()
    )
    assert json.loads((out / "summary.json").read_text())["protocol"] == "authors"


def test_scoring_batch_masks_compares_each_batchs_mask_with_the_all_image_mask(
    tiny_mnist, tmp_path, device
):
    out = tmp_path / "masks"
    assert (
        experiment("scoring_batch_masks").main(
            [
                "--data-dir",
                tiny_mnist,
                "--device",
                device,
                "--seeds",
                "2",
                "--batch-sizes",
                "1",
                "100",
                "--out",
                str(out),
                "--trained",
                str(tmp_path / "absent.json"),
            ]
        )
        == 0
    )
    saved = json.loads((out / "masks.json").read_text())
    rows = {(r["batch"], r["seed"]): r for r in saved["rows"]}
    assert len(rows) == 2 * 4  # 1, 100, all, all with random labels
    for seed in (0, 1):
        assert rows[("all", seed)]["overlap"] == 1.0
        assert 0 < rows[(1, seed)]["overlap"] < 1
        kept = sum(
            rows[(100, seed)][f"fc{i}_kept"] / 100 * size
            for i, size in ((1, 784 * 300), (2, 300 * 100), (3, 100 * 10))
        )
        assert kept <= 26_661  # the weights' share of kappa (biases too)
    table = (out / "table.md").read_text().splitlines()
    assert table[2].startswith("| 1 | ") and table[4].startswith("| all 270 | 1.000 ± 0.000 |")
    assert table[5].startswith("| all 270, random labels | ")
    with pytest.raises(SystemExit) as refused:  # a batch larger than the training split
        experiment("scoring_batch_masks").main(
            [
                "--data-dir",
                tiny_mnist,
                "--device",
                device,
                "--batch-sizes",
                "271",
                "--out",
                str(out),
            ]
        )
    assert refused.value.code == 2


def test_initial_loss_again_for_one_criterion_keeps_the_other_rows(tiny_mnist, tmp_path, device):
    out = tmp_path / "initial"

    def measure(*argv):
        base = ["--data-dir", tiny_mnist, "--device", device, "--models", "lenet300"]
        return experiment("initial_loss").main([*base, *argv, "--out", str(out)])

    assert measure("--seeds", "1", "--methods", "random", "magnitude") == 0
    before = json.loads((out / "losses.json").read_text())["rows"]
    stale = [dict(row, losses=[99.0]) if row["method"] == "random" else row for row in before]
    (out / "losses.json").write_text(json.dumps({"data": tiny_data(tiny_mnist), "rows": stale}))
    assert measure("--seeds", "1", "--methods", "random", "snip") == 0
    after = json.loads((out / "losses.json").read_text())["rows"]
    assert [(r["sparsity"], r["method"]) for r in after if r["check"] == "none"] == [
        (0.98, "random"),
        (0.98, "magnitude"),
        (0.9, "random"),
        (0.9, "magnitude"),
        (0.98, "snip"),
        (0.9, "snip"),
    ]
    assert [r for r in after if r["method"] == "magnitude"] == [
        r for r in before if r["method"] == "magnitude"
    ]
    assert [r for r in after if r["method"] == "random"] == [
        r for r in before if r["method"] == "random"
    ]  # measured again: 99.0 replaced
    assert "| LeNet-300-100 at 90% | magnitude |" in (out / "table.md").read_text()
    refused = experiment("common").sm.UsageError
    with pytest.raises(refused, match="holds 1 seed"):
        measure("--seeds", "2", "--methods", "random")
    text = (out / "losses.json").read_text().replace(tiny_data(tiny_mnist), "other images")
    (out / "losses.json").write_text(text)
    with pytest.raises(refused, match="measured on other data"):
        measure("--seeds", "1", "--methods", "random")
    assert "other images" in (out / "losses.json").read_text()  # refused before it measured


def tiny_data(folder):
    return experiment("common").data.load_dataset("mnist", folder).description


def test_initial_loss_is_the_first_loss_of_each_pruned_run(tiny_mnist, tmp_path, device):
    from extensions import cli

    out = tmp_path / "initial"
    assert (
        experiment("initial_loss").main(
            [
                "--data-dir",
                tiny_mnist,
                "--device",
                device,
                "--seeds",
                "2",
                "--models",
                "lenet300",
                "--methods",
                "snip",
                "random",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = json.loads((out / "losses.json").read_text())["rows"]
    assert [(r["sparsity"], r["method"], r["check"]) for r in rows] == [
        (sparsity, method, check)
        for sparsity in (0.98, 0.9)
        for method, check in (
            ("snip", "none"),
            ("snip", "shuffle"),
            ("snip", "reinit"),
            ("random", "none"),
        )
    ]
    found = {(r["sparsity"], r["method"], r["check"]): r["losses"] for r in rows}
    args = cli.parse_arguments(
        [
            "--model",
            "lenet300",
            "--sparsity",
            "0.98",
            "--sanity-check",
            "shuffle",
            "--seed",
            "1",
            "--iterations",
            "1",
            "--data-dir",
            tiny_mnist,
            "--device",
            device,
            "--out",
            str(tmp_path / "run"),
            "--no-download",
        ]
    )
    first = cli.run(args, log=lambda line: None)["history"][0][
        "train_loss"
    ]  # one step: its batch's loss
    assert found[(0.98, "snip", "shuffle")][1] == pytest.approx(first, rel=1e-6)
    assert found[(0.98, "snip", "none")] != found[(0.98, "snip", "shuffle")]
    table = (out / "table.md").read_text()
    assert "| LeNet-300-100 at 98% | SNIP | " in table and "ln 10 = 2.303" in table
    dataset = experiment("common").data.load_dataset("mnist", tiny_mnist)  # an iterative criterion
    settings = {
        "model": "lenet300",
        "sparsity": 0.98,
        "seed": 0,
        "method": "iterative-snip",
        "lr": 0.1,
        "batch_size": 100,
        "sanity_check": "reinit",
        "rounds": 100,
        "iterations": 1,
    }
    assert experiment("sanity_checks").perform(dataset, settings)["train_loss"] == pytest.approx(
        experiment("initial_loss").first_loss(
            dataset, "lenet300", 0.98, "iterative-snip", "reinit", 0
        ),
        rel=1e-6,
    )


def test_data_size_trains_on_the_first_n_images_and_on_all_of_them(tmp_path, device):
    import data

    folder = tmp_path / "data"
    data.write_synthetic_dataset("fashion-mnist", folder, train_count=300, test_count=100)
    out = tmp_path / "h"
    assert (
        experiment("data_size").main(
            [
                "--data-dir",
                str(folder),
                "--out",
                str(out),
                "--device",
                device,
                "--iterations",
                "4",
                "--seeds",
                "2",
                "--sizes",
                "150",
                "300",
                "--models",
                "lenet300",
                "--quiet",
            ]
        )
        == 0
    )
    rows = rows_of(out / "runs.csv")
    assert len(rows) == 2 * 2 * 2  # sparsities x sizes x seeds
    assert {r["data"].split(" (")[0] for r in rows if r["train_images"] == "150"} == {
        "Fashion-MNIST, the first 150 of 300 training images"
    }
    summary = json.loads((out / "summary.json").read_text())
    gap = summary["models"]["lenet300"]["sizes"]["300"]
    assert gap["seeds"] == 2 and gap["gap"][0] == pytest.approx(gap["pruned"][0] - gap["dense"][0])
    if figures_expected():
        assert_png(out / "data_size.png")
    with pytest.raises(SystemExit) as refused:  # more images than there are
        experiment("data_size").main(
            ["--data-dir", str(folder), "--out", str(out), "--sizes", "301", "--list"]
        )
    assert refused.value.code == 2


def test_first_steps_follows_each_setting_and_its_pytorch_twin(tiny_mnist, tmp_path):
    out = tmp_path / "steps"
    assert (
        experiment("first_steps").main(
            [
                "--data-dir",
                tiny_mnist,
                "--out",
                str(out),
                "--seeds",
                "1",
                "--steps",
                "3",
                "--sparsities",
                "0.9",
                "--power-iterations",
                "2",
            ]
        )
        == 0
    )
    rows = rows_of(out / "first_steps.csv")
    snip_min_rows = [r for r in rows if r["framework"] == "snip-min"]
    assert len(snip_min_rows) == 3 * 2 * 2 * 2  # inits x momenta x draws x scalings
    twins = [r for r in rows if r["framework"] == "pytorch"]
    if importlib.util.find_spec("torch") is not None:
        assert len(twins) == 4
        for twin in twins:
            ours = next(
                r
                for r in snip_min_rows
                if all(
                    r[k] == twin[k] for k in ("init", "momentum", "two_draws", "scaling", "seed")
                )
            )
            assert float(twin["first_loss"]) == pytest.approx(float(ours["first_loss"]), rel=1e-4)
        curves = json.loads((out / "losses.json").read_text())["curves"]
        for name, losses in curves.items():  # the same weights, batches and steps
            if name.endswith(" pytorch"):
                ours = curves[name.replace(" pytorch", " snip-min")]
                assert losses == pytest.approx(ours[: len(losses)], rel=1e-3)
    curves = json.loads((out / "losses.json").read_text())["curves"]
    assert all(1 <= len(losses) <= 3 for losses in curves.values())
    for r in rows:  # measured once per starting point, the same for both momenta
        twin = next(
            q
            for q in snip_min_rows
            if q["momentum"] != r["momentum"]
            and all(q[k] == r[k] for k in ("init", "two_draws", "scaling", "seed"))
        )
        assert r["sharpness"] == twin["sharpness"] and math.isfinite(float(r["sharpness"]))
    vs_h, lecun = (
        float(
            next(
                r["sharpness"]
                for r in snip_min_rows
                if r["init"] == init
                and r["two_draws"] == "False"
                and r["scaling"] == "standardised"
            )
        )
        for init in ("vs-h", "lecun")
    )
    assert vs_h > lecun  # He's doubled variance in every layer of an unrectified stack: sharper
    if figures_expected():
        assert_png(out / "first_steps.png")


# ------------------------------------------------------------------------------------------
# Every script fails as snip_min.py does: one line, exit status 2 for bad input, missing or
# damaged data and a missing CuPy (extensions/failures.py, shared); --debug keeps the status
# ------------------------------------------------------------------------------------------

SCRIPTS = sorted(
    os.path.basename(path)[: -len(".py")]
    for path in glob.glob(os.path.join(ROOT, "experiments", "*.py"))
    if not path.endswith("common.py")
)
READING_DATA = [
    name
    for name in SCRIPTS
    if name not in ("criteria_costs", "grasp_hessian", "recurrent_gates", "zoo_table")
]


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_refuses_a_bad_flag_in_one_line_with_status_2(name):
    result = helpers.run_python(
        [os.path.join(ROOT, "experiments", f"{name}.py"), "--out", "", "--no-such-flag"], cwd=ROOT
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(f"{name}.py: error:")


@pytest.fixture(scope="module")
def damaged_data(tiny_mnist, tmp_path_factory):
    """A data folder whose MNIST and Fashion-MNIST training labels are cut short."""
    folder = tmp_path_factory.mktemp("damaged")
    for dataset in ("mnist", "fashion-mnist"):
        shutil.copytree(os.path.join(tiny_mnist, "mnist"), folder / dataset)
        labels = folder / dataset / "train-labels-idx1-ubyte.gz"
        labels.write_bytes(labels.read_bytes()[:30])
    return folder


@pytest.mark.parametrize("problem", ["damaged", "not downloadable"])
@pytest.mark.parametrize("name", READING_DATA)
def test_every_script_reading_data_says_what_is_wrong_with_it_in_one_line_with_status_2(
    name, problem, damaged_data, tmp_path, device, monkeypatch, capsys
):
    import data
    from extensions import failures

    folder = damaged_data
    if problem == "not downloadable":
        folder = tmp_path / "no-data"
        for mirrors in ("MNIST_MIRRORS", "FASHION_MNIST_MIRRORS"):
            monkeypatch.setattr(data, mirrors, [(tmp_path / "no-mirror").as_uri() + "/"])
        monkeypatch.setattr(data.time, "sleep", lambda seconds: None)
    script = experiment(name)
    argv = ["--data-dir", str(folder), "--out", str(tmp_path / "out")]
    argv += [] if name == "first_steps" else ["--device", device]  # (first_steps: the CPU)
    capsys.readouterr()
    assert failures.run_script(script.main, script.__file__, argv) == 2
    lines = [
        line
        for line in capsys.readouterr().err.splitlines()
        if not line.startswith(("note:", "downloading "))
    ]
    expected = "is not a valid IDX file" if problem == "damaged" else "could not download"
    assert len(lines) == 1 and lines[0].startswith(f"{name}.py: error: ") and expected in lines[0]
    assert not folder.exists() or problem == "damaged"  # no empty folders left behind


def test_debug_shows_a_scripts_traceback_and_keeps_its_status(
    damaged_data, tmp_path, capsys, device
):
    from extensions import failures

    script = experiment("kept_connections")
    argv = ["--data-dir", str(damaged_data), "--out", str(tmp_path), "--debug", "--device", device]
    capsys.readouterr()
    assert failures.run_script(script.main, script.__file__, argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "Traceback (most recent call last):" and "data.DataError" in "\n".join(err)
    assert err[-1].startswith("kept_connections.py: error: ") and "not a valid IDX" in err[-1]


def test_defaults_grid_runs_a_part_and_collects_what_is_there(tiny_mnist, tmp_path, device):
    """Experiment I on parts of its grid: a run already done is not trained again; --collect
    over a larger part writes the table from the runs present ('not run' in a cell no run
    reached), names the missing run and exits with status 1."""
    out = tmp_path / "i"
    common = ["--data-dir", tiny_mnist, "--out", str(out), "--device", device, "--quiet"]
    part = [*common, "--models", "lenet300", "--iterations", "4", "--seeds", "1"]
    grid = experiment("defaults").main
    assert grid([*part, "--sparsities", "0", "0.9", "--remedies", "paper"]) == 0
    assert grid([*part, "--sparsities", "0", "--remedies", "paper", "clip-1"]) == 0
    rows = rows_of(out / "runs.csv")
    assert [(float(r["sparsity"]), r["remedy"]) for r in rows] == [(0, "paper"), (0, "clip-1")]
    assert float(rows[1]["clip_norm"]) == 1 and rows[0]["clip_norm"] == ""
    both = [*part, "--sparsities", "0", "0.9", "--remedies", "paper", "clip-1", "--collect"]
    assert grid(both) == 1
    assert len(rows_of(out / "runs.csv")) == 3
    table = (out / "table.md").read_text()
    assert "| 90% | " in table and table.count("not run") == 1 and " seed)" not in table
    summary = json.loads((out / "summary.json").read_text())
    assert summary["models"]["lenet300"]["paper"]["0.9"]["runs"] == 1
