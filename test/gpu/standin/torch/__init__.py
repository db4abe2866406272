# A stand-in for the few PyTorch calls test/gpu/device-check.mjs's jobs make, for its dry run on the fake NVML:
# "GPU memory" is an entry of this process in the fake's process list (see _fakegpu.py), a matmul burns a little CPU
# and marks the process busy (utilization, power and per-process samples in the fake). Not for anything else.
import atexit
import os
import time

import _fakegpu

uint8 = 'uint8'
float32 = 'float32'
_own = {'bytes': 0, 'busy': False}


def _forget():
    _fakegpu.update(os.getpid(), forget=True)


atexit.register(_forget)


class Tensor:
    def __init__(self, nbytes):
        self.nbytes = nbytes
        _own['bytes'] += nbytes
        _fakegpu.update(os.getpid(), bytes_delta=nbytes)

    def fill_(self, v):
        return self

    def norm(self):
        return 1.0

    def __matmul__(self, other):
        if not _own['busy']:
            _own['busy'] = True
            _fakegpu.update(os.getpid(), busy=True)
        t0 = time.thread_time()
        while time.thread_time() - t0 < 0.002:
            pass
        return self

    def __itruediv__(self, other):
        return self

    def __del__(self):
        try:
            _own['bytes'] -= self.nbytes
            _fakegpu.update(os.getpid(), bytes_delta=-self.nbytes)
        except Exception:
            pass


def empty(n, dtype=None, device=None):
    return Tensor(int(n))


def randn(*shape, device=None):
    n = 4
    for s in shape:
        n *= s
    return Tensor(n)


class cuda:
    @staticmethod
    def synchronize():
        pass

    @staticmethod
    def memory_reserved():
        return _own['bytes']
