"""cupy.cuda.runtime on the strict stand-in: one device, number 0."""

from .. import strict

is_hip = False


class CUDARuntimeError(RuntimeError):
    pass


def getDeviceCount():
    return 1


def getDevice():
    return 0


def setDevice(device):
    if device != 0:
        raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")


def deviceSynchronize():
    strict.sync("runtime.deviceSynchronize()")


def runtimeGetVersion():
    return 12080


def driverGetVersion():
    return 12080


def getDeviceProperties(device):
    setDevice(device)
    return {"name": b"strict CPU stand-in for CuPy", "major": 9, "minor": 0}
