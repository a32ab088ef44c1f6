"""walkthrough.ipynb, the notebook that runs SNIP one step at a time: its committed outputs are
those of one execution from top to bottom, and it still executes with the current code.

- The committed notebook (read as JSON, no Jupyter needed): its code cells were executed once,
  in order (execution counts 1..n), none ended in an error or printed a traceback, and the
  plots and numbers the notebook promises are in its outputs.
- Executing it (nbclient and ipykernel, pinned in requirements-dev.txt; the real MNIST subset
  in the folder $SNIP_MIN_REAL_MNIST names, never downloaded; skipped without it):
  a copy runs top to bottom in a fresh kernel without an error; the cells tagged 'compare'
  (the data, the network's shapes) print exactly what the committed copy shows, and those
  tagged 'counts' (the kept counts) the same up to float32 rounding at the threshold. Under
  --device strict or gpu the copy runs with DEVICE = "gpu", the one line the notebook says to
  change, on the suite's backend.
"""

import json
import re
from pathlib import Path

import pytest

import helpers

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "walkthrough.ipynb"
DEVICE_LINE = re.compile(r'^DEVICE = "cpu"', re.MULTILINE)
NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")  # 2,305 or 1.0, not the 1 of fc1
LINK = re.compile(r"\]\(([^)\s]+)\)")


def committed():
    with open(NOTEBOOK, encoding="utf-8") as file:
        return json.load(file)


def code_cells(notebook):
    return [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


def text_of(cell, stream="stdout"):
    """Everything a cell printed on one stream, as one string."""
    return "".join(
        "".join(output["text"])
        for output in cell["outputs"]
        if output["output_type"] == "stream" and output["name"] == stream
    )


def execution_problems(notebook):
    """What is wrong with a notebook as the record of one clean execution, top to bottom."""
    problems = []
    cells = code_cells(notebook)
    counts = [cell["execution_count"] for cell in cells]
    if counts != list(range(1, len(cells) + 1)):
        problems.append(
            f"execution counts {counts}, not 1..{len(cells)}: "
            "run it top to bottom in a fresh kernel"
        )
    for number, cell in enumerate(cells, 1):
        for output in cell["outputs"]:
            if output["output_type"] == "error":
                problems.append(
                    f"code cell {number} ended in {output['ename']}: {output['evalue']}"
                )
            elif output["output_type"] == "stream" and "Traceback" in "".join(output["text"]):
                problems.append(f"code cell {number} printed a traceback")
    return problems


def images_in(notebook):
    return sum(
        "image/png" in output.get("data", {})
        for cell in code_cells(notebook)
        for output in cell["outputs"]
    )


def test_the_execution_checker_fails_when_it_should():
    notebook = {
        "cells": [
            {"cell_type": "code", "execution_count": 2, "outputs": []},
            {
                "cell_type": "code",
                "execution_count": 1,
                "outputs": [
                    {
                        "output_type": "error",
                        "ename": "ValueError",
                        "evalue": "boom",
                        "traceback": [],
                    }
                ],
            },
            {"cell_type": "markdown", "source": "text"},
            {
                "cell_type": "code",
                "execution_count": 3,
                "outputs": [
                    {
                        "output_type": "stream",
                        "name": "stderr",
                        "text": ["Traceback (most recent call last):\n"],
                    }
                ],
            },
        ]
    }
    problems = execution_problems(notebook)
    assert len(problems) == 3
    assert (
        "1..3" in problems[0] and "ValueError: boom" in problems[1] and "traceback" in problems[2]
    )
    notebook["cells"][0]["execution_count"], notebook["cells"][1]["execution_count"] = 1, 2
    notebook["cells"][1]["outputs"] = []
    notebook["cells"][3]["outputs"] = []
    assert execution_problems(notebook) == []


def test_committed_notebook_is_one_clean_execution_top_to_bottom():
    notebook = committed()
    assert execution_problems(notebook) == []
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    first = "".join(code_cells(notebook)[0]["source"])
    assert DEVICE_LINE.search(first) and "DATA_DIR = None" in first  # the settings a user changes


def test_committed_notebook_shows_every_step():
    """The numbers and pictures the walkthrough promises, in its outputs."""
    notebook = committed()
    printed = "\n".join(text_of(cell) for cell in code_cells(notebook))
    assert images_in(notebook) >= 4  # score histograms, kept pixels, validation curves, conv1 taps
    assert "largest difference from central differences" in printed  # 1. one backward, by hand
    assert "dL/dc (nudged)" in printed  # 2. the gates
    assert "98% pruned" in printed  # 3. kept per layer
    assert "pixels with at least one kept connection" in printed  # 4. what was kept
    for name in ("dense", "SNIP 98%", "random 98%"):  # 5. training
        assert re.search(rf"^{re.escape(name)} .* test error \d+\.\d\d%$", printed, re.MULTILINE), (
            name
        )
    assert "conv1.weight" in printed and "4,311" in printed  # 6. LeNet-5-Caffe at 99%
    assert "SNIP 98%, shuffled: test error" in printed  # 7. the shuffle check


def test_committed_notebook_shows_what_its_text_claims():
    """The gates nudged give w * dL/dw; each layer's g sums to the same number, the logits'
    <z, dL/dz>; the kept table totals exactly kappa at each sparsity."""
    cells = code_cells(committed())
    nudged = next(text_of(cell) for cell in cells if "dL/dc (nudged)" in text_of(cell))
    for row in nudged.splitlines()[1:]:
        *_, product, difference = (float(value) for value in row.split())
        assert difference == pytest.approx(product, rel=1e-3), row
    sums = next(text_of(cell) for cell in cells if "sum over the batch of" in text_of(cell))
    per_layer = [float(row.split()[2]) for row in sums.splitlines() if row.startswith("fc")]
    common = float(sums.splitlines()[-1].split("=")[1])
    assert len(per_layer) == 3 and all(
        value == pytest.approx(common, abs=2e-4) for value in per_layer
    )
    table = next(text_of(cell) for cell in cells if "% pruned" in text_of(cell))
    total = next(row for row in table.splitlines() if row.startswith("total"))
    assert re.findall(r"\d[\d,]+(?= )", total)[1:] == ["26,661", "5,332", "2,666"], total


def test_every_link_in_the_notebook_exists():
    for cell in committed()["cells"]:
        if cell["cell_type"] == "markdown":
            for target in LINK.findall("".join(cell["source"])):
                if not re.match(r"^[a-z]+:", target):
                    assert (ROOT / target.split("#")[0]).exists(), target


def same_up_to_rounding(fresh, saved):
    """Equal texts, except that a count may differ by 2 and a percentage by 0.5: a kept
    connection or two at the threshold can change with the processor's float32 rounding
    (2 of conv1's 500 weights are 0.4%)."""
    if NUMBER.sub("#", fresh) != NUMBER.sub("#", saved):
        return False
    for x, y in zip(NUMBER.findall(fresh), NUMBER.findall(saved)):
        a, b = float(x.replace(",", "")), float(y.replace(",", ""))
        if abs(a - b) > (0.5 if "." in y else 2):
            return False
    return True


def test_same_up_to_rounding_fails_when_it_should():
    assert same_up_to_rounding("fc1 2,305 1.0%", "fc1 2,306 1.0%")
    assert not same_up_to_rounding("fc1 2,315 1.0%", "fc1 2,305 1.0%")
    assert not same_up_to_rounding("fc1 2,305 1.0%", "fc2 2,305 1.0%")
    assert not same_up_to_rounding("fc1 2,305", "fc1 2,305 1.0%")
    assert not same_up_to_rounding("fc1 2,305 3.0%", "fc1 2,305 1.0%")


def test_notebook_executes_with_the_current_code(request, monkeypatch, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    files = (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    )
    folder = helpers.real_mnist_folder()
    if folder is None or not all((folder / name).exists() for name in files):
        pytest.skip(
            f"the walkthrough reads the real MNIST: set {helpers.REAL_MNIST_VARIABLE} to a "
            f"folder holding its four IDX .gz files (tests never download)"
        )
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mnist").symlink_to(folder, target_is_directory=True)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    device = request.config.getoption("--device")
    if device != "cpu":  # the line the notebook says to change for a GPU
        first = next(cell for cell in notebook.cells if cell.cell_type == "code")
        assert DEVICE_LINE.search(first.source)
        first.source = DEVICE_LINE.sub('DEVICE = "gpu"', first.source)
    notebook.cells.append(
        nbformat.v4.new_code_cell(
            'print("backend:", sm.xp.__name__, '
            '"stand-in" if getattr(sm.xp, "STAND_IN", False) else "")'
        )
    )
    for name, value in helpers.child_environment(SNIP_MIN_DATA=str(tmp_path / "data")).items():
        monkeypatch.setenv(name, value)  # the kernel inherits the suite's backend and the data
    monkeypatch.setenv(
        "MPLBACKEND", "module://matplotlib_inline.backend_inline"
    )  # figures as outputs
    nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(ROOT)}},
    ).execute()
    executed = json.loads(nbformat.writes(notebook))
    (tmp_path / "executed.ipynb").write_text(json.dumps(executed))  # to look at when this fails
    assert execution_problems(executed) == []
    cells = code_cells(executed)
    backend = text_of(cells[-1])
    expected = {"cpu": "backend: numpy", "strict": "stand-in", "gpu": "backend: cupy"}[device]
    assert expected in backend, backend
    compared = {"compare": 0, "counts": 0}
    for before, after in zip(code_cells(committed()), cells):
        tags = before.get("metadata", {}).get("tags", [])
        same = {
            "compare": text_of(after) == text_of(before),
            "counts": same_up_to_rounding(text_of(after), text_of(before)),
        }
        for tag in set(tags) & set(same):
            assert same[tag], (
                f"a '{tag}' cell now prints\n{text_of(after)}\ninstead of\n{text_of(before)}\n"
                f"(on other data than the committed run's, or with changed code: then execute "
                f"it again, jupyter execute --inplace {NOTEBOOK.name})"
            )
            compared[tag] += 1
    assert compared == {"compare": 2, "counts": 2}
    assert images_in(executed) == images_in(committed())
