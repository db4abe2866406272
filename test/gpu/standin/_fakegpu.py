# Shared state of the dry run's stand-ins (torch, nvidia-smi) on the fake NVML: which process holds how much "GPU
# memory" and which ones keep the GPU busy, kept in FAKE_STANDIN_REGISTRY (JSON, under a lock); every change rewrites
# the fake's scenario file (FAKE_NVML_SCENARIO) from the base text (FAKE_STANDIN_BASE) with those processes listed,
# the device's used memory raised by their total, and utilization, power and per-process samples while one is busy.
import fcntl
import json
import os

IDLE_POWER_MW = 80000
BUSY_POWER_MW = 300000


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def update(pid, bytes_delta=0, busy=None, forget=False):
    path = os.environ['FAKE_STANDIN_REGISTRY']
    with open(path + '.lock', 'a+') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(path) as f:
                reg = json.load(f)
        except (OSError, ValueError):
            reg = {}
        key = str(pid)
        e = reg.get(key, {'bytes': 0, 'busy': False})
        e['bytes'] = max(0, e['bytes'] + bytes_delta)
        if busy is not None:
            e['busy'] = busy
        reg[key] = e
        if forget:
            reg.pop(key, None)
        reg = {k: v for k, v in reg.items() if _alive(int(k)) and (v['bytes'] > 0 or v['busy'])}
        with open(path, 'w') as f:
            json.dump(reg, f)
        _write_scenario(reg)


def _write_scenario(reg):
    base = open(os.environ['FAKE_STANDIN_BASE']).read()
    used = 0
    for line in base.splitlines():
        if line.startswith('dev0.used='):
            used = int(line.split('=', 1)[1])
    holders = [(k, v['bytes']) for k, v in reg.items() if v['bytes'] > 0]
    busy = [k for k, v in reg.items() if v['busy']]
    lines = [base.rstrip('\n')]
    lines.append('dev0.used=%d' % (used + sum(b for _, b in holders)))
    lines.append('dev0.procs=' + ','.join('%s:%d' % (k, b) for k, b in holders))
    if busy:
        lines += ['dev0.util=100', 'dev0.power_mw=%d' % BUSY_POWER_MW,
                  'dev0.putil=' + ','.join('%s:90:40' % k for k in busy)]
    else:
        lines += ['dev0.util=0', 'dev0.power_mw=%d' % IDLE_POWER_MW]
    scenario = os.environ['FAKE_NVML_SCENARIO']
    with open(scenario + '.tmp', 'w') as f:
        f.write('\n'.join(lines) + '\n')
    os.replace(scenario + '.tmp', scenario)


def snapshot():
    try:
        with open(os.environ['FAKE_STANDIN_REGISTRY']) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}
