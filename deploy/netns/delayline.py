#!/usr/bin/env python3
"""A user-space netem: one network namespace's link with delay and loss.

netns.sh uses `tc qdisc ... netem` where the kernel has it (sch_netem).
Kernels built without it (some VM kernels are) get this instead: the
namespace's eth0 is a TAP device whose frames this process carries to a
second TAP on the bridge, and back, holding each frame for the delay and
dropping it with the loss probability. Like netem on the namespace's eth0,
the delay and loss apply to what the namespace sends (--both: both ways).

  delayline.py --ns fedsim-w2 --addr 10.250.0.12/24 --bridge-ns fedsim-br \
      --bridge br0 --port fedsim-w2b --delay-ms 50 --loss 0.01 [--both]

It creates the two TAP devices itself (so it needs root), prints "ready"
once they are up, and runs until killed (SIGTERM); the devices vanish with
it. Frames keep their order (the delay is constant).
"""
import argparse
import collections
import ctypes
import fcntl
import os
import random
import select
import signal
import struct
import subprocess
import sys
import time

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
_libc = ctypes.CDLL(None, use_errno=True)


def setns(name):
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def open_tap(ns, ifname):
    """Creates TAP device `ifname` inside namespace `ns`; returns its fd."""
    setns(ns)
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", ifname.encode(), IFF_TAP | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


def ip(*args):
    subprocess.run(["ip", *args], check=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ns", required=True)
    p.add_argument("--ifname", default="eth0")
    p.add_argument("--addr", required=True, help="address/prefix inside --ns")
    p.add_argument("--bridge-ns", required=True)
    p.add_argument("--bridge", default="br0")
    p.add_argument("--port", required=True, help="name of the TAP on the bridge")
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--loss", type=float, default=0.0, help="drop probability in [0, 1]")
    p.add_argument("--both", action="store_true", help="delay and drop both ways")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    if a.delay_ms < 0 or not 0 <= a.loss <= 1:
        sys.exit("delayline.py: --delay-ms must be >= 0 and --loss in [0, 1]")

    inner = open_tap(a.ns, a.ifname)
    outer = open_tap(a.bridge_ns, a.port)
    ip("-n", a.ns, "addr", "add", a.addr, "dev", a.ifname)
    ip("-n", a.ns, "link", "set", a.ifname, "up")
    ip("-n", a.bridge_ns, "link", "set", a.port, "master", a.bridge)
    ip("-n", a.bridge_ns, "link", "set", a.port, "up")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    rng = random.Random(a.seed)  # test traffic only; never reaches results
    delay = a.delay_ms / 1000.0
    # fd -> (destination fd, delayed?, FIFO of (due time, frame))
    lines = {
        inner: (outer, True, collections.deque()),
        outer: (inner, a.both, collections.deque()),
    }
    print("ready", flush=True)
    while True:
        now = time.monotonic()
        due = [q[0][0] for _, _, q in lines.values() if q]
        timeout = max(0.0, min(due) - now) if due else None
        readable, _, _ = select.select(list(lines), [], [], timeout)
        now = time.monotonic()
        for fd in readable:
            dst, shaped, queue = lines[fd]
            while True:
                try:
                    frame = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if shaped and a.loss > 0 and rng.random() < a.loss:
                    continue
                queue.append((now + (delay if shaped else 0.0), frame))
        for fd, (dst, _, queue) in lines.items():
            while queue and queue[0][0] <= now:
                try:
                    os.write(dst, queue.popleft()[1])
                except OSError:
                    pass  # interface down: the frame is lost, as on a wire


if __name__ == "__main__":
    main()
