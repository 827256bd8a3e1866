#!/usr/bin/env python3
"""Runs the lab scenarios in network namespaces on this host.

    vmtests/run.py [scenario ...]      (default: every scenario)

A scenario named *_nixos.py is a NixOS testScript, the one nix/vmtest.nix
runs on VMs: it runs under nixos_lab.py. Each scenario runs in its own process with its own namespaces (removed
afterwards, also on failure or ^C); the per-node daemon logs are printed
when it fails. The last line is `N passed, M failed`.
"""

import contextlib
import glob
import os
import signal
import subprocess
import sys
import time

from driver import pid_tag

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# A scenario's bound. Past it the scenario gets SIGTERM, which its driver
# turns into its cleanup (namespaces, daemons); SIGKILL only if that hangs.
# subprocess.run's timeout sent SIGKILL at once: the namespaces and the
# daemons in them stayed, and the remaining scenarios never ran.
SCENARIO_TIMEOUT = 600
CLEANUP_TIMEOUT = 60


def run_bounded(argv, env):
    """Runs one scenario; True when it passed."""
    p = subprocess.Popen(argv, env=env)
    try:
        return p.wait(timeout=SCENARIO_TIMEOUT) == 0
    except subprocess.TimeoutExpired:
        print(f"vmtests: scenario still running after {SCENARIO_TIMEOUT}s: stopping it", flush=True)
        p.terminate()
        try:
            p.wait(timeout=CLEANUP_TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            remove_leftovers(p.pid)
        return False


def remove_leftovers(pid):
    """After a SIGKILL, what the scenario's cleanup never removed: its
    namespaces (driver.Lab names them cts<pid_tag(pid)>_<n>-...) and every
    process in them. Without it they stayed, the daemons running."""
    prefix = f"cts{pid_tag(pid)}_"
    names = [line.split()[0] for line in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                                         timeout=30).stdout.splitlines()
             if line.split() and line.split()[0].startswith(prefix)]
    for ns in names:
        # Again until none is left (a process may fork meanwhile); bounded.
        for _ in range(50):
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=30).stdout.split()
            if not pids:
                break
            for victim in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(victim), signal.SIGKILL)
            time.sleep(0.05)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        print(f"vmtests: removed {ns} left by the killed scenario", flush=True)


def main():
    if os.geteuid() != 0:
        sys.exit("vmtests: needs root (network namespaces, nftables, conntrack)")
    if not os.path.exists("/proc/net/nf_conntrack") and not os.path.exists("/proc/sys/net/netfilter/nf_conntrack_max"):
        sys.exit("vmtests: this kernel has no connection tracking (nf_conntrack)")
    names = sys.argv[1:] or sorted(os.path.basename(p)[:-3] for p in glob.glob(f"{HERE}/scenarios/*.py"))
    binary = os.environ.get("CTSYNCD_BIN_DIR", f"{ROOT}/target/release")
    if not os.path.exists(f"{binary}/ctsyncd"):
        sys.exit(f"vmtests: no ctsyncd binary in {binary} (run `cargo build --release`)")
    env = dict(os.environ, PATH=f"{binary}:{os.environ['PATH']}", PYTHONPATH=HERE)
    results = []
    for name in names:
        t = time.monotonic()
        print(f"=== {name}", flush=True)
        script = f"{HERE}/scenarios/{name}.py"
        # *_nixos.py is a NixOS testScript (nix/vmtest.nix runs it on VMs):
        # here it runs on the netns implementation of the same driver API.
        argv = [f"{HERE}/nixos_lab.py", script] if name.endswith("_nixos") else [script]
        ok = run_bounded([sys.executable, *argv], env)
        results.append((name, ok, time.monotonic() - t))
        print(f"{'PASS' if ok else 'FAIL'} {name} ({time.monotonic() - t:.1f}s)", flush=True)
    print()
    for name, ok, secs in results:
        print(f"  {'PASS' if ok else 'FAIL'}  {name:40} {secs:6.1f}s")
    passed = sum(ok for _, ok, _ in results)
    print(f"{passed} passed, {len(results) - passed} failed")
    sys.exit(0 if passed == len(results) else 1)


if __name__ == "__main__":
    main()
