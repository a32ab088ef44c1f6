"""cupy.cuda.memory on the strict stand-in: the default pools, without any caching.

Device memory is NumPy memory, freed when its last array goes; nothing is kept in a pool,
so used_bytes() == total_bytes() and free_all_blocks() has nothing to do.
"""

_in_use = [0]  # bytes (rounded up to 512) in live device buffers, kept by cupy._core


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
    def n_free_blocks(self):
        return 0

    def free_all_blocks(self):
        pass


_default_pool = MemoryPool()
_default_pinned_pool = PinnedMemoryPool()


def get_default_memory_pool():
    return _default_pool


def get_default_pinned_memory_pool():
    return _default_pinned_pool
