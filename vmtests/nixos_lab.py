#!/usr/bin/env python3
"""Runs a NixOS testScript (one nix/vmtest.nix reads as its testScript) on
the netns driver, with the nodes nix/vmtest.nix declares:

    client 192.168.0.2 ── vlan 1 ──┬── fw1 .11 ──┬── vlan 2 ── server 192.168.1.2
                                   └── fw2 .12 ──┘
    fw1 sync0 10.99.0.1 ══ vlan 3 ══ fw2 sync0 10.99.0.2

    vmtests/nixos_lab.py SCRIPT

Owns: the netns stand-ins for what the NixOS configurations give each
machine — the units (nftables, ctsyncd, keepalived, ftpd), their /etc
files and the driver's globals (start_all, subtest, the machines).
ctsyncd.conf is rendered by nix/render-config.nix from nix/vmtest-ctsyncd.nix,
the attributes the VM test sets the module's options from, and checked
with `ctsyncd --check-config --strict` as the module does.

Differences from the VMs, all on the machines' side of the script:
keepalived runs in the foreground (`-n`, Type=simple; from a 5 s timer,
as nixpkgs' keepalived-boot-delay.timer starts it); the notify script
starts a dead daemon with `ctsyncd -d` rather than `systemctl start`; no
unit restarts on failure; the FTP root is in the lab directory.
"""

import json
import os
import shutil
import subprocess
import sys
import traceback

from driver import Lab, log
from nixos_driver import NixosMachine, Unit, retry, subtest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

VRRP_STATE = """#!/bin/sh
# keepalived's sync-group notify: GROUP G1 STATE PRIORITY
mkdir -p /run/ctsyncd-test && echo "$3" > /run/ctsyncd-test/vrrp-state
"""

NOTIFY = """#!/bin/sh
export PATH={path}
export CTSYNCD_BIN=$(command -v ctsyncd) CTSYNCD_CONFIG=/etc/ctsyncd/ctsyncd.conf
export CTSYNCD_LOCK=/run/ctsyncd/ctsyncd.lock
export LOGGER="echo ctsyncd-failover:"
exec {root}/etc/keepalived/primary-backup.sh "$@" >> /var/log/ctsyncd-failover.log 2>&1
"""

# As services.keepalived renders nix/vmtest.nix's settings.
KEEPALIVED = """global_defs {{
  enable_script_security
  script_user root
  vrrp_garp_master_delay 1
  vrrp_garp_master_repeat 3
}}
vrrp_sync_group G1 {{
  group {{
    VI_LAN0
    VI_LAN1
  }}
  notify_master "/etc/ctsyncd-test/notify primary"
  notify_backup "/etc/ctsyncd-test/notify backup"
  notify_fault "/etc/ctsyncd-test/notify fault"
  notify "/etc/ctsyncd-test/vrrp-state"
}}
vrrp_instance VI_LAN0 {{
  interface eth0
  state BACKUP
  virtual_router_id 61
  priority {priority}
  advert_int 1
  preempt_delay 5
  virtual_ipaddress {{
    192.168.0.100/24
  }}
}}
vrrp_instance VI_LAN1 {{
  interface eth1
  state BACKUP
  virtual_router_id 62
  priority {priority}
  advert_int 1
  preempt_delay 5
  virtual_ipaddress {{
    192.168.1.100/24
  }}
}}
"""


def render_ctsyncd_conf(n):
    """nix/render-config.nix over nix/vmtest-ctsyncd.nix, with the unit's
    paths the module passes."""
    if shutil.which("nix-instantiate") is None:
        sys.exit("nixos_lab: nix-instantiate is needed to render ctsyncd.conf (`make ci-deps` installs nix-bin)")
    expr = (f"import {ROOT}/nix/render-config.nix (import {ROOT}/nix/vmtest-ctsyncd.nix {n} // {{"
            ' lockFile = "/run/ctsyncd/ctsyncd.lock"; socketPath = "/run/ctsyncd/ctsyncd.ctl"; })')
    out = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "-E", expr],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return json.loads(out)


def build():
    lab = Lab(["client", "fw1", "fw2", "server"])
    # A system PATH, as on the VMs (not this shell's), plus the daemon.
    # The binary is copied into the lab directory, which every machine
    # sees: a machine's /tmp is its own, so a build under /tmp
    # (CTSYNCD_BIN_DIR, CARGO_TARGET_DIR=/tmp/...) was "not found" there.
    binary = shutil.which("ctsyncd") or sys.exit("nixos_lab: no ctsyncd on PATH")
    bindir = f"{lab.dir}/bin"
    os.makedirs(bindir, exist_ok=True)
    shutil.copy2(binary, f"{bindir}/ctsyncd")
    lab.env = dict(lab.env, PATH=f"{bindir}:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin")
    h = lab.machines
    lab.start_all()
    lab.lan("lan0", [(h["client"], "eth0"), (h["fw1"], "eth0"), (h["fw2"], "eth0")])
    lab.lan("lan1", [(h["server"], "eth0"), (h["fw1"], "eth1"), (h["fw2"], "eth1")])
    lab.link(h["fw1"], "sync0", h["fw2"], "sync0")
    h["client"].succeed("ip addr add 192.168.0.2/24 dev eth0 && ip route add default via 192.168.0.100")
    h["server"].succeed("ip addr add 192.168.1.2/24 dev eth0")

    nodes = {}
    for n, priority in ((1, 150), (2, 100)):
        fw = h[f"fw{n}"]
        fw.succeed(f"ip addr add 192.168.0.{10 + n}/24 dev eth0 && ip addr add 192.168.1.{10 + n}/24 dev eth1"
                   f" && ip addr add 10.99.0.{n}/30 dev sync0")
        conf = render_ctsyncd_conf(n)
        nodes[fw.name] = NixosMachine(lab, fw, units=[
            Unit("nftables.service", f"nft -f {ROOT}/etc/nftables/firewall.nft", kind="oneshot"),
            Unit("ctsyncd.service", "ctsyncd -C /etc/ctsyncd/ctsyncd.conf", kind="notify",
                 dirs=("/run/ctsyncd", "/var/log/ctsyncd")),
            # nixpkgs starts keepalived from a timer, 5 s after boot.
            Unit("keepalived.service", "keepalived -n -l -f /etc/keepalived/keepalived.conf", timer=5),
        ], files=[
            ("/etc/ctsyncd/ctsyncd.conf", conf, 0o644),
            ("/etc/keepalived/keepalived.conf", KEEPALIVED.format(priority=priority), 0o644),
            ("/etc/ctsyncd-test/notify", NOTIFY.format(path=lab.env["PATH"], root=ROOT), 0o755),
            ("/etc/ctsyncd-test/vrrp-state", VRRP_STATE, 0o755),
        ])

    ftproot = f"{lab.dir}/ftproot"
    os.makedirs(ftproot, exist_ok=True)
    for name in ("hello.txt", "failover.txt"):
        with open(f"{ftproot}/{name}", "w") as f:
            f.write("ctsyncd\n")
    nodes["server"] = NixosMachine(lab, h["server"], units=[
        Unit("ftpd.service", f"/usr/bin/python3 -m pyftpdlib -i 192.168.1.2 -p 21 -d {ftproot}"),
    ])
    with open(f"{HERE}/ftp_client.py") as f:
        nodes["client"] = NixosMachine(lab, h["client"], files=[("/etc/ctsyncd-test/ftp_client.py", f.read(), 0o755)])
    return lab, nodes


def check_configs(nodes):
    """The module's build-time check, here at boot."""
    for name in ("fw1", "fw2"):
        # --strict, as nix/module.nix's checkedConfig: a warning fails
        # the system build, so it fails here too.
        nodes[name].succeed("ctsyncd -C /etc/ctsyncd/ctsyncd.conf --check-config --strict")


def dump(lab, nodes):
    for name, m in nodes.items():
        console = m.console
        if os.path.exists(console):
            with open(console, errors="replace") as f:
                print(f"----- {name} console -----\n{f.read()[-3000:]}", file=sys.stderr)
        if not m.is_up():
            continue
        cmds = {"client": ["cat /tmp/ftp_client.log"], "server": []}.get(name, [
            "cat /run/ctsyncd-test/vrrp-state", "cat /var/log/ctsyncd/ctsyncd.log",
            "cat /var/log/ctsyncd-failover.log", "conntrack -L expect"])
        for c in ["ip -br addr"] + cmds:
            status, out = m.execute(f"{c} 2>&1", timeout=10)
            if out.strip():
                print(f"----- {name}: {c} -----\n{out[-3000:]}", file=sys.stderr)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    with open(path) as f:
        script = f.read()
    lab, nodes = build()

    def start_all():
        for m in nodes.values():
            m.start()
        check_configs(nodes)

    symbols = dict(nodes, start_all=start_all, subtest=subtest, retry=retry, log=log,
                   machines=list(nodes.values()))
    try:
        exec(compile(script, path, "exec"), symbols)
    except BaseException:
        traceback.print_exc()
        dump(lab, nodes)
        sys.exit(1)
    log("test script finished")


if __name__ == "__main__":
    main()
