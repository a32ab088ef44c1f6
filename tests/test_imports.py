"""The house has one direction: the method (snip_min.py) at the bottom, everything else above
it, and no module importing one that imports it back.

- Every module of the project imports on its own, in a fresh interpreter: the top level,
  extensions/, the experiments and the benchmark (each with its own folder on the path, as
  running it gives it).
- Reading every import of every Python file (function-level ones too), the project's
  modules form no cycle. The only import exempt is the one in snip_min.py's main block,
  which hands `python snip_min.py` over to the command line.
- snip_min.py imports nothing of the project but data.py.
- `python snip_min.py` loads snip_min.py once: the main block makes the running file the
  module `snip_min`, so the command line's `import snip_min` finds it instead of loading it
  a second time.
The checker is tested too, on a cycle written to a temporary folder.
"""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def project_files(root=ROOT):
    """{module name: path} of every Python module of the project, tests aside: the top level,
    extensions/ (as extensions.NAME), experiments/ (as experiments.NAME) and scripts/."""
    files = {path.stem: path for path in root.glob("*.py")}
    for folder in ("extensions", "experiments", "scripts"):
        for path in sorted((root / folder).glob("*.py")):
            name = folder if path.stem == "__init__" else f"{folder}.{path.stem}"
            files[name] = path
    return files


def is_main_block(node):
    """True for `if __name__ == "__main__":`."""
    test = node.test if isinstance(node, ast.If) else None
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )


def imported_names(path, skip_main_block=False):
    """Every module name an import statement of the file names, wherever it stands (at the
    top, in a function, in a branch): `import a.b` gives a.b, `from a import b` gives a and
    a.b (b may be a module). With skip_main_block, not those of `if __name__ == "__main__"`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = set()
    if skip_main_block:
        for node in tree.body:
            if is_main_block(node):
                skipped.update(id(inner) for inner in ast.walk(node))
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def import_graph(root=ROOT, exempt=("snip_min",)):
    """{module: the project's modules it imports}. A script in experiments/ finds its
    neighbours as top-level names (`import common`), as running it does."""
    files = project_files(root)
    graph = {}
    for name, path in files.items():
        folder = name.split(".")[0] if "." in name else None
        edges = set()
        for imported in imported_names(path, skip_main_block=name in exempt):
            for candidate in (imported, f"{folder}.{imported}" if folder else None):
                if candidate in files and candidate != name:
                    edges.add(candidate)
        graph[name] = edges
    return graph


def cycles(graph):
    """One list of modules per import cycle found (depth-first, each cycle once)."""
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for neighbour in sorted(graph.get(node, ())):
            if state.get(neighbour) == "open":
                found.append(stack[stack.index(neighbour) :] + [neighbour])
            elif neighbour not in state:
                visit(neighbour)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


# -- the project itself ---------------------------------------------------------------------

MODULES = sorted(project_files())


@pytest.mark.parametrize("module", MODULES)
def test_every_module_imports_on_its_own(module):
    """A fresh interpreter imports the module first, before anything else of the project."""
    folder, _, leaf = module.rpartition(".")
    if folder in ("experiments", "scripts"):  # a script: its own folder on the path
        path, name = str(ROOT / folder), leaf
    else:
        path, name = str(ROOT), module
    code = f"import sys; sys.path.insert(0, {path!r}); import {name}"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr.strip().splitlines()[-1:]


def test_the_imports_form_no_cycle():
    graph = import_graph()
    assert {"snip_min", "models", "data", "extensions.cli", "experiments.common"} <= set(graph)
    assert cycles(graph) == []


def test_the_method_imports_nothing_of_the_project_but_the_data():
    assert import_graph()["snip_min"] == {"data"}
    assert import_graph()["data"] == set()


def test_only_the_main_block_of_snip_min_imports_the_command_line():
    with_main_block = import_graph(exempt=())["snip_min"]
    assert with_main_block == {"data", "extensions", "extensions.cli"}


def test_python_snip_min_py_loads_the_file_once():
    """-X importtime lists every module the interpreter loads through the import system; the
    script itself runs as __main__, so `snip_min` in that list would be a second copy."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "snip_min.py", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "usage: snip_min.py" in result.stdout
    loaded = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()]
    assert "extensions.cli" in loaded and "models" in loaded  # the command line was imported ...
    assert "snip_min" not in loaded  # ... and it found this file's module, not a copy


# -- the checker ----------------------------------------------------------------------------


def test_the_checker_finds_a_cycle_through_a_function_level_import(tmp_path):
    (tmp_path / "extensions").mkdir()
    (tmp_path / "extensions" / "__init__.py").write_text('"""A package."""\n')
    (tmp_path / "snip_min.py").write_text(
        "import data\n\n\ndef late():\n    from extensions import cli\n\n\n"
        'if __name__ == "__main__":\n    import models\n'
    )
    (tmp_path / "data.py").write_text("import numpy\n")
    (tmp_path / "models.py").write_text("import snip_min as sm\n")
    (tmp_path / "extensions" / "cli.py").write_text("import models\n")
    graph = import_graph(tmp_path)
    assert graph["snip_min"] == {"data", "extensions", "extensions.cli"}  # not the main block's
    assert cycles(graph) == [["extensions.cli", "models", "snip_min", "extensions.cli"]]
    assert cycles(import_graph(tmp_path, exempt=())) != []


def test_the_checker_accepts_one_direction(tmp_path):
    (tmp_path / "snip_min.py").write_text("import data\n")
    (tmp_path / "data.py").write_text("import os\n")
    (tmp_path / "models.py").write_text("import snip_min\nfrom data import read\n")
    assert cycles(import_graph(tmp_path)) == []
