# A stand-in for nvidia-ml-py's pynvml, for the dry run of test/gpu/device-check.mjs on the fake NVML
# (test/fixtures/fake-nvml): the few functions the check calls, through ctypes on the library named by
# TASKMETER_NVML_LIBRARY, with pynvml's names and return shapes. Not for anything else.
import ctypes
import os

_lib = ctypes.CDLL(os.environ['TASKMETER_NVML_LIBRARY'])

NVML_SUCCESS = 0
NVML_ERROR_NOT_FOUND = 6
NVML_FI_DEV_POWER_INSTANT = 186


class NVMLError(Exception):
    def __init__(self, value):
        super().__init__(value)
        self.value = value

    def __str__(self):
        return 'NVML error %d' % self.value


def _check(ret):
    if ret != NVML_SUCCESS:
        raise NVMLError(ret)


class _Memory(ctypes.Structure):
    _fields_ = [('total', ctypes.c_ulonglong), ('free', ctypes.c_ulonglong), ('used', ctypes.c_ulonglong)]


class _MemoryV2(ctypes.Structure):
    _fields_ = [('version', ctypes.c_uint), ('total', ctypes.c_ulonglong), ('reserved', ctypes.c_ulonglong),
                ('free', ctypes.c_ulonglong), ('used', ctypes.c_ulonglong)]


nvmlMemory_v2 = ctypes.sizeof(_MemoryV2) | (2 << 24)


class _Utilization(ctypes.Structure):
    _fields_ = [('gpu', ctypes.c_uint), ('memory', ctypes.c_uint)]


class _ProcessInfo(ctypes.Structure):  # the _v3 layout (24 bytes)
    _fields_ = [('pid', ctypes.c_uint), ('usedGpuMemory', ctypes.c_ulonglong), ('gpuInstanceId', ctypes.c_uint),
                ('computeInstanceId', ctypes.c_uint)]


class _Value(ctypes.Union):
    _fields_ = [('dVal', ctypes.c_double), ('uiVal', ctypes.c_uint), ('ulVal', ctypes.c_ulong),
                ('ullVal', ctypes.c_ulonglong), ('sllVal', ctypes.c_longlong)]


class _FieldValue(ctypes.Structure):
    _fields_ = [('fieldId', ctypes.c_uint), ('scopeId', ctypes.c_uint), ('timestamp', ctypes.c_longlong),
                ('latencyUsec', ctypes.c_longlong), ('valueType', ctypes.c_int), ('nvmlReturn', ctypes.c_int),
                ('value', _Value)]


class _ProcessUtilSample(ctypes.Structure):
    _fields_ = [('pid', ctypes.c_uint), ('timeStamp', ctypes.c_ulonglong), ('smUtil', ctypes.c_uint),
                ('memUtil', ctypes.c_uint), ('encUtil', ctypes.c_uint), ('decUtil', ctypes.c_uint)]


class _AccountingStats(ctypes.Structure):
    _fields_ = [('gpuUtilization', ctypes.c_uint), ('memoryUtilization', ctypes.c_uint),
                ('maxMemoryUsage', ctypes.c_ulonglong), ('time', ctypes.c_ulonglong),
                ('startTime', ctypes.c_ulonglong), ('isRunning', ctypes.c_uint), ('reserved', ctypes.c_uint * 5)]


def nvmlInit():
    _check(_lib.nvmlInit_v2())


def nvmlShutdown():
    _check(_lib.nvmlShutdown())


def nvmlSystemGetDriverVersion():
    buf = ctypes.create_string_buffer(80)
    _check(_lib.nvmlSystemGetDriverVersion(buf, 80))
    return buf.value.decode()


def nvmlDeviceGetCount():
    c = ctypes.c_uint()
    _check(_lib.nvmlDeviceGetCount_v2(ctypes.byref(c)))
    return c.value


def nvmlDeviceGetHandleByIndex(i):
    h = ctypes.c_void_p()
    _check(_lib.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(i), ctypes.byref(h)))
    return h


def _string(fn, h):
    buf = ctypes.create_string_buffer(96)
    _check(fn(h, buf, 96))
    return buf.value.decode()


def nvmlDeviceGetUUID(h):
    return _string(_lib.nvmlDeviceGetUUID, h)


def nvmlDeviceGetName(h):
    return _string(_lib.nvmlDeviceGetName, h)


def nvmlDeviceGetMemoryInfo(h, version=None):
    if version is None:
        m = _Memory()
        _check(_lib.nvmlDeviceGetMemoryInfo(h, ctypes.byref(m)))
        return m
    m = _MemoryV2()
    m.version = version
    _check(_lib.nvmlDeviceGetMemoryInfo_v2(h, ctypes.byref(m)))
    return m


def nvmlDeviceGetUtilizationRates(h):
    u = _Utilization()
    _check(_lib.nvmlDeviceGetUtilizationRates(h, ctypes.byref(u)))
    return u


def nvmlDeviceGetPowerUsage(h):
    mw = ctypes.c_uint()
    _check(_lib.nvmlDeviceGetPowerUsage(h, ctypes.byref(mw)))
    return mw.value


def nvmlDeviceGetTotalEnergyConsumption(h):
    mj = ctypes.c_ulonglong()
    _check(_lib.nvmlDeviceGetTotalEnergyConsumption(h, ctypes.byref(mj)))
    return mj.value


def nvmlDeviceGetFieldValues(h, ids):
    arr = (_FieldValue * len(ids))()
    for i, f in enumerate(ids):
        arr[i].fieldId = f
    _check(_lib.nvmlDeviceGetFieldValues(h, ctypes.c_int(len(ids)), arr))
    return arr


def _list(name, h):
    fn = getattr(_lib, name)
    count = ctypes.c_uint(0)
    ret = fn(h, ctypes.byref(count), None)
    if ret == NVML_SUCCESS:
        return []
    if ret != 7:  # INSUFFICIENT_SIZE
        raise NVMLError(ret)
    arr = (_ProcessInfo * (count.value + 8))()
    count = ctypes.c_uint(count.value + 8)
    _check(fn(h, ctypes.byref(count), arr))
    return [arr[i] for i in range(count.value)]


def nvmlDeviceGetComputeRunningProcesses(h):
    return _list('nvmlDeviceGetComputeRunningProcesses_v3', h)


def nvmlDeviceGetGraphicsRunningProcesses(h):
    return _list('nvmlDeviceGetGraphicsRunningProcesses_v3', h)


def nvmlDeviceGetMPSComputeRunningProcesses(h):
    return _list('nvmlDeviceGetMPSComputeRunningProcesses_v3', h)


def nvmlDeviceGetAccountingMode(h):
    m = ctypes.c_int()
    _check(_lib.nvmlDeviceGetAccountingMode(h, ctypes.byref(m)))
    return m.value


def nvmlDeviceGetAccountingStats(h, pid):
    st = _AccountingStats()
    _check(_lib.nvmlDeviceGetAccountingStats(h, ctypes.c_uint(pid), ctypes.byref(st)))
    return st


def nvmlDeviceGetMigMode(h):
    cur, pend = ctypes.c_uint(), ctypes.c_uint()
    _check(_lib.nvmlDeviceGetMigMode(h, ctypes.byref(cur), ctypes.byref(pend)))
    return [cur.value, pend.value]


def nvmlDeviceGetProcessUtilization(h, timeStamp):
    count = ctypes.c_uint(0)
    ret = _lib.nvmlDeviceGetProcessUtilization(h, None, ctypes.byref(count), ctypes.c_ulonglong(timeStamp))
    if ret != 7:
        raise NVMLError(ret)
    arr = (_ProcessUtilSample * count.value)()
    _check(_lib.nvmlDeviceGetProcessUtilization(h, arr, ctypes.byref(count), ctypes.c_ulonglong(timeStamp)))
    return [arr[i] for i in range(count.value)]
