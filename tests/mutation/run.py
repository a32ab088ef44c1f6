"""The mutation check: put each small bug of tests/mutation/mutants.py into a copy of the
project, one at a time, run the tests named for it, and say which bugs no test caught.

    python tests/mutation/run.py                 every mutant (see docs/tests.md for the time)
    python tests/mutation/run.py --list          the mutants, without running anything
    python tests/mutation/run.py NAME [NAME...]  only these (e.g. after changing a test)
    python tests/mutation/run.py --jobs 4        four mutants at a time, each in its own copy

The copy is the repository's files as git lists them (tracked, and untracked ones that are
not ignored: `git ls-files -co --exclude-standard`), in a temporary folder; the repository
itself is never changed. First the named tests run once on the unchanged copy (they must
pass, or nothing can be concluded; --no-baseline skips this, and --deselect TEST_ID leaves
out, everywhere, a test that fails on the unchanged code for reasons of its own). Then, for
each mutant, its edits are applied to the copy, `python -m pytest -x` runs its tests (the
first failure ends the run: the mutant is caught), and the file is put back. Hypothesis
draws with one seed (--hypothesis-seed 0) and forgets its examples between mutants, so a
run is repeatable.

A mutant whose text no longer occurs exactly once (or, for an edit anchored on a line, whose
anchor no longer does, or no longer has the text after it) is stale: the code moved or
changed. It is reported, not run, and counts as a failure of the check, as does a mutant
that survives without an explanation, an explained one that is now caught (its explanation
is out of date), and a test run that errs (a test id that does not exist, a time-out).
Exit status: 0 if none of these, 1 otherwise, 2 for bad arguments or a baseline that fails.

Needs git and the README's test dependencies (NumPy, pytest, hypothesis); PyTorch is not
needed: a test that would use it is skipped, and no mutant relies on one.
"""

import argparse
import concurrent.futures
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MUTANTS_FILE = os.path.join(HERE, "mutants.py")
PYTEST = ["-x", "-q", "-p", "no:cacheprovider", "--hypothesis-seed", "0"]


def load_mutants(path=MUTANTS_FILE):
    """The MUTANTS list of mutants.py (loaded from its path: tests/ is not a package)."""
    mutants = runpy.run_path(path)["MUTANTS"]
    names = [m.name for m in mutants]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise SystemExit(f"mutants.py names these mutants twice: {', '.join(repeated)}")
    return mutants


def repository_files(root=ROOT):
    """Every file git lists for the repository: tracked, and untracked but not ignored."""
    try:
        listed = subprocess.run(
            ["git", "-C", root, "ls-files", "-co", "--exclude-standard", "-z"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise SystemExit(f"cannot list the repository's files with git ({error})")
    paths = [path for path in listed.decode().split("\0") if path]
    return [path for path in paths if os.path.isfile(os.path.join(root, path))]  # not deleted


def copy_repository(destination, files, root=ROOT):
    """Copy `files` (paths relative to root) into destination, keeping their layout."""
    for path in files:
        target = os.path.join(destination, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            shutil.copy2(os.path.join(root, path), target)
        except FileNotFoundError:  # removed since git listed it (a run's output, say)
            pass


def staleness(mutant, root=ROOT):
    """None if every edit's old text occurs exactly once in the mutant's file, else why not."""
    path = os.path.join(root, mutant.path)
    if not os.path.isfile(path):
        return f"{mutant.path} does not exist"
    with open(path, encoding="utf-8") as file:
        text = file.read()
    for edit in mutant.edits:
        anchor, old, _ = edit if len(edit) == 3 else (None, *edit)
        if anchor is not None:
            count = text.count(anchor)
            if count != 1:
                return f"{wording(count)} in {mutant.path}: {shown(anchor)}"
            if old not in text[text.index(anchor) :]:
                return f"not found after {shown(anchor)} in {mutant.path}: {shown(old)}"
            continue
        count = text.count(old)
        if count != 1:
            return f"{wording(count)} in {mutant.path}: {shown(old)}"
    return None


def wording(count):
    return "not found" if count == 0 else f"found {count} times"


def shown(text):
    return repr(text.strip().splitlines()[0][:60])


def mutated(text, edits):
    """text with each edit made: (old, new) replaces the one occurrence of old; (anchor, old,
    new) the first occurrence of old after the one occurrence of anchor."""
    for edit in edits:
        anchor, old, new = edit if len(edit) == 3 else (None, *edit)
        start = 0 if anchor is None else text.index(anchor)
        at = text.index(old, start)
        text = text[:at] + new + text[at + len(old) :]
    return text


def run_tests(copy, tests, extra, timeout, first_failure_ends=True):
    """(pytest's exit status or 'timeout', seconds, the failing tests' or the error's lines:
    the first only if first_failure_ends, as pytest -x then stops there)."""
    environment = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")  # no stale bytecode
    shutil.rmtree(os.path.join(copy, ".hypothesis"), ignore_errors=True)  # no replayed examples
    options = PYTEST if first_failure_ends else [o for o in PYTEST if o != "-x"]
    started = time.perf_counter()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", *options, *extra, *tests],
            cwd=copy,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - started, f"no result in {timeout} s"
    seconds = time.perf_counter() - started
    lines = result.stdout.splitlines()
    failures = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    if not failures and result.returncode:
        failures = (lines or result.stderr.splitlines() or [""])[-1:]
    return result.returncode, seconds, "\n".join(failures[:1] if first_failure_ends else failures)


def verdict(mutant, status):
    """'caught', 'survived', 'explained' (survived, as its explanation says), 'caught though
    explained', or 'error' (the tests could not say)."""
    if status in (1, 2):  # a test failed, or the mutant broke the collection (an import)
        return "caught though explained" if mutant.explained else "caught"
    if status == 0:
        return "explained" if mutant.explained else "survived"
    return "error"


FAILING = ("survived", "caught though explained", "error", "stale")


def check(mutant, copy, extra, timeout):
    """Apply one mutant to the copy, run its tests, put the file back. Returns a result dict."""
    path = os.path.join(copy, mutant.path)
    with open(path, encoding="utf-8") as file:
        original = file.read()
    try:
        with open(path, "w", encoding="utf-8") as file:
            file.write(mutated(original, mutant.edits))
        status, seconds, line = run_tests(copy, mutant.tests, extra, timeout)
    finally:
        with open(path, "w", encoding="utf-8") as file:
            file.write(original)
    return {"mutant": mutant, "status": status, "seconds": seconds, "line": line}


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        description="Put each listed small bug into a copy of the project and run its tests."
    )
    parser.add_argument("names", nargs="*", help="run only these mutants (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at a time (default 1)")
    parser.add_argument(
        "--timeout", type=int, default=1200, help="seconds one mutant's tests may take"
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the run on the unchanged copy"
    )
    parser.add_argument(
        "--deselect",
        action="append",
        default=[],
        metavar="TEST_ID",
        help="leave out this test (file::name) everywhere, one that fails on the unchanged "
        "code for reasons of its own (repeatable; pytest --deselect)",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "strict", "gpu"),
        default="cpu",
        help="the backend the tests run on (pytest --device)",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.timeout < 1:
        parser.error("--jobs and --timeout must be at least 1")
    return args


def main(argv=None):
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    mutants = load_mutants()
    if args.names:
        known = {m.name for m in mutants}
        unknown = [name for name in args.names if name not in known]
        if unknown:
            print(f"error: no mutant named {', '.join(unknown)} (see --list)", file=sys.stderr)
            return 2
        mutants = [m for m in mutants if m.name in args.names]
    if args.list:
        for m in mutants:
            note = f"  (explained: {m.explained})" if m.explained else ""
            print(f"{m.area:<12} {m.name:<52} {m.path}: {' '.join(m.tests)}{note}")
        return 0

    started = time.perf_counter()
    stale = [(m, why) for m in mutants if (why := staleness(m)) is not None]
    stale_names = {m.name for m, _ in stale}
    runnable = [m for m in mutants if m.name not in stale_names]
    extra = ["--device", args.device] + [f"--deselect={test}" for test in args.deselect]
    files = repository_files()
    print(f"{len(mutants)} mutants, {len(stale)} stale; {len(files)} files copied per worker")
    results = [{"mutant": m, "status": "stale", "seconds": 0.0, "line": why} for m, why in stale]
    with tempfile.TemporaryDirectory(prefix="snip-min-mutants-") as folder:
        copies = []
        for job in range(min(args.jobs, max(len(runnable), 1))):
            copies.append(os.path.join(folder, f"copy{job}"))
            copy_repository(copies[-1], files)
        if not args.no_baseline and runnable:
            tests = sorted({test.split("::")[0] for m in runnable for test in m.tests})
            status, seconds, lines = run_tests(copies[0], tests, extra, args.timeout * 4, False)
            print(f"baseline: {' '.join(tests)}: status {status} in {seconds:.0f} s")
            if status != 0:
                print(f"error: the unchanged copy fails its tests:\n{lines}", file=sys.stderr)
                return 2
        free = list(copies)
        with concurrent.futures.ThreadPoolExecutor(len(copies)) as pool:

            def on_a_free_copy(mutant):
                copy = free.pop()  # list.pop and append are atomic under the GIL
                try:
                    return check(mutant, copy, extra, args.timeout)
                finally:
                    free.append(copy)

            for result in pool.map(on_a_free_copy, runnable):
                print(line_of(result), flush=True)
                results.append(result)
    for m, why in stale:
        print(f"STALE    {m.name}: {why}")
    print(summary(results, time.perf_counter() - started, args))
    return 1 if any(verdict_of(r) in FAILING for r in results) else 0


def verdict_of(result):
    return "stale" if result["status"] == "stale" else verdict(result["mutant"], result["status"])


def line_of(result):
    m, outcome = result["mutant"], verdict_of(result)
    shown = {"caught": "caught", "explained": "explained"}.get(outcome, outcome.upper())
    by = f"  {result['line']}" if result["line"] else ""
    return f"{shown:<9} {m.area:<12} {m.name:<52} {result['seconds']:6.1f} s{by}"


def summary(results, seconds, args):
    counts = {}
    for result in results:
        counts[verdict_of(result)] = counts.get(verdict_of(result), 0) + 1
    parts = ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items()))
    survivors = [r["mutant"].name for r in results if verdict_of(r) == "survived"]
    text = f"{len(results)} mutants: {parts}; {seconds / 60:.1f} minutes, --jobs {args.jobs}"
    if survivors:
        text += f"\nsurvived, unexplained: {', '.join(survivors)}"
    return text


if __name__ == "__main__":
    sys.exit(main())
