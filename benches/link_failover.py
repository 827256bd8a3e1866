#!/usr/bin/env python3
"""How long a daemon keeps sending on a sync link that went down.

    benches/link_failover.py [--reps 10] NAME=PATH...

NAME=PATH names a daemon's binary for the table, e.g. `before=/tmp/old/
ctsyncd after=target/release/ctsyncd conntrackd=/usr/sbin/conntrackd`;
all of them read the same conntrackd.conf: FT-FW over two UDP links on
two veths (s0, the default, and s1) to a second namespace.

Each repetition takes the link the daemon sends on down (`ip link set
down` in its namespace) at a random moment, and times how long until the
daemon's log says the other link ``becomes dedicated link``; the link
comes up again before the next. A daemon that reads its links once a
second leaves a dead link after half a second on average and a whole one
at worst; one that listens to the kernel's link notifications, at once.

Prints one table: per daemon, the median and worst time to the log line.
Traffic: none beyond the daemons' own links, inside namespaces this
script makes and removes. Needs root.
"""

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

PREFIX = "lkfo"
LINE = "becomes dedicated link"


def sh(cmd, check=True):
    return subprocess.run(cmd, shell=True, check=check,
                          capture_output=True, text=True)


def owner_alive(name):
    """Whether the run that made namespace `name` (lkfo<pid>-a) still
    runs: another run's namespaces are not this one's to remove."""
    pid = name[len(PREFIX):].split("-")[0]
    return pid.isdigit() and int(pid) != os.getpid() and os.path.exists(f"/proc/{pid}")


def cleanup():
    """Removes this run's namespaces and those of runs no longer alive,
    and first what still runs in them: `ip netns del` only drops the
    name, and a daemon left from a run that was killed kept running in
    the unnamed namespace."""
    for line in sh("ip netns list", check=False).stdout.splitlines():
        name = (line.split() or [""])[0]
        if name.startswith(PREFIX) and not owner_alive(name):
            for pid in sh(f"ip netns pids {name}", check=False).stdout.split():
                sh(f"kill -9 {pid}", check=False)
            sh(f"ip netns del {name}", check=False)


def config(d):
    links = "\n".join(
        f"  UDP{' Default' if i == 0 else ''} {{ IPv4_address 10.9.{i}.1 "
        f"IPv4_Destination_Address 10.9.{i}.2 Port 3780 Interface s{i} }}"
        for i in (0, 1))
    return (f"General {{\n  LogFile {d}/log\n  LockFile {d}/lock\n"
            f"  UNIX {{ Path {d}/ctl }}\n  Syslog off\n}}\n"
            f"Sync {{\n  Mode FTFW {{ }}\n{links}\n}}\n")


def log_lines(d):
    try:
        with open(f"{d}/log") as f:
            return f.read().count(LINE)
    except FileNotFoundError:
        return 0


def run(label, binary, reps):
    a, b = f"{PREFIX}{os.getpid()}-a", f"{PREFIX}{os.getpid()}-b"
    for ns in (a, b):
        sh(f"ip netns add {ns}")
    for i in (0, 1):
        sh(f"ip link add s{i} netns {a} type veth peer name s{i} netns {b}")
        for ns, host in ((a, 1), (b, 2)):
            sh(f"ip -n {ns} addr add 10.9.{i}.{host}/24 dev s{i} && "
               f"ip -n {ns} link set s{i} up")
    d = tempfile.mkdtemp(prefix="link-failover-")
    conf = os.path.join(d, "conf")
    with open(conf, "w") as f:
        f.write(config(d))
    daemon = subprocess.Popen(["ip", "netns", "exec", a, binary, "-C", conf],
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    took = []
    try:
        up = time.monotonic() + 20
        while not os.path.exists(f"{d}/ctl"):
            if time.monotonic() > up or daemon.poll() is not None:
                sys.exit(f"{label}: the daemon did not come up")
            time.sleep(0.05)
        time.sleep(1.5)
        current = 0
        for _ in range(reps):
            time.sleep(random.uniform(0.2, 1.2))
            seen = log_lines(d)
            t = time.monotonic()
            sh(f"ip -n {a} link set s{current} down")
            while log_lines(d) == seen:
                if time.monotonic() - t > 10:
                    sys.exit(f"{label}: no failover within 10 s")
                time.sleep(0.002)
            took.append((time.monotonic() - t) * 1000)
            sh(f"ip -n {a} link set s{current} up")
            current = 1 - current
            # The link that came up is running before the next rep.
            time.sleep(0.5)
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        for ns in (a, b):
            sh(f"ip netns del {ns}", check=False)
        shutil.rmtree(d, ignore_errors=True)
    return took


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("daemons", nargs="+", metavar="NAME=PATH")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("link_failover: needs root (network namespaces)")
    # A TERM (a timeout, a CI runner) ends the script through its
    # `finally` blocks, as ^C does: by default it ended Python at once and
    # left the daemon running in lkfo-a and both namespaces.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    cleanup()
    rows = []
    try:
        for spec in args.daemons:
            label, _, binary = spec.partition("=")
            rows.append((label, run(label, binary, args.reps)))
    finally:
        cleanup()
    print(f"\nSync link down → `{LINE}` in the log "
          f"({args.reps} failovers each, at random moments)\n")
    print("| daemon | failovers | median ms | worst ms |")
    print("|---|---:|---:|---:|")
    for label, took in rows:
        print(f"| {label} | {len(took)} | {statistics.median(took):.0f} "
              f"| {max(took):.0f} |")


if __name__ == "__main__":
    main()
