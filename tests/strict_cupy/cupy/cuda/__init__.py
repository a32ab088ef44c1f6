"""cupy.cuda on the strict stand-in: one pretend device, its streams, memory hooks and pools.

Synchronising a stream or the device is recorded as a host synchronisation, as it makes
the host wait for the device in CuPy.
"""

from .. import strict
from . import memory, memory_hook, runtime
from .memory import MemoryPool, OutOfMemoryError, PinnedMemoryPool
from .memory_hook import MemoryHook


def is_available():
    return True


def get_device_id():
    return 0


class Device:
    """The one device (id 0)."""

    def __init__(self, device=None):
        device = 0 if device is None else int(device)
        if device != 0:
            raise runtime.CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")
        self.id = device

    compute_capability = "90"

    def use(self):
        pass

    def synchronize(self):
        strict.sync("Device.synchronize()")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(("Device", self.id))

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


class Stream:
    """A stream; Stream.null is the default one. `with stream:` makes it current."""

    null = None  # set below

    def __init__(self, null=False, non_blocking=False, ptds=False):
        self.is_null = null
        self.ptr = 0 if null else id(self)

    def synchronize(self):
        strict.sync("Stream.synchronize()")

    def use(self):
        _current[:] = [self]
        return self

    def __enter__(self):
        _current.append(self)
        return self

    def __exit__(self, *exc):
        _current.pop()

    def __repr__(self):
        return f"<Stream {self.ptr}>"


Stream.null = Stream(null=True)
_current = [Stream.null]


def get_current_stream(device_id=-1):
    return _current[-1]


__all__ = [
    "Device",
    "MemoryHook",
    "MemoryPool",
    "OutOfMemoryError",
    "PinnedMemoryPool",
    "Stream",
    "get_current_stream",
    "get_device_id",
    "is_available",
    "memory",
    "memory_hook",
    "runtime",
]
