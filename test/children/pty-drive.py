"""Runs a command in a new pseudo-terminal (as its controlling terminal and foreground process group, as a shell
in a terminal window would) and plays a script against it: ["expect", text] waits (at most 15 s) until the output
after the previous match contains text; ["send", text] types text; ["sleep", seconds] reads on meanwhile. Prints one JSON object: the whole output and the exit status.

usage: python3 pty-drive.py SCRIPT_JSON COMMAND [ARGS...]"""
import fcntl
import json
import os
import pty
import select
import struct
import sys
import termios
import time

script = json.loads(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])

fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # a 80x24 terminal window
out = b""


def pump(timeout):
    global out
    r, _, _ = select.select([fd], [], [], timeout)
    if not r:
        return False
    try:
        chunk = os.read(fd, 65536)
    except OSError:  # EIO: the other side closed
        return None
    if not chunk:
        return None
    out += chunk
    return True


failed = None
pos = 0  # where the next "expect" starts looking
for step, arg in script:
    if step == "send":
        os.write(fd, arg.encode())
    elif step == "expect":
        deadline = time.time() + 15
        while out.find(arg.encode(), pos) < 0:
            if time.time() > deadline or pump(0.1) is None:
                failed = "timed out waiting for %r" % arg
                break
        if failed:
            break
        pos = out.find(arg.encode(), pos) + len(arg.encode())
    elif step == "sleep":
        end = time.time() + arg
        while time.time() < end:
            pump(0.05)
deadline = time.time() + 15
status = None
while time.time() < deadline:
    if pump(0.05) is None:
        break
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        status = st
        while pump(0.05):
            pass
        break
if status is None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
    _, status = os.waitpid(pid, 0)
print(json.dumps({
    "output": out.decode("utf-8", "replace"),
    "exitCode": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
    "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
    "failed": failed,
}))
