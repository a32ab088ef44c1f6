"""The documentation's links, as GitHub renders README.md and docs/*.md.

For every page: each relative link names a file or folder that exists in the repository,
each image is a PNG or JPEG (by its first bytes), and each #anchor, in the page itself or
in another page (page.md#anchor), matches one of that page's headings under GitHub's
anchor rule. External http(s) and mailto links are not fetched. README.md stays within
300 lines, its reading guide names the sections of snip_min.py in the order of the file's
banners, and docs/README.md links every page of docs/. Every Python name a page mentions
exists, and the reading guide names for each file only what that file defines.
The checker is tested too, on pages written to a temporary folder, so that every check is
seen to fail when it should.
"""

import ast
import importlib
import pathlib
import re
import tokenize
import urllib.parse

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 300

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# [text](target) or ![alt](target), target optionally in <...>, optionally with a "title"
LINK = re.compile(
    r"(!?)\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*(<[^>]*>|[^\s()]+)(?:\s+\"[^\"]*\")?\s*\)"
)
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...
LINE_ANCHOR = re.compile(r"^L\d+(-L\d+)?$")  # GitHub's #L10-L20 on source files


def prose_lines(markdown):
    """(line number, text) of every line outside fenced and indented code blocks (an indented
    block starts after a blank line, as in CommonMark outside lists)."""
    lines, fence, previous_blank, in_indented_code = [], None, True, False
    for number, line in enumerate(markdown.splitlines(), start=1):
        opening = FENCE.match(line)
        if fence is not None:
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = None
            continue
        if opening:
            fence = opening.group(1)
            continue
        blank = not line.strip()
        indented = line.startswith("    ") or line.startswith("\t")
        in_indented_code = indented and not blank and (previous_blank or in_indented_code)
        if not in_indented_code:
            lines.append((number, line))
        previous_blank = blank
    return lines


def github_anchor(heading):
    """The anchor GitHub gives a heading: its text stripped and lowercased, every character
    that is not a letter, digit, space, hyphen or underscore removed, spaces made hyphens."""
    text = re.sub(
        r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\([^)]*\)", r"\1", heading
    )  # links -> their text
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(markdown):
    return [match.group(2) for _, line in prose_lines(markdown) if (match := HEADING.match(line))]


def anchors(markdown):
    """Every anchor of a page: duplicate headings get -1, -2, ... as on GitHub."""
    seen, result = {}, set()
    for heading in headings(markdown):
        base = anchor = github_anchor(heading)
        while anchor in result:
            seen[base] = seen.get(base, 0) + 1
            anchor = f"{base}-{seen[base]}"
        result.add(anchor)
    return result


def links(markdown):
    """(line number, is an image, target) of every link, outside code."""
    found = []
    for number, line in prose_lines(markdown):
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            found.append((number, False, definition.group(1).strip("<>")))
            continue
        line = INLINE_CODE.sub("", line)
        for match in LINK.finditer(line):
            found.append((number, match.group(1) == "!", match.group(3).strip("<>")))
    return found


def is_image_file(path):
    with open(path, "rb") as f:
        start = f.read(8)
    return start.startswith(PNG_SIGNATURE) or start.startswith(JPEG_SIGNATURE)


def link_problems(page, root=ROOT):
    """One line per broken link, image or anchor of the Markdown file `page`."""
    page = pathlib.Path(page).resolve()
    root = pathlib.Path(root).resolve()
    markdown = page.read_text(encoding="utf-8")
    name = page.relative_to(root)
    problems = []
    for number, is_image, target in links(markdown):
        where = f"{name}:{number}: {target}"
        if EXTERNAL.match(target):
            continue
        path_part, _, fragment = target.partition("#")
        path_part = urllib.parse.unquote(path_part)
        destination = (page.parent / path_part).resolve() if path_part else page
        if root != destination and root not in destination.parents:
            problems.append(f"{where}: leaves the repository")
            continue
        if not destination.exists():
            problems.append(f"{where}: no such file")
            continue
        if is_image:
            if not destination.is_file() or not is_image_file(destination):
                problems.append(f"{where}: not a PNG or JPEG image")
            continue
        if fragment:
            if destination.suffix.lower() == ".md" and destination.is_file():
                if urllib.parse.unquote(fragment) not in anchors(
                    destination.read_text(encoding="utf-8")
                ):
                    problems.append(f"{where}: no heading with anchor #{fragment}")
            elif not LINE_ANCHOR.match(fragment):
                problems.append(f"{where}: an anchor in a file that is not Markdown")
    return problems


# -- the documentation itself --------------------------------------------------------------


def test_the_pages_are_there():
    names = {page.relative_to(ROOT).as_posix() for page in PAGES}
    assert {"README.md", "docs/README.md", "docs/results.md", "docs/gpu.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_links_images_and_anchors(page):
    assert link_problems(page) == []


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines, more than {README_MAX_LINES}"


def test_the_reading_guide_follows_the_banners_of_snip_min():
    """README's reading guide names the sections of snip_min.py in the order of its
    `# ====` banners, each by the start of its banner's title."""
    source = (ROOT / "snip_min.py").read_text(encoding="utf-8").splitlines()
    banners = [
        (match.group(1), match.group(2))
        for above, line in zip(source, source[1:])
        if above.startswith("# ====") and (match := re.match(r"^# (\d+)\. (.+)$", line))
    ]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    guide = readme[readme.index("## Reading guide") :]
    guide = guide[: guide.index("\n## ")] if "\n## " in guide else guide
    items = re.findall(r"^(\d+)\. \*\*(.+?)\*\*", guide, flags=re.MULTILINE)
    assert [number for number, _ in items] == [number for number, _ in banners]
    for (number, title), (_, banner) in zip(items, banners):
        assert banner.startswith(title), f"section {number}: guide '{title}', banner '{banner}'"


def test_every_docs_page_is_reachable_from_the_index():
    index = ROOT / "docs" / "README.md"
    linked = {
        (index.parent / target.partition("#")[0]).resolve()
        for _, _, target in links(index.read_text(encoding="utf-8"))
    }
    missing = [
        page.name
        for page in PAGES
        if page.parent.name == "docs" and page != index and page.resolve() not in linked
    ]
    assert missing == []


# -- the checker ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "heading, anchor",
    [
        ("Results", "results"),
        ("How close, and why not closer", "how-close-and-why-not-closer"),
        ("A. Sparsity: SNIP against random pruning", "a-sparsity-snip-against-random-pruning"),
        ("Reading guide to `snip_min.py`", "reading-guide-to-snip_minpy"),
        (
            "What a run writes: `results.json` and `masks.npz`",
            "what-a-run-writes-resultsjson-and-masksnpz",
        ),
        ("Learning rate of the dense LeNet-5-Caffe", "learning-rate-of-the-dense-lenet-5-caffe"),
        ("  Spaces  inside ", "spaces--inside"),
        ("See [the GPU page](gpu.md)", "see-the-gpu-page"),
        ("κ and 3×3", "κ-and-33"),
    ],
)
def test_github_anchor_rule(heading, anchor):
    assert github_anchor(heading) == anchor


def test_duplicate_headings_get_numbered_anchors():
    markdown = "# Notes\n\n## Notes\n\ntext\n\n## Notes\n"
    assert anchors(markdown) == {"notes", "notes-1", "notes-2"}


def test_code_is_neither_heading_nor_link():
    markdown = (
        "# Title\n\n```\n# not a heading\n[a](missing.md)\n```\n\n"
        "    # an indented command\n    [b](missing.md)\n\n`[c](missing.md)` and [d](real.md)\n"
    )
    assert headings(markdown) == ["Title"]
    assert [target for _, _, target in links(markdown)] == ["real.md"]


@pytest.fixture
def site(tmp_path):
    """A tiny repository: a page, a second page with two headings, a PNG and a text file."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## A section, with punctuation!\n")
    (tmp_path / "picture.png").write_bytes(PNG_SIGNATURE + b"rest of the image")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def problems_of(site, body):
    page = site / "README.md"
    page.write_text("# Top\n\n## Second part\n\n" + body + "\n")
    return link_problems(page, root=site)


def test_the_checker_accepts_good_links(site):
    body = (
        "[here](#second-part) [there](docs/other.md#a-section-with-punctuation) "
        "[page](docs/other.md) [folder](docs/) [web](https://example.org/#x) "
        "![picture](picture.png)"
    )
    assert problems_of(site, body) == []


@pytest.mark.parametrize(
    "body, complaint",
    [
        ("[gone](docs/missing.md)", "no such file"),
        ("![gone](missing.png)", "no such file"),
        ("![text](notes.txt)", "not a PNG or JPEG image"),
        ("[bad](#no-such-heading)", "no heading with anchor #no-such-heading"),
        ("[bad](docs/other.md#a-section)", "no heading with anchor #a-section"),
        ("[outside](../elsewhere.md)", "leaves the repository"),
        ("[anchor](notes.txt#part)", "an anchor in a file that is not Markdown"),
    ],
)
def test_the_checker_finds_each_kind_of_breakage(site, body, complaint):
    problems = problems_of(site, body)
    assert len(problems) == 1 and problems[0].endswith(complaint), problems


# -- the Python names the pages mention ------------------------------------------------------
#
# A renamed or moved function must not leave its old name in a page. Three checks:
#   - `module.name` in code (inline or a block), for every module of the project (and `sm`,
#     the name the pages give snip_min), names something that module has;
#   - `import x` and `from x import a, b` in code import what exists;
#   - a bare name in inline code that looks like Python (snake_case, CamelCase, or called,
#     `name(...)`) is a name the project's Python uses somewhere (as an identifier, or inside
#     a string, as the keys of results.json are).
# And the README's reading guide says where things are: each name it gives for snip_min.py,
# and for each module in its table, is a name in that file.

# A page names snip_min.py's functions as `sm.name` or `snip_min.name`, and an extension's as
# `criteria.name` or `extensions.criteria.name`.
EXTENSIONS = sorted(
    path.stem for path in (ROOT / "extensions").glob("*.py") if path.stem != "__init__"
)
PROJECT_MODULES = sorted(path.stem for path in ROOT.glob("*.py")) + ["extensions"] + EXTENSIONS
ALIASES = {"sm": "snip_min", **{name: f"extensions.{name}" for name in EXTENSIONS}}
FILE_SUFFIXES = {"py", "md", "json", "npz", "csv", "png", "txt", "gz", "sh", "ini"}
INLINE_SPAN = re.compile(r"(`+)(.+?)\1")
QUALIFIED = re.compile(
    r"(?<![\w./-])("
    + "|".join(PROJECT_MODULES + list(ALIASES))
    + r")\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)"
)
IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import\s+([\w, ]+)|import\s+([\w.]+))", re.MULTILINE)
PYTHON_LOOKING = re.compile(r"^([A-Za-z_]\w*)(\(.*\))?$")
CAMEL_CASE = re.compile(r"^[A-Z][a-z0-9]+[A-Z]\w*$|^[A-Z][a-z]+\d*[A-Z]?\w*$")


def code_texts(markdown):
    """Every piece of code in a page: (line number, text) of each inline code span and of each
    line of a fenced or indented code block."""
    prose = dict(prose_lines(markdown))
    texts = []
    for number, line in enumerate(markdown.splitlines(), start=1):
        if number in prose:
            texts += [(number, match.group(2).strip()) for match in INLINE_SPAN.finditer(line)]
        else:
            texts.append((number, line))
    return texts


def python_words(paths):
    """Every identifier in the Python files `paths`, and every identifier-like word inside
    their strings (in a file that is not Python, every word)."""
    words = set()
    for path in paths:
        if path.suffix != ".py":  # a shell script: every word
            words.update(re.findall(r"[A-Za-z_]\w*", path.read_text(encoding="utf-8")))
            continue
        with open(path, "rb") as file:
            for token in tokenize.tokenize(file.readline):
                if token.type == tokenize.NAME:
                    words.add(token.string)
                elif token.type in (tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", -1)):
                    words.update(re.findall(r"[A-Za-z_]\w*", token.string))
    return words


def defined_names(path):
    """What a Python file defines: its functions, classes and module-level names, their
    methods and class attributes, and the attributes its methods assign (self.name = ...)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    for node in tree.body + [n for c in tree.body if isinstance(c, ast.ClassDef) for n in c.body]:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, (ast.AnnAssign, ast.AugAssign))
            else []
        )
        names.update(
            t.id for target in targets for t in ast.walk(target) if isinstance(t, ast.Name)
        )
    return names


def resolves(module_name, attributes):
    """True if module_name.a.b... exists, importing submodules (extensions.cli) on the way."""
    path = ALIASES.get(module_name, module_name)
    try:
        value = importlib.import_module(path)
    except ImportError:
        return False
    for attribute in attributes:
        if not hasattr(value, attribute):
            try:
                value = importlib.import_module(f"{path}.{attribute}")
            except ImportError:
                return False
        else:
            value = getattr(value, attribute)
        path = f"{path}.{attribute}"
    return True


def stale_names(markdown, known_words):
    """One line per Python name in a page that the project does not have."""
    problems = []
    for number, text in code_texts(markdown):
        for module_name, chain in QUALIFIED.findall(text):
            attributes = chain.split(".")
            if attributes[0] in FILE_SUFFIXES:
                continue  # snip_min.py, results.json: files
            if not resolves(module_name, attributes):
                problems.append(f"{number}: {module_name}.{chain}")
        for source, names, plain in IMPORT.findall(text):
            if plain and not resolves(plain, []):
                problems.append(f"{number}: import {plain}")
            for name in filter(None, (n.strip() for n in names.split(","))):
                if not resolves(source, [name]):
                    problems.append(f"{number}: from {source} import {name}")
    for number, line in prose_lines(markdown):
        for match in INLINE_SPAN.finditer(line):
            word = PYTHON_LOOKING.match(match.group(2).strip())
            if not word:
                continue
            name, called = word.groups()
            looks_like_python = "_" in name.strip("_") or CAMEL_CASE.match(name) or called
            if looks_like_python and name not in known_words:
                problems.append(f"{number}: {name}")
    return problems


@pytest.fixture(scope="module")
def known_words():
    implementation = [
        *ROOT.glob("*.py"),
        *(ROOT / "extensions").glob("*.py"),
        *(ROOT / "experiments").glob("*.*"),
        *(ROOT / "scripts").glob("*"),
        *(ROOT / "tests").glob("test_*.py"),
    ]  # a page may name a test
    return python_words(implementation)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_python_name_in_a_page_exists(page, known_words):
    assert stale_names(page.read_text(encoding="utf-8"), known_words) == []


def guide_names(readme):
    """{file: the names the reading guide gives for it}: for snip_min.py those of its numbered
    sections, for every other module those of its row in the guide's table."""
    guide = readme[readme.index("## Reading guide") :]
    guide = guide[: guide.index("\n## ")] if "\n## " in guide else guide
    names = {"snip_min.py": set()}
    for number, line in prose_lines(guide):
        spans = [match.group(2).strip() for match in INLINE_SPAN.finditer(line)]
        row = re.match(r"^\|\s*\[?`([\w/]+\.py)`", line)
        file = row.group(1) if row else None
        identifiers = {
            word.group(1)
            for span in spans  # (N, C, F: the shape legend)
            if (word := PYTHON_LOOKING.match(span)) and len(word.group(1)) > 1
        }
        if file:
            names.setdefault(file, set()).update(identifiers - {file.removesuffix(".py")})
        elif not line.startswith("|"):
            names["snip_min.py"].update(identifiers)
    return names


def test_the_reading_guide_names_what_each_file_defines():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    named = guide_names(readme)
    assert len(named) >= 5, named  # snip_min.py and the modules beside it
    for file, names in named.items():
        defined = defined_names(ROOT / file)
        missing = sorted(name for name in names if name not in defined)
        assert missing == [], (
            f"the reading guide names {missing} for {file}, which has no such name"
        )


def test_defined_names_are_definitions_not_mentions(tmp_path):
    path = tmp_path / "module.py"
    path.write_text(
        "import os\nLIMIT = 3\n\n\ndef f(x):\n    return os.path.join(x, 'g')\n\n\n"
        "class C:\n    kind = 1\n\n    def m(self):\n        self.value = h(2)\n"
    )
    assert defined_names(path) == {"LIMIT", "f", "C", "kind", "m", "value"}


def test_the_name_checker_finds_stale_names():
    known = {"connection_sensitivity", "BatchNorm"}
    page = (
        "# Page\n\nIt calls `connection_sensitivity` and `sm.snip`, `BatchNorm`, "
        "`results.json`.\n\n"
        "Stale: `alive_unit_count`, `sm.no_such_function`, `compaction.compact.nothing`, "
        "`OldLayer`,\n"
        "`gone(model)`, `models.py` is a file.\n\n"
        "    from snip_min import snip, vanished\n    import no_such_module\n"
    )
    problems = stale_names(page, known)
    assert [problem.split(": ", 1)[1] for problem in problems] == [
        "sm.no_such_function",
        "compaction.compact.nothing",
        "from snip_min import vanished",
        "import no_such_module",
        "alive_unit_count",
        "OldLayer",
        "gone",
    ]


# -- paths: what a clone has ---------------------------------------------------------------


def tracked_files(root=ROOT):
    """The repository's files as git tracks them (every file under root outside .git when it
    is not a git checkout)."""
    import subprocess

    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True, check=False
    )
    if listing.returncode == 0:
        return [root / name for name in listing.stdout.split("\0") if name]
    return [path for path in root.rglob("*") if path.is_file() and ".git" not in path.parts]


SIBLING = "/".join(["..", "shared"])  # the folder beside a checkout that a clone does not have
ABSOLUTE = re.compile(r"(?<![\w.])(/(?:work|home|root|tmp|Users|mnt|scratch)/|[A-Z]:\\\\)")
# Files that must name absolute paths: the data loader's tests of archives that try to
# write outside their folder, and this file's own examples of what the test refuses.
ABSOLUTE_ON_PURPOSE = {"tests/test_data.py", "tests/test_docs.py"}


def test_no_tracked_file_names_a_folder_outside_the_repository():
    """A clone has no folder beside it: commands say --data-dir DIR, tests read
    $SNIP_MIN_REAL_MNIST, and committed outputs (results/, the notebook) show no path of the
    machine they were made on."""
    beside, absolute = [], []
    for path in tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue  # a picture, an archive
        name = path.relative_to(ROOT).as_posix()
        if SIBLING in text:
            beside.append(name)
        if name not in ABSOLUTE_ON_PURPOSE and ABSOLUTE.search(text):
            absolute.append(f"{name}: {ABSOLUTE.search(text).group(0)}")
    assert beside == [] and absolute == []


def test_the_path_check_finds_what_it_looks_for():
    assert ABSOLUTE.search("note: /work/x/mnist/train.gz is") and ABSOLUTE.search("C:\\\\data")
    assert not ABSOLUTE.search("results/mnist/lenet5 and docs/tmp/ and https://x.org/home/")
    assert SIBLING == "../" + "shared"
