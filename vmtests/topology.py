"""The lab topology and the firewall setup shared by every scenario.

    client 192.168.0.2 ── LAN0 ──┬── fw-1 .11 ──┬── LAN1 ── server 192.168.1.2
                                 └── fw-2 .12 ──┘
    VIPs 192.168.0.100 (LAN0) and 192.168.1.100 (LAN1) on the primary;
    fw-1 sync0 10.99.0.1 ══ dedicated sync link ══ fw-2 sync0 10.99.0.2
    IPv6: fd00:0::/64 and fd00:1::/64 with the same host numbers.

Each firewall runs one sync daemon, ctsyncd or conntrackd 1.4.7
(`start_daemon(…, daemon=…)`), from the same conntrackd.conf-syntax file
with that firewall's own LockFile, UNIX socket and LogFile; `ctl(fw, …)`
runs the client of whichever daemon runs there. `daemons.py` stops and
swaps them.

Both firewalls forward, SNAT client→server traffic to the LAN1 VIP, assign
the FTP helper with an nftables `ct helper` rule, and accept only NEW
FTP control (tcp/21), the test services (tcp/5001, udp/5002, udp/9000) from
LAN0, and established/related traffic: an FTP data connection passes only
if its expectation exists.
"""

import contextlib
import os
import shutil

from driver import Lab

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NFT = f"{ROOT}/etc/nftables/firewall.nft"

# The daemons a firewall can run; the lab puts ctsyncd's build on PATH.
BINARIES = {"ctsyncd": "ctsyncd", "conntrackd": "/usr/sbin/conntrackd"}

# conntrackd 1.4.7's `-c` commits expectations only when HashSize > 8192
# (conntrackd-reference §5.6.4): a lab with conntrackd on a firewall uses
# this size on both, so the pair runs one configuration.
CTD_HASH_SIZE = 16384

VIPS = [("eth0", "192.168.0.100/24", "fd00:0::100/64"), ("eth1", "192.168.1.100/24", "fd00:1::100/64")]


def build(events_log=False):
    """The four machines, wired. events_log: each firewall records its TCP
    conntrack events (for scenarios with a few flows: a conntrack event
    reader makes every namespace's creates build events, since netlink's
    listener mask is per protocol, which would weigh on the ones that
    create thousands, and on `benches/bench.py --commit-gap`)."""
    lab = Lab(["client", "fw1", "fw2", "server"])
    m = lab.machines
    client, fw1, fw2, server = m["client"], m["fw1"], m["fw2"], m["server"]
    lab.start_all()
    lab.lan("lan0", [(client, "eth0"), (fw1, "eth0"), (fw2, "eth0")])
    lab.lan("lan1", [(server, "eth0"), (fw1, "eth1"), (fw2, "eth1")])
    lab.link(fw1, "sync0", fw2, "sync0")
    client.succeed("ip addr add 192.168.0.2/24 dev eth0 && ip -6 addr add fd00:0::2/64 dev eth0 nodad"
                   " && ip route add default via 192.168.0.100 && ip -6 route add default via fd00:0::100")
    server.succeed("ip addr add 192.168.1.2/24 dev eth0 && ip -6 addr add fd00:1::2/64 dev eth0 nodad"
                   " && ip route add default via 192.168.1.100 && ip -6 route add default via fd00:1::100")
    for host, fw in ((11, fw1), (12, fw2)):
        fw.succeed(f"ip addr add 192.168.0.{host}/24 dev eth0 && ip addr add 192.168.1.{host}/24 dev eth1"
                   f" && ip -6 addr add fd00:0::{host}/64 dev eth0 nodad && ip -6 addr add fd00:1::{host}/64 dev eth1 nodad"
                   f" && ip addr add 10.99.0.{host - 10}/30 dev sync0")
        fw.succeed(f"nft -f {NFT}")
        # Every TCP conntrack event, timestamped: a failed takeover shows
        # which packet created or ended the flow's entry (dump_logs).
        if events_log:
            os.makedirs(f"{lab.dir}/{fw.name}", exist_ok=True)
            fw.spawn("conntrack -E -p tcp -o timestamp", log_file=f"{lab.dir}/{fw.name}/events.log")
    return lab, client, fw1, fw2, server


def vips(fw, present):
    """Moves the VIPs by hand (scenarios without keepalived)."""
    verb = "add" if present else "del"
    for dev, v4, v6 in VIPS:
        fw.succeed(f"ip addr {verb} {v4} dev {dev} && ip -6 addr {verb} {v6} dev {dev} nodad"
                   if present else f"ip addr del {v4} dev {dev}; ip -6 addr del {v6} dev {dev}; true")
        if present:
            # Tell the LAN at once, as keepalived's gratuitous ARP does
            # (iputils-arping; `make ci-deps` installs it).
            fw.succeed(f"arping -q -c 1 -U -I {dev} {v4.split('/')[0]}")


def config(lab, fw, options="ExpectationSync On", mode="FTFW", mode_body="", extra_general="", transport="UDP",
           hash_size=8192):
    """Writes fw's ctsyncd.conf (conntrackd syntax) and returns its path.
    transport is the sync link's clause: UDP or TCP."""
    peer = "10.99.0.2" if fw.name == "fw1" else "10.99.0.1"
    me = "10.99.0.1" if fw.name == "fw1" else "10.99.0.2"
    d = f"{lab.dir}/{fw.name}"
    os.makedirs(d, exist_ok=True)
    path = f"{d}/ctsyncd.conf"
    with open(path, "w") as f:
        f.write(f"""General {{
    HashSize {hash_size}
    HashLimit 131072
    LogFile {d}/ctsyncd.log
    LockFile {d}/ctsyncd.lock
    UNIX {{ Path {d}/ctsyncd.ctl }}
    NetlinkBufferSize 2097152
    NetlinkBufferSizeMaxGrowth 8388608
    Filter From Userspace {{
        Address Ignore {{
            IPv4_address 127.0.0.1
            IPv6_address ::1
            IPv4_address 10.99.0.0/30
        }}
    }}
    {extra_general}
}}
Sync {{
    Mode {mode} {{ {mode_body} }}
    {transport} {{
        IPv4_address {me}
        IPv4_Destination_Address {peer}
        Port 3780
        Interface sync0
    }}
    Options {{ {options} }}
}}
""")
    return path


def ctsyncd(fw, args, conf=None):
    """Runs the client against fw's daemon; returns its output."""
    conf = conf or fw.conf
    return fw.succeed(f"ctsyncd -C {conf} {args}")


def ctl_cmd(fw, args):
    """The command line of the client of the daemon fw runs now."""
    return f"{BINARIES[getattr(fw, 'daemon', 'ctsyncd')]} -C {fw.conf} {args}"


def ctl(fw, args):
    """Runs the client of fw's daemon (ctsyncd or conntrackd); its output."""
    return fw.succeed(ctl_cmd(fw, args))


def start_daemon(lab, fw, daemon="ctsyncd", **kw):
    """Writes fw's configuration and starts `daemon` (ctsyncd or
    conntrackd) on it; returns once the control socket answers."""
    fw.daemon = daemon
    fw.conf = config(lab, fw, **kw)
    fw.succeed(ctl_cmd(fw, "-d"))
    fw.wait_until_succeeds(ctl_cmd(fw, "-s >/dev/null"), timeout=20)
    return fw.conf


def cached(fw, which):
    """The conntracks in the internal or external cache of fw's daemon
    (ctsyncd or conntrackd), as its `-s` says; 0 when it does not answer."""
    rc, out = fw.execute(ctl_cmd(fw, "-s"))
    if rc != 0 or f"cache {which}:" not in out:
        return 0
    return int(out.split(f"cache {which}:")[1].split("current active connections:")[1].split()[0])


def daemon_log(lab, fw):
    try:
        with open(f"{lab.dir}/{fw.name}/ctsyncd.log") as f:
            return f.read()
    except OSError:
        return ""


KEEPALIVED = """
global_defs {{
    script_user root
    enable_script_security
    # Repeat the gratuitous ARP / unsolicited NA announcements a second
    # after taking over, so no neighbour cache keeps the old primary.
    vrrp_garp_master_delay 1
    vrrp_garp_master_repeat 3
}}
{ready_script}
vrrp_sync_group G1 {{
    group {{
        VI_LAN0
        VI_LAN1
    }}
    notify_master "{notify} primary"
    notify_backup "{notify} backup"
    notify_fault "{notify} fault"
    {track}
}}
vrrp_instance VI_LAN0 {{
    interface eth0
    state BACKUP
    virtual_router_id 61
    priority {priority}
    advert_int 1
    # A returning primary first resyncs (notify backup: -n) before it
    # takes the VIPs back: a fixed delay, or ctsyncd's word (`-s ready`,
    # tracked by the sync group).
    {preempt}
    virtual_ipaddress {{
        192.168.0.100/24
    }}
    virtual_ipaddress_excluded {{
        fd00:0::100/64
    }}
}}
vrrp_instance VI_LAN1 {{
    interface eth1
    state BACKUP
    virtual_router_id 62
    priority {priority}
    advert_int 1
    {preempt}
    virtual_ipaddress {{
        192.168.1.100/24
    }}
    virtual_ipaddress_excluded {{
        fd00:1::100/64
    }}
}}
"""


def notify_script(lab, fw):
    """(Re)writes fw's notify wrapper: fw.notify_script (default
    etc/keepalived/primary-backup.sh) with the binary of the daemon fw runs
    now (conntrackd's commands are the same: -c -f -R -B on primary, -s /
    start / -t -n on backup). keepalived reads the wrapper at every
    transition, so a daemon swap only rewrites it. Returns its path."""
    script = getattr(fw, "notify_script", None) or f"{ROOT}/etc/keepalived/primary-backup.sh"
    d = f"{lab.dir}/{fw.name}"
    notify = f"{d}/notify.sh"
    binary = BINARIES[getattr(fw, "daemon", "ctsyncd")]
    with open(notify, "w") as f:
        f.write(f"""#!/bin/sh
export PATH={lab.env['PATH']}
export CTSYNCD_BIN=$(command -v {binary}) CTSYNCD_CONFIG={fw.conf} CTSYNCD_LOCK={d}/ctsyncd.lock
export LOGGER="echo notify:"
echo "$(date +%T.%N) notify $1 ({binary})" >> {d}/notify.log
exec {script} "$1" >> {d}/notify.log 2>&1
""")
    os.chmod(notify, 0o755)
    return notify


def ready_script(check):
    """etc/keepalived/keepalived.conf's readiness check (its vrrp_script
    block as shipped), running `check`."""
    with open(f"{ROOT}/etc/keepalived/keepalived.conf") as f:
        shipped = f.read()
    start = shipped.index("vrrp_script ctsyncd_ready {")
    block = shipped[start:shipped.index("\n}\n", start) + 3]
    line = next(x for x in block.splitlines() if x.strip().startswith("script "))
    return block.replace(line, f'    script "{check}"')


def keepalived(lab, fw, priority, script=None, ready=False, preempt_delay=5):
    """Starts keepalived on fw with etc/keepalived/primary-backup.sh (or
    `script`, kept for later daemon swaps) as the sync group's notify
    script (through a wrapper naming fw's files and daemon). Returns the
    process (fw.keepalived too). ready: each instance tracks `ctsyncd -s
    ready` as etc/keepalived/keepalived.conf does (weight -60);
    preempt_delay: seconds, 0 for none."""
    if script:
        fw.notify_script = script
    d = f"{lab.dir}/{fw.name}"
    notify = notify_script(lab, fw)
    # A machine back from a crash boots with an empty /run: keepalived
    # refuses to start while a pid file names a process that is not yet
    # reaped.
    for pidfile in ("keepalived.pid", "vrrp.pid", "checkers.pid"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{d}/{pidfile}")
    conf = f"{d}/keepalived.conf"
    track, ready_block = "", ""
    if ready:
        check = f"{shutil.which('ctsyncd', path=lab.env['PATH'])} -C {fw.conf} -s ready"
        ready_block = ready_script(check)
        track = "track_script {\n        ctsyncd_ready\n    }"
    preempt = f"preempt_delay {preempt_delay}" if preempt_delay else ""
    with open(conf, "w") as f:
        f.write(KEEPALIVED.format(notify=notify, priority=priority, ready_script=ready_block, preempt=preempt,
                                  track=track))
    fw.keepalived = fw.spawn(f"keepalived -n -l -P -f {conf} -p {d}/keepalived.pid -r {d}/vrrp.pid -c {d}/checkers.pid",
                             log_file=f"{d}/keepalived.log")
    return fw.keepalived


# Succeeds on the firewall that holds both VIPs.
HOLDS_VIPS = "ip -4 addr show dev eth0 | grep -q 192.168.0.100 && ip -4 addr show dev eth1 | grep -q 192.168.1.100"


def ftp_server(lab, server):
    root = f"{lab.dir}/ftproot"
    os.makedirs(root, exist_ok=True)
    for name in ("hello.txt", "failover.txt"):
        with open(f"{root}/{name}", "w") as f:
            f.write("ctsyncd\n")
    server.spawn(f"/usr/bin/python3 -m pyftpdlib -i 192.168.1.2 -p 21 -d {root}", log_file=f"{lab.dir}/ftpd.log")
    server.wait_until_succeeds("/usr/bin/python3 -c 'import socket; socket.create_connection((\"192.168.1.2\", 21), 1)'", timeout=20)


def file_text(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def dump_state(lab):
    """What a person debugging a failed scenario wants to see."""
    import sys
    cmds = {
        "client": ["ip neigh", "ip -6 neigh"],
        "server": ["ip neigh", "ip -6 neigh"],
        "fw1": ["ip -br addr", "conntrack -L 2>/dev/null | grep -v 3780", "conntrack -L expect 2>/dev/null"],
        "fw2": ["ip -br addr", "conntrack -L 2>/dev/null | grep -v 3780", "conntrack -L expect 2>/dev/null"],
    }
    for name, lines in cmds.items():
        m = lab.machines.get(name)
        if m is None:
            continue
        for c in lines:
            print(f"----- {name}: {c} -----\n{m.execute(c)[1][-2000:]}", file=sys.stderr)
        if getattr(m, "conf", None):
            daemon = getattr(m, "daemon", "ctsyncd")
            for c in ("-i", "-e", "-s"):
                print(f"----- {name}: {daemon} {c} -----\n{m.execute(ctl_cmd(m, c))[1][-2000:]}", file=sys.stderr)


def dump_logs(lab, machines):
    import sys
    dump_state(lab)
    for m in machines:
        for name in ("ctsyncd.log", "notify.log", "keepalived.log", "events.log"):
            text = file_text(f"{lab.dir}/{m.name}/{name}")
            if text:
                print(f"----- {m.name} {name} -----\n{text[-3000:]}", file=sys.stderr)
