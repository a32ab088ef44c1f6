"""cupy.cuda.memory_hook: MemoryHook, as in CuPy (cupy/cuda/memory_hook.pyx).

A hook is installed with `with hook:`. While it is installed the stand-in calls
    malloc_preprocess(device_id, size, mem_size)
    malloc_postprocess(device_id, size, mem_size, mem_ptr, pmem_id)
when a device array with new memory is created, and
    free_preprocess(device_id, mem_size, mem_ptr, pmem_id)
    free_postprocess(device_id, mem_size, mem_ptr, pmem_id)
when that memory is freed, all with keyword arguments, as CuPy's memory pool calls them.
mem_size is the size rounded up to CuPy's 512-byte allocation unit; mem_ptr and pmem_id
are the id() of the NumPy buffer that plays the device memory. The stand-in has no real
pool: it behaves as a pool that always finds a cached chunk, so alloc_preprocess and
alloc_postprocess (a new cudaMalloc) are never called. CuPy keeps the installed hooks per
thread; the stand-in keeps one set for the whole process.
"""

import collections

_hooks = collections.OrderedDict()  # name -> installed MemoryHook


def get_memory_hooks():
    return _hooks


class MemoryHook:
    """Base class of memory hooks: override the callbacks you need (all do nothing)."""

    name = "MemoryHook"

    def __enter__(self):
        if self.name in _hooks:
            raise KeyError(f"memory hook {self.name} already exists")
        _hooks[self.name] = self
        return self

    def __exit__(self, *exc):
        del _hooks[self.name]

    def alloc_preprocess(self, **kwargs):
        pass

    def alloc_postprocess(self, **kwargs):
        pass

    def malloc_preprocess(self, **kwargs):
        pass

    def malloc_postprocess(self, **kwargs):
        pass

    def free_preprocess(self, **kwargs):
        pass

    def free_postprocess(self, **kwargs):
        pass
