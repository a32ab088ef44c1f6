"""cupy.cuda.memory on the strict stand-in: the default pools.

Device memory is NumPy memory, freed when its last array goes; nothing is kept in the
device pool, so used_bytes() == total_bytes() and its free_all_blocks() has nothing to do.

The pinned (page-locked host) pool is modelled as CuPy keeps it (cupy/cuda/pinned_memory.pyx,
cupy/_core/core.pyx: _array_default): cupy.asarray(numpy_array) copies the data into a
pinned staging block and queues the copy to the device from it; the block is held until
that copy has finished (an event on a watch list), then goes back to the pool, which keeps
it for the next copy of the same size. Only free_all_blocks() gives the pool's blocks back,
and only those whose copy has finished. A copy counts as finished once the host has waited
for the device after it (any sync): the stand-in cannot know sooner. pinned_bytes() is what
CuPy would hold: blocks in flight and blocks kept by the pool.
"""

import collections

from .. import strict

_in_use = [0]  # bytes (rounded up to 512) in live device buffers, kept by cupy._core
PINNED_UNIT = 512  # CuPy's pinned pool rounds every block up to this
_in_flight = []  # (syncs so far when the copy was queued, size) of the blocks being copied from


class OutOfMemoryError(MemoryError):
    pass


class MemoryPool:
    def used_bytes(self):
        return _in_use[0]

    def total_bytes(self):
        return self.used_bytes()

    def free_bytes(self):
        return 0

    def n_free_blocks(self):
        return 0

    def free_all_blocks(self, stream=None):
        pass

    def set_limit(self, size=None, fraction=None):
        pass

    def get_limit(self):
        return 0


class PinnedMemoryPool:
    def __init__(self):
        self._free = collections.Counter()  # size -> blocks kept for reuse

    def n_free_blocks(self):
        _check_and_release()
        return sum(self._free.values())

    def free_all_blocks(self):
        _check_and_release()  # as CuPy's: the finished copies' blocks first
        self._free.clear()

    def _staging_block(self, size):
        """A block for one host-to-device copy: a kept one of this size, or a new one."""
        if self._free[size]:
            self._free[size] -= 1
        _check_and_release()  # as CuPy's watch list does when it is given a new copy
        _in_flight.append((strict.SYNCS[0], size))


def _check_and_release():
    """The blocks whose copy has finished (a sync came after it) go back to the pool."""
    while _in_flight and _in_flight[0][0] < strict.SYNCS[0]:
        _, size = _in_flight.pop(0)
        _default_pinned_pool._free[size] += 1


def stage_host_copy(nbytes):
    """Called for every cupy.asarray of host data with at least one dimension."""
    if nbytes:
        _default_pinned_pool._staging_block(-(-nbytes // PINNED_UNIT) * PINNED_UNIT)


def pinned_bytes():
    """The pinned host memory CuPy would hold now: copies in flight and the pool's blocks."""
    _check_and_release()
    kept = sum(size * count for size, count in _default_pinned_pool._free.items())
    return kept + sum(size for _, size in _in_flight)


_default_pool = MemoryPool()
_default_pinned_pool = PinnedMemoryPool()
strict._pinned_bytes = pinned_bytes


def get_default_memory_pool():
    return _default_pool


def get_default_pinned_memory_pool():
    return _default_pinned_pool
