#!/usr/bin/env python3
"""Runs the lab scenarios in network namespaces on this host.

    vmtests/run.py [scenario ...]      (default: every scenario)

A scenario named *_nixos.py is a NixOS testScript, the one nix/vmtest.nix
runs on VMs: it runs under nixos_lab.py. Each scenario runs in its own process with its own namespaces (removed
afterwards, also on failure or ^C); the per-node daemon logs are printed
when it fails. The last line is `N passed, M failed`.
"""

import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


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
        p = subprocess.run([sys.executable, *argv], env=env, timeout=600)
        ok = p.returncode == 0
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
