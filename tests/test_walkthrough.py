"""walkthrough.ipynb, the notebook that runs SNIP one step at a time: its committed outputs are
those of one execution from top to bottom, and it still executes with the current code.

- The committed notebook (read as JSON, no Jupyter needed): its code cells were executed once,
  in order (execution counts 1..n), none ended in an error or printed a traceback, and the
  plots and numbers the notebook promises are in its outputs.
- Executing it (nbclient and ipykernel, pinned in requirements-dev.txt; the real MNIST subset
  in ../shared/data/mnist beside the repository or in $SNIP_MIN_REAL_MNIST, never downloaded):
  a copy runs top to bottom in a fresh kernel without an error, and the cells tagged
  'compare' (the network's shapes and the kept counts) print what the committed copy shows,
  up to float32 rounding in the last kept connection. Under --device strict or gpu the copy
  runs with DEVICE = "gpu", the one line the notebook says to change, on the suite's backend.
"""

import json
import os
import re
from pathlib import Path

import pytest

import helpers

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "walkthrough.ipynb"
REAL_MNIST_FOLDER = Path(os.environ.get("SNIP_MIN_REAL_MNIST", ROOT.parent / "shared" / "data" / "mnist"))
DEVICE_LINE = re.compile(r'^DEVICE = "cpu"', re.MULTILINE)
NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")      # 2,305 or 1.0, not the 1 of fc1


def committed():
    with open(NOTEBOOK, encoding="utf-8") as file:
        return json.load(file)


def code_cells(notebook):
    return [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


def text_of(cell, stream="stdout"):
    """Everything a cell printed on one stream, as one string."""
    return "".join("".join(output["text"]) for output in cell["outputs"]
                   if output["output_type"] == "stream" and output["name"] == stream)


def execution_problems(notebook):
    """What is wrong with a notebook as the record of one clean execution, top to bottom."""
    problems = []
    cells = code_cells(notebook)
    counts = [cell["execution_count"] for cell in cells]
    if counts != list(range(1, len(cells) + 1)):
        problems.append(f"execution counts {counts}, not 1..{len(cells)}: run it top to bottom in a fresh kernel")
    for number, cell in enumerate(cells, 1):
        for output in cell["outputs"]:
            if output["output_type"] == "error":
                problems.append(f"code cell {number} ended in {output['ename']}: {output['evalue']}")
            elif output["output_type"] == "stream" and "Traceback" in "".join(output["text"]):
                problems.append(f"code cell {number} printed a traceback")
    return problems


def images_in(notebook):
    return sum("image/png" in output.get("data", {}) for cell in code_cells(notebook) for output in cell["outputs"])


def test_the_execution_checker_fails_when_it_should():
    notebook = {"cells": [
        {"cell_type": "code", "execution_count": 2, "outputs": []},
        {"cell_type": "code", "execution_count": 1, "outputs": [
            {"output_type": "error", "ename": "ValueError", "evalue": "boom", "traceback": []}]},
        {"cell_type": "markdown", "source": "text"},
        {"cell_type": "code", "execution_count": 3, "outputs": [
            {"output_type": "stream", "name": "stderr", "text": ["Traceback (most recent call last):\n"]}]}]}
    problems = execution_problems(notebook)
    assert len(problems) == 3
    assert "1..3" in problems[0] and "ValueError: boom" in problems[1] and "traceback" in problems[2]
    notebook["cells"][0]["execution_count"], notebook["cells"][1]["execution_count"] = 1, 2
    notebook["cells"][1]["outputs"] = []
    notebook["cells"][3]["outputs"] = []
    assert execution_problems(notebook) == []


def test_committed_notebook_is_one_clean_execution_top_to_bottom():
    notebook = committed()
    assert execution_problems(notebook) == []
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    first = "".join(code_cells(notebook)[0]["source"])
    assert DEVICE_LINE.search(first) and "DATA_DIR = None" in first       # the settings a user changes


def test_committed_notebook_shows_every_step():
    """The numbers and pictures the walkthrough promises, in its outputs."""
    notebook = committed()
    printed = "\n".join(text_of(cell) for cell in code_cells(notebook))
    assert images_in(notebook) >= 4           # score histograms, kept pixels, validation curves, conv1 taps
    assert "largest difference from central differences" in printed              # 1. one backward, by hand
    assert "dL/dc (nudged)" in printed                                           # 2. the gates
    assert "kept at 98%" in printed and "5,332" in printed                       # 3. kept per layer
    assert "pixels with at least one kept connection" in printed                  # 4. what was kept
    for name in ("dense", "SNIP 98%", "random 98%"):                              # 5. training
        assert re.search(rf"^{re.escape(name)} .* test error \d+\.\d\d%$", printed, re.MULTILINE), name
    assert "conv1.weight" in printed and "4,311" in printed                      # 6. LeNet-5-Caffe at 99%
    assert "SNIP 98%, shuffled: test error" in printed                            # 7. the shuffle check


def same_up_to_rounding(fresh, saved):
    """Equal texts, except that each number may differ by 2 or by 0.1%: one kept connection
    at the threshold can change with the processor's float32 rounding."""
    if NUMBER.sub("#", fresh) != NUMBER.sub("#", saved):
        return False
    pairs = zip(NUMBER.findall(fresh), NUMBER.findall(saved))
    return all(abs(a - b) <= max(2.0, 1e-3 * abs(b))
               for a, b in ((float(x.replace(",", "")), float(y.replace(",", ""))) for x, y in pairs))


def test_same_up_to_rounding_fails_when_it_should():
    assert same_up_to_rounding("fc1 2,305 1.0%", "fc1 2,306 1.0%")
    assert not same_up_to_rounding("fc1 2,315 1.0%", "fc1 2,305 1.0%")
    assert not same_up_to_rounding("fc1 2,305 1.0%", "fc2 2,305 1.0%")
    assert not same_up_to_rounding("fc1 2,305", "fc1 2,305 1.0%")


def test_notebook_executes_with_the_current_code(request, monkeypatch, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    if not (REAL_MNIST_FOLDER / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"the walkthrough reads the real MNIST, not found in {REAL_MNIST_FOLDER} (tests never download)")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    device = request.config.getoption("--device")
    if device != "cpu":                           # the line the notebook says to change for a GPU
        first = next(cell for cell in notebook.cells if cell.cell_type == "code")
        assert DEVICE_LINE.search(first.source)
        first.source = DEVICE_LINE.sub('DEVICE = "gpu"', first.source)
    notebook.cells.append(nbformat.v4.new_code_cell(
        'print("backend:", sm.xp.__name__, "stand-in" if getattr(sm.xp, "STAND_IN", False) else "")'))
    for name, value in helpers.child_environment(SNIP_MIN_DATA=str(REAL_MNIST_FOLDER.parent)).items():
        monkeypatch.setenv(name, value)           # the kernel inherits the suite's backend and the data
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")   # figures as outputs
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    executed = json.loads(nbformat.writes(notebook))
    (tmp_path / "executed.ipynb").write_text(json.dumps(executed))    # to look at when this fails
    assert execution_problems(executed) == []
    cells = code_cells(executed)
    backend = text_of(cells[-1])
    expected = {"cpu": "backend: numpy", "strict": "stand-in", "gpu": "backend: cupy"}[device]
    assert expected in backend, backend
    compared = 0
    for before, after in zip(code_cells(committed()), cells):
        if "compare" in before.get("metadata", {}).get("tags", []):
            assert same_up_to_rounding(text_of(after), text_of(before)), \
                f"a 'compare' cell now prints\n{text_of(after)}\ninstead of\n{text_of(before)}\n" \
                f"(execute it again: jupyter execute --inplace {NOTEBOOK.name})"
            compared += 1
    assert compared == 3
    assert images_in(executed) == images_in(committed())
