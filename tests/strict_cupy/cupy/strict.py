"""What the strict stand-in saw: host synchronisations, host-to-device transfers and, when
asked, kernel launches; and which CuPy series it mirrors where the two differ.

Every operation that makes the host wait for the device in real CuPy (float(x), x.get(),
a boolean mask, ...) is recorded as an Event(kind="sync", what, where); every copy of host
data to the device (cupy.asarray(numpy_array), a NumPy index array) as kind="transfer".
`where` is "path/to/file.py:LINE in FUNCTION" of the first stack frame outside this package,
i.e. the line of the program that asked for it.

    with cupy.strict.counting() as record:       # only the events inside the block
        train_step(...)
    assert record.syncs == 0, record.summary()

    cupy.strict.total()                          # every event since import (grouped)
    cupy.strict.reset_total()

Kernel launches (kind="launch") are recorded only inside counting(launches=True), and only
there (not in total(): they are too many to keep). A launch is every operation that computes
values into device memory: an arithmetic operator or ufunc, a reduction, a matrix product,
a copy, a fill (zeros, ones, full), a setitem, a gather by an index array. Views (slices,
reshape of a contiguous array, .T, as_strided, broadcast_to) and empty/empty_like launch
nothing. One operation counts as one launch, although CuPy may launch more than one kernel
for some (a sort, a scan, a matrix product of non-contiguous operands): the count is a
lower bound, exact for the elementwise work that dominates a recurrent step. CuPy's hidden
copy is counted too: an elementwise kernel whose input overlaps its output in memory (a
different array object whose bounds overlap, _kernel.pyx: _copy_in_args_if_needed) copies
that input first, one more launch ("copy: input overlaps out=").

The CuPy series (SERIES, 14 by default; SNIP_MIN_STRICT_CUPY=13 in the environment, or
`with cupy.strict.mirroring(13):`): CuPy 13.x calls Thrust with the `par` execution
policy, which synchronises the stream at the end of every algorithm (cupy_thrust.cu); 14.0
switched to `par_nosync`. So on 13 every Thrust call of a sort records a sync: sort of a
1-d array one, argsort two, and partition, which sorts fully unless the array is long and
its kth small (_routines_sorting.pyx: length >= 32, and kth+1 rounded up to a power of two
below 1024), one. On 14 none of them waits.

If the environment variable SNIP_MIN_STRICT_REPORT names a file, a JSON summary of total()
is written to it (atomically) when the interpreter exits: a test that runs a child process
can read it to prove that the child really computed on the stand-in. "{pid}" in the name is
replaced by the process id, so that several processes do not overwrite one another's report.
"""

import atexit
import collections
import contextlib
import json
import os
import sys
import tempfile

Event = collections.namedtuple("Event", "kind what where")

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
START_DIR = os.getcwd() + os.sep


class Record:
    """A list of Events, with counts and a readable summary."""

    def __init__(self, events=None):
        self.events = list(events) if events is not None else []

    @property
    def syncs(self):
        return sum(1 for event in self.events if event.kind == "sync")

    @property
    def transfers(self):
        return sum(1 for event in self.events if event.kind == "transfer")

    @property
    def launches(self):
        """Kernel launches (recorded only by counting(launches=True))."""
        return sum(1 for event in self.events if event.kind == "launch")

    def counts(self):
        """Counter of Event -> how often it happened."""
        return collections.Counter(self.events)

    def by_location(self, kind=None):
        """Counter of where -> how many events (of `kind`, if given) happened there."""
        return collections.Counter(
            event.where for event in self.events if kind is None or event.kind == kind
        )

    def summary(self):
        """One line per (kind, what, where), the most frequent first."""
        launches = f", {self.launches} launches" if self.launches else ""
        lines = [f"{self.syncs} syncs, {self.transfers} transfers{launches}"]
        for (kind, what, where), count in self.counts().most_common():
            lines.append(f"{count:>8}  {kind:<8}  {what:<32}  {where}")
        return "\n".join(lines)

    def __repr__(self):
        return f"<Record: {self.syncs} syncs, {self.transfers} transfers>"


_active = []  # the Records of the counting() blocks now open
_launch_records = []  # those of them that count kernel launches too
SYNCS = [0]  # how many syncs since import: a copy queued before the latest one has finished
SERIES = int(os.environ.get("SNIP_MIN_STRICT_CUPY", "14"))  # the CuPy series mirrored
_total = collections.Counter()  # Event -> count, since import (or reset_total)
_where_cache = {}  # (code, line) -> "file:line in function"
_display_cache = {}  # file name -> how it is shown


@contextlib.contextmanager
def counting(launches=False):
    """A fresh Record of every event inside the block (blocks may be nested); with
    launches=True, of every kernel launch too."""
    record = Record()
    _active.append(record)
    if launches:
        _launch_records.append(record)
    try:
        yield record
    finally:
        _active.remove(record)
        if launches:
            _launch_records.remove(record)


@contextlib.contextmanager
def mirroring(series):
    """Within the block, behave as CuPy `series` (13 or 14) where the two differ (see above)."""
    global SERIES
    if series not in (13, 14):
        raise ValueError(f"the stand-in mirrors CuPy 13 or 14, not {series!r}")
    saved, SERIES = SERIES, series
    try:
        yield
    finally:
        SERIES = saved


def total():
    """A Record of every event since import or the last reset_total(). Its events are
    grouped (each distinct event repeated by its count, in order of first appearance)."""
    return Record(event for event, count in _total.items() for _ in range(count))


def reset_total():
    _total.clear()


def _display(filename):
    shown = _display_cache.get(filename)
    if shown is None:
        shown = filename[len(START_DIR) :] if filename.startswith(START_DIR) else filename
        _display_cache[filename] = shown
    return shown


def where():
    """'file:line in function' of the first frame outside the stand-in package."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(PACKAGE_DIR):
        frame = frame.f_back
    if frame is None:
        return "<unknown>"
    key = (frame.f_code, frame.f_lineno)
    text = _where_cache.get(key)
    if text is None:
        code = frame.f_code
        text = f"{_display(code.co_filename)}:{frame.f_lineno} in {code.co_name}"
        _where_cache[key] = text
    return text


def record(kind, what):
    """Note one event; every open counting() block and the total receive it."""
    event = Event(kind, what, where())
    _total[event] += 1
    for each in _active:
        each.events.append(event)


def sync(what):
    SYNCS[0] += 1
    record("sync", what)


def pinned_host_bytes():
    """The page-locked host memory CuPy would hold now for host-to-device copies (in flight,
    and kept by its pinned pool): see cuda/memory.py, which sets _pinned_bytes."""
    return _pinned_bytes()


_pinned_bytes = None  # cuda.memory.pinned_bytes, set when that module loads


def launch(what):
    """Note one kernel launch in the counting(launches=True) blocks now open."""
    event = Event("launch", what, where())
    for each in _launch_records:
        each.events.append(event)


def transfer(what):
    record("transfer", what)


# ---------------------------------------------------------------------------------------
# The report file, for child processes
# ---------------------------------------------------------------------------------------

REPORT_VARIABLE = "SNIP_MIN_STRICT_REPORT"


def report(stand_in_version):
    """The JSON-able summary of total()."""
    events = [
        {"kind": event.kind, "what": event.what, "where": event.where, "count": count}
        for event, count in _total.most_common()
    ]
    return {
        "stand_in": stand_in_version,
        "mirrors": f"CuPy {SERIES}",
        "syncs": sum(c for e, c in _total.items() if e.kind == "sync"),
        "transfers": sum(c for e, c in _total.items() if e.kind == "transfer"),
        "events": events,
    }


def write_report(path, stand_in_version):
    """Write report() to `path` atomically: a temporary file beside it, then os.replace."""
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".strict-report-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(report(stand_in_version), stream, indent=1)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def write_report_at_exit(stand_in_version):
    path = os.environ.get(REPORT_VARIABLE)
    if path:
        atexit.register(write_report, path.replace("{pid}", str(os.getpid())), stand_in_version)
