#!/usr/bin/env python3
"""Replication benchmark: ctsyncd against conntrackd 1.4.7, same run.

    benches/bench.py [--sizes 10000,100000,250000] [--reps 3] [--out results/]
                     [--with-key] [--mixed-sizes 100000] [--kernel-filter]

Topology (network namespaces, built with vmtests/driver.py):

    client ── fw1 ── server        fw1 ══ sync0 (multicast) ══ fw2

For each size N and repetition, the two daemons are measured alternately,
each with the same conntrackd.conf-syntax configuration (FT-FW over
multicast on the dedicated veth) on fw1 and fw2:

  1. start the daemon on fw1 and fw2, let it settle, read idle RSS;
  2. the generator creates N distinct real flows through fw1 (95 % UDP
     with distinct ports, 5 % TCP connections to a listening server);
  3. wait until fw2's external cache holds N entries (lag: last flow
     created → last entry present; lost: what never arrived);
  4. read CPU time (user+sys) and RSS of both daemons, and the bytes and
     frames that crossed the sync link;
  5. commit on fw2 (`-c`): wall time, entries/s, and the entries then in
     fw2's kernel;
  6. the daemons' peak RSS (VmHWM): fw1's from its start until it fails,
     fw2's from its start through the commit, and fw2's during a `-B`
     after the commit (the takeover script's last step; fw1 is gone).

Prints one table of medians with the ctsyncd/conntrackd ratio per row and
writes results/bench-<time>.md and .json.

--loss PCT drops PCT % of the sync datagrams leaving each firewall (nft
`numgen` on sync0's output: this kernel has no netem), so both directions
lose PCT %; the table then also lists the issue-17 targets (lag after the
last flow, best and median run, and the CPU, commit and RSS ratios).

--pcap DIR (a diagnosis) captures fw1's side of the sync link of every
run into DIR (tcpdump), beside each run's `last_created` time in the JSON.

--with-key adds a third daemon, ctsyncd with `AuthenticationKeyFile` (both
nodes share a fresh `ctsyncd --genkey` key, every datagram sealed), and
shows it beside ctsyncd without a key: what a key costs in sender CPU and
sync-link bytes per entry (40 bytes per datagram: nonce and tag).

For the sizes in --mixed-sizes (default 100 000; empty: none), the mixed
pairs of a rolling upgrade run too, conntrackd on fw1 and ctsyncd on fw2
and the reverse (ctsyncd then speaks conntrackd's protocol; each run waits
until ctsyncd found its peer's, `-s link`). A second
table shows one row per pair and direction (sender CPU, receiver CPU,
lag, lost), the two mixed ones next to ctsyncd → ctsyncd and conntrackd
→ conntrackd.

--commit-gap N (default 100 000; 0: off) runs vmtests/gap.py's
measurement (issue 17 item 3) for each daemon, --reps times, on the
failover lab (client, fw-1, fw-2 with keepalived, FTP server): N idle
conntracks, active TCP and UDP streams and an FTP PASV session through
fw-1; fw-1 crashes. A table of medians: VRRP takeover, takeover → each
stream's entry and first packet through fw-2, the pause the server saw,
the full commit, fw-2's RSS; and the issue-17 target row (the active
stream's pause after takeover ≤ VRRP takeover + 50 ms). `--sizes ''`
runs only this table.

--kernel-filter runs, instead, ctsyncd and conntrackd each with `Filter
From Userspace` and `From Kernelspace` on a workload where every other UDP
flow comes from an address the Filter ignores, and compares the sender's
CPU per flow (and, for ctsyncd, the events it read) per filter location.
"""

import argparse
import json
import os
import select
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, f"{ROOT}/vmtests")

from driver import Lab  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")

CONF = """General {{
    HashSize 65536
    HashLimit 524288
    LogFile {d}/daemon.log
    LockFile {d}/daemon.lock
    UNIX {{ Path {d}/daemon.ctl }}
    NetlinkBufferSize 134217728
    NetlinkBufferSizeMaxGrowth 134217728
    Filter From {filter_from} {{
        Address Ignore {{ IPv4_address 127.0.0.1 IPv4_address 10.99.0.0/30{ignore_more} }}
    }}
}}
Sync {{
    Mode FTFW {{ }}
    Multicast {{
        IPv4_address 225.0.0.50
        IPv4_interface 10.99.0.{me}
        Group 3780
        Interface sync0
        SndSocketBuffer 24985600
        RcvSocketBuffer 24985600
        Checksum on
    }}
{options}}}
"""

GENERATOR = """
import socket, sys, time
n = int(sys.argv[1])
# "half": every other UDP flow from 10.1.0.4 (the Filter ignores it).
half = len(sys.argv) > 2 and sys.argv[2] == "half"
tcp = n // 20
for i in range(n - tcp):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("10.1.0.4" if half and i % 2 else "10.1.0.2", 1024 + i % 60000))
    s.sendto(b"x", ("10.2.0.2", 20000 + i // 60000))
    s.close()
for i in range(tcp):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00")
    s.bind(("10.1.0.3", 1024 + i % 60000))
    s.connect(("10.2.0.2", 5001 + i // 60000))
    s.close()
print(time.time(), flush=True)
"""

# Bounded in time (an hour, longer than any run) like every loop of the
# lab, also when the bench died without its cleanup.
TCP_SERVER = """
import socket, select, time
ls = []
for p in range(5001, 5006):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("10.2.0.2", p)); s.listen(4096); ls.append(s)
deadline = time.monotonic() + 3600
while time.monotonic() < deadline:
    r, _, _ = select.select(ls, [], [], 1)
    for s in r:
        c, _ = s.accept(); c.close()
"""

# A stateful forward rule: conntrack only runs in a namespace whose
# ruleset uses it.
NFT_FW = """
table inet bench {
    chain forward {
        type filter hook forward priority 0; policy drop;
        ct state established,related,new accept
    }
}
"""
NFT_SERVER = """
table inet bench {
    chain input { type filter hook input priority 0; udp dport 20000-20010 drop; }
}
"""


def proc_stat(m, pid):
    """(user+sys CPU seconds, RSS KiB, sys CPU seconds, user+sys CPU
    seconds of its children that ended and were waited for) of pid.
    conntrackd runs its cache dumps in forked children: their CPU is the
    daemon's too (ctsyncd's run in its loop)."""
    fields = m.succeed(f"cat /proc/{pid}/stat").rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    rss = next(int(l.split()[1]) for l in m.succeed(f"cat /proc/{pid}/status").splitlines() if l.startswith("VmRSS:"))
    return cpu, rss, int(fields[12]) / TICK, (int(fields[13]) + int(fields[14])) / TICK


def proc_peak(m, pid, reset=False):
    """Peak RSS in KiB (VmHWM) of pid since its start or the last reset;
    with reset, first resets it to the current RSS (clear_refs 5)."""
    if reset:
        m.succeed(f"echo 5 > /proc/{pid}/clear_refs")
    status = m.succeed(f"cat /proc/{pid}/status")
    return next(int(l.split()[1]) for l in status.splitlines() if l.startswith("VmHWM:"))


def daemon_pid(m, binary):
    """The daemon's pid among the processes of m's namespace."""
    name = os.path.basename(binary)[:15]
    pids = subprocess.run(["ip", "netns", "pids", m.ns], capture_output=True, text=True).stdout.split()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == name:
                    return pid
        except OSError:
            pass
    raise RuntimeError(f"no {name} running in {m.name}")


def link_counters(m, ifname):
    out = json.loads(m.succeed(f"ip -s -j link show {ifname}"))[0]["stats64"]
    return out["tx"]["bytes"] + out["rx"]["bytes"], out["tx"]["packets"] + out["rx"]["packets"]


def prompt(on):
    """The bench's own reaction time, out of the lag it measures: from
    the generator's start until the last poll, the bench runs at a
    real-time priority, so it wakes as soon as the generator prints its
    last flow's time and asks at once, instead of queueing behind the
    daemons and the generator on the lab's cores (its first poll was asked
    0.2 to 12.7 ms after the last flow on one busy day, results/wave13-7,
    and that was most of the lag of runs whose first poll found every
    entry). It blocks (on the generator's output, between polls, on the
    daemon's reply) for all but about 0.1 ms per poll, and the same for
    either daemon. RESET_ON_FORK: what it starts runs at the normal
    priority. `run_once` sets it back (also in its `finally`)."""
    if on:
        os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(10))
    else:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def run_generator(client, gen, n, mode):
    """Runs the generator in the client; returns the time of its last
    flow as soon as it prints it, and the process (still ending: see
    `generator_ended`). Waiting for the process meant waiting for it and
    `ip netns exec` to exit, about 10 ms, which a lag of 15 ms measured
    from that time mostly was."""
    p = subprocess.Popen(
        ["ip", "netns", "exec", client.ns, "python3", gen, str(n), mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=client.lab.env,
    )
    prompt(True)
    ready, _, _ = select.select([p.stdout], [], [], 900)
    line = p.stdout.readline() if ready else ""
    if not line.strip():
        p.kill()
        raise RuntimeError(f"generator: no time printed: {p.communicate(timeout=60)}")
    return float(line.split()[-1]), p


def generator_ended(p):
    out, err = p.communicate(timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"generator failed (rc={p.returncode}): {out}{err}")


def cached_in(stats, cache):
    """Entries in `cache` ("external", "internal") by `-s`'s text; None
    when the reply has no such block (cut short, or a daemon that did not
    answer in full)."""
    if f"cache {cache}:" not in stats:
        return None
    block = stats.split(f"cache {cache}:")[1]
    return int(block.split("current active connections:")[1].split()[0])


def external_count(m, binary, conf, cache="external"):
    rc, out = m.execute(f"{binary} -C {conf} -s")
    return (cached_in(out, cache) or 0) if rc == 0 else 0


def varint(b, i):
    """A postcard (LEB128) unsigned integer at b[i]: (value, next index)."""
    v, shift = 0, 0
    while True:
        v |= (b[i] & 0x7F) << shift
        i += 1
        if b[i - 1] < 0x80:
            return v, i
        shift += 7


def stats_on_socket(path, ctsyncd):
    """`-s` asked on a daemon's control socket directly (a UNIX socket's
    path is reached from any network namespace). The lag's clock: a poll
    through `ip netns exec` and a client process took about 10 ms, the
    size of the lag it measured. conntrackd's protocol: one native int
    (21, STATS), text until the daemon closes. ctsyncd's
    (src/control/proto.rs): frames of a 4-byte big-endian length, the
    protocol version (1) and a postcard value; the request is Stats
    (variant 5) {view General (0), format Plain (0)}, the reply Data (0)
    frames of text and a last Done (1)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        if ctsyncd:
            s.sendall(struct.pack(">I", 4) + bytes([1, 5, 0, 0]))
        else:
            s.sendall(struct.pack("=i", 21))
        data = bytearray()
        while chunk := s.recv(65536):
            data += chunk
    if not ctsyncd:
        return data.decode(errors="replace")
    text, i = [], 0
    while i + 4 <= len(data):
        (n,) = struct.unpack(">I", data[i:i + 4])
        body = data[i + 4:i + 4 + n]
        i += 4 + n
        if len(body) < 2 or body[0] != 1:
            raise RuntimeError(f"{path}: not a version-1 reply frame: {bytes(body[:8])!r}")
        if body[1] == 1:
            break
        if body[1] != 0:
            raise RuntimeError(f"{path}: unknown reply variant {body[1]}")
        length, j = varint(body, 2)
        text.append(body[j:j + length].decode())
    return "".join(text)


class Daemon:
    """What runs on fw1 (the sender, `binary`) and fw2 (the receiver,
    `receiver`; the same unless a mixed pair)."""

    def __init__(self, name, binary, key=False, receiver=None):
        self.name, self.binary, self.key = name, binary, key
        self.receiver = receiver or binary

    def on(self, fw_name):
        return self.binary if fw_name == "fw1" else self.receiver


def is_ctsyncd(binary):
    return os.path.basename(binary).startswith("ctsyncd")


def setup(n_flows):
    lab = Lab(["client", "fw1", "fw2", "server"])
    m = lab.machines
    client, fw1, fw2, server = m["client"], m["fw1"], m["fw2"], m["server"]
    lab.start_all()
    lab.link(client, "eth0", fw1, "eth0")
    lab.link(fw1, "eth1", server, "eth0")
    lab.link(fw1, "sync0", fw2, "sync0")
    client.succeed("ip addr add 10.1.0.2/24 dev eth0 && ip addr add 10.1.0.3/24 dev eth0 && ip addr add 10.1.0.4/24 dev eth0 && ip route add default via 10.1.0.1")
    server.succeed("ip addr add 10.2.0.2/24 dev eth0 && ip route add default via 10.2.0.1")
    fw1.succeed("ip addr add 10.1.0.1/24 dev eth0 && ip addr add 10.2.0.1/24 dev eth1 && ip addr add 10.99.0.1/30 dev sync0")
    fw2.succeed("ip addr add 10.99.0.2/30 dev sync0")
    fw1.succeed(f"nft -f - <<'EOF'\n{NFT_FW}\nEOF")
    server.succeed(f"nft -f - <<'EOF'\n{NFT_SERVER}\nEOF")
    server.spawn(f"python3 -c '{TCP_SERVER}'")
    # The client opens many sockets quickly; give it room.
    client.succeed("sysctl -qw net.ipv4.ip_local_port_range='1024 65535'")
    return lab, client, fw1, fw2, server


NFT_LOSS = """
table inet syncloss {{
    chain out {{ type filter hook output priority -300; oifname "sync0" udp dport 3780 numgen random mod 100 < {pct} drop; }}
}}
"""


# --pcap: where each run's capture of the sync link goes (empty: none).
PCAP_DIR = ""
# `--first-contact`: a mixed pair's burst starts before ctsyncd found its
# conntrackd peer, as in a migration's first minutes.
FIRST_CONTACT = False
# Where a run that never completed leaves its evidence (`--out`).
DIAG_DIR = ""


def apply_loss(fws, pct):
    """Drops pct % of the sync datagrams each firewall sends."""
    if pct:
        for fw in fws:
            fw.succeed(f"nft -f - <<'EOF'\n{NFT_LOSS.format(pct=pct)}\nEOF")


def dump_during(daemon, fw2, conf, ctl, at, out):
    """Monitoring during replication (issue 17 item 4): once fw2's
    external cache holds `at` entries, one `-e` through the daemon's own
    client, its lines counted. Polls fw2 every 5 ms (bounded: 120 s);
    what it found goes into `out`. Runs in a thread of its own, started
    before the bench raises its priority (`prompt`), so at the normal one."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        held = cached_in(stats_on_socket(ctl, is_ctsyncd(daemon.receiver)), "external") or 0
        if held >= at:
            t0 = time.monotonic()
            lines = fw2.succeed(f"{daemon.receiver} -C {conf} -e | wc -l", timeout=120)
            out.update(dump_s=time.monotonic() - t0, dump_from=held, dump_lines=int(lines.strip()))
            return
        time.sleep(0.005)
    out["dump_s"] = float("nan")


def keep_evidence(daemon, n, lab, confs):
    """A run that never completed: both daemons' logs, counters and caches
    (fw1's internal, fw2's external) into DIAG_DIR, before the lab goes."""
    d = f"{DIAG_DIR}/incomplete-{daemon.name.replace(' ', '').replace('→', '-to-')}-{n}-{time.strftime('%H%M%S')}"
    os.makedirs(d, exist_ok=True)
    views = {"fw1": [["-i"], ["-s"]], "fw2": [["-e"], ["-s"]]}
    for fw in (lab.machines["fw1"], lab.machines["fw2"]):
        binary = daemon.on(fw.name)
        extra = [["-s", "link"], ["-s", "--json"]] if is_ctsyncd(binary) else [["-s", "network"], ["-s", "queue"]]
        for view in views[fw.name] + extra:
            out = fw.execute(f"{binary} -C {confs[fw.name]} {' '.join(view)}", timeout=60)[1]
            with open(f"{d}/{fw.name}{'_'.join(view).replace('-', '_')}.txt", "w") as f:
                f.write(out)
        subprocess.run(["cp", f"{lab.dir}/{fw.name}/daemon.log", f"{d}/{fw.name}.log"], check=False)
    print(f"    incomplete: evidence in {d}", flush=True)


def run_once(daemon, n, loss=0, filter_from="Userspace", half_ignored=False, dump_at=0.0):
    """One measured run (loss: % of sync datagrams dropped); with half_ignored, every other UDP flow comes
    from an address the Filter ignores (filtered From filter_from), and
    only the other half is expected on fw2. dump_at (a fraction of the
    entries expected): one `-e` on fw2 once its external cache holds that
    many (`dump_during`)."""
    ignore_more = " IPv4_address 10.1.0.4" if half_ignored else ""
    lab, client, fw1, fw2, server = setup(n)
    try:
        apply_loss((fw1, fw2), loss)
        pids, confs = {}, {}
        options = ""
        if daemon.key:
            key = subprocess.run([daemon.binary, "--genkey"], capture_output=True, text=True, check=True).stdout
            path = f"{lab.dir}/sync.key"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(key)
            options = f"    Options {{ AuthenticationKeyFile {path} }}\n"
        capture = None
        if PCAP_DIR:
            # fw1's side of the sync link: what fw1 sent and fw2 did not
            # drop at its output, and what reached fw1 (a diagnosis), from
            # before the daemons start (their handshake), whole datagrams.
            os.makedirs(PCAP_DIR, exist_ok=True)
            pcap = f"{PCAP_DIR}/{daemon.name.replace(' ', '')}-{n}-{time.strftime('%H%M%S')}.pcap"
            capture = fw1.spawn(f"tcpdump -i sync0 -n -s 1600 -B 32768 -w {pcap} udp", log_file=f"{pcap}.log")
            time.sleep(0.5)
        for fw, me in ((fw1, 1), (fw2, 2)):
            d = f"{lab.dir}/{fw.name}"
            os.makedirs(d, exist_ok=True)
            confs[fw.name] = f"{d}/daemon.conf"
            with open(confs[fw.name], "w") as f:
                f.write(CONF.format(d=d, me=me, options=options, filter_from=filter_from, ignore_more=ignore_more))
            binary = daemon.on(fw.name)
            fw.succeed(f"{binary} -C {confs[fw.name]} -d")
            fw.wait_until_succeeds(f"{binary} -C {confs[fw.name]} -s >/dev/null", timeout=20)
            pids[fw.name] = daemon_pid(fw, binary)
        if daemon.binary != daemon.receiver and not FIRST_CONTACT:
            # A mixed pair: ctsyncd speaks conntrackd's protocol once it
            # found its peer's (conntrackd's datagrams for 2 s, none of
            # ctsyncd's for 3 s), and sends data once conntrackd answered its
            # HELLO (with conntrackd's next message, within a second). Until
            # session 29 the runs started before that, and ctsyncd →
            # conntrackd measured the discovery (1 to 8 s at 20 % loss), not
            # replication.
            fw, binary = (fw2, daemon.receiver) if daemon.binary == "/usr/sbin/conntrackd" else (fw1, daemon.binary)
            fw.wait_until_succeeds(
                f"{binary} -C {confs[fw.name]} -s link | grep -q 'peer protocol: conntrackd'", timeout=30)
        time.sleep(2)
        idle = {k: proc_stat(lab.machines[k], p) for k, p in pids.items()}
        link0 = link_counters(fw1, "sync0")
        gen = f"{lab.dir}/gen.py"
        with open(gen, "w") as f:
            f.write(GENERATOR)
        want = n - (n - n // 20) // 2 if half_ignored else n
        dump, dumper = {}, None
        if dump_at:
            dumper = threading.Thread(target=dump_during, daemon=True, args=(
                daemon, fw2, confs["fw2"], f"{lab.dir}/fw2/daemon.ctl", int(dump_at * want), dump))
            dumper.start()
        t_gen = time.time()
        mode = "half" if half_ignored else "all"
        last_created, generator = run_generator(client, gen, n, mode)
        gen_secs = last_created - t_gen
        # Wait for fw2's external cache (bounded: 30 s without progress),
        # asking its daemon on the control socket (see stats_on_socket).
        got, last_change, seen = 0, time.monotonic(), 0
        # Every poll after the last flow: (asked, answered) in seconds
        # after it, and the count. The lag cannot be shorter than the
        # first poll's answer: when that poll already finds every entry,
        # the lag is the bench's own reaction time, not the daemon's.
        polls = []
        t_complete = None
        ctl = f"{lab.dir}/fw2/daemon.ctl"
        while True:
            asked = time.time()
            count = cached_in(stats_on_socket(ctl, is_ctsyncd(daemon.receiver)), "external")
            polls.append((asked - last_created, time.time() - last_created, count))
            # A reply without the count is no news: it counted as 0 once,
            # and two runs of conntrackd stuck at 49 919 and 49 794 were
            # reported as having lost all 50 000 (results/wave13-7).
            got = max(got, count or 0)
            if got >= want:
                t_complete = time.time()
                break
            if got != seen:
                seen, last_change = got, time.monotonic()
            if time.monotonic() - last_change > 30:
                break
            # Finer than the lag it measures (a fraction of a millisecond
            # for a lucky run): a poll is about 0.2 ms, and this sleep;
            # 1 ms after the first 5 ms. Polled every 0.4 ms throughout,
            # a conntrackd receiving ctsyncd's 100 000 (fewer, larger
            # datagrams, still being read) took 172 ms instead of 6 ms.
            # Still bounded by the 30 s without progress above.
            time.sleep(0.0002 if time.time() - last_created < 0.005 else 0.001)
        prompt(False)
        lag = (t_complete - last_created) if t_complete else float("nan")
        if t_complete is None:
            keep_evidence(daemon, n, lab, confs)
        if capture:
            time.sleep(3)  # tcpdump is behind: the burst is still in its ring
            capture.terminate()
            capture.wait(timeout=10)
        generator_ended(generator)
        if dumper:
            # The dump's CPU is part of the receiver's: it must be over.
            dumper.join(timeout=150)
            if dumper.is_alive():
                raise RuntimeError(f"{daemon.name}: the -e during replication did not end")
            # conntrackd's dump child is waited for when it exits: its CPU
            # shows in the daemon's children's once it was reaped.
            time.sleep(0.5)
        busy = {k: proc_stat(lab.machines[k], p) for k, p in pids.items()}
        sync, events_read = {}, float("nan")
        for fw in (fw1, fw2):
            if is_ctsyncd(daemon.on(fw.name)):
                st = json.loads(fw.succeed(f"{daemon.on(fw.name)} -C {confs[fw.name]} -s --json"))
                sync[fw.name] = st["sync"]
                if fw is fw1:
                    events_read = st["runtime"]["events_received"]
        link1 = link_counters(fw1, "sync0")
        # fw-1 fails, as in a failover: its daemon is killed before fw-2
        # commits (its RSS is taken first). On this one kernel it would
        # otherwise still listen: netlink's listener mask is per protocol,
        # not per namespace, so a NEW listener in fw-1's namespace makes
        # the kernel build an event for each of fw-2's creates (ctsyncd's
        # own socket leaves the NEW group during -c; conntrackd's stays).
        time.sleep(2)
        rss_fw1_failing = proc_stat(fw1, pids["fw1"])[1]
        peak_fw1 = proc_peak(fw1, pids["fw1"])
        fw1.succeed(f"kill -9 {pids['fw1']}")
        fw1.wait_until_succeeds(f"! kill -0 {pids['fw1']} 2>/dev/null", timeout=10)
        t0 = time.monotonic()
        fw2.succeed(f"{daemon.receiver} -C {confs['fw2']} -c", timeout=600)
        commit_secs = time.monotonic() - t0
        in_kernel = int(fw2.succeed("conntrack -C").strip())
        # After a commit the backup holds both caches: its own commit's
        # events fill the internal one. RSS once they all are in (bounded:
        # 20 s, well before the committed UDP flows time out), and 2 s on.
        # The event buffer (CONF) holds a whole commit's events: with a
        # 16 MB one conntrackd's overran and its internal cache held 13 107
        # of them, so its RSS was that of a backup missing most of its
        # flows (its overrun resync comes after 30 s, when they expired).
        settled = None
        while time.monotonic() - t0 - commit_secs < 20:
            if external_count(fw2, daemon.receiver, confs["fw2"], "internal") >= n:
                settled = time.monotonic() - t0 - commit_secs
                break
            time.sleep(0.1)
        time.sleep(2)
        after = proc_stat(fw2, pids["fw2"])
        peak_fw2 = proc_peak(fw2, pids["fw2"])
        internal_after = external_count(fw2, daemon.receiver, confs["fw2"], "internal")
        # The rest of a takeover script (conntrackd's primary-backup.sh:
        # -c, -f, -R, -B): the bulk of the new primary's table, to a peer
        # that is gone. Its peak: the send queue it builds.
        proc_peak(fw2, pids["fw2"], reset=True)
        fw2.succeed(f"{daemon.receiver} -C {confs['fw2']} -B", timeout=60)
        time.sleep(3)
        peak_bulk = proc_peak(fw2, pids["fw2"])
        return {
            "daemon": daemon.name, "n": n, "generator_s": gen_secs,
            "cpu_sender_s": busy["fw1"][0] - idle["fw1"][0], "cpu_receiver_s": busy["fw2"][0] - idle["fw2"][0],
            "cpu_receiver_children_s": busy["fw2"][3] - idle["fw2"][3], **dump,
            "sys_sender_s": busy["fw1"][2] - idle["fw1"][2],
            "rss_idle_kib": max(idle["fw1"][1], idle["fw2"][1]),
            "rss_sender_kib": busy["fw1"][1], "rss_receiver_kib": busy["fw2"][1],
            "replicated": got, "lost": max(0, want - got), "lag_s": lag, "events_read": events_read,
            "last_created": last_created, "complete": t_complete, "polls": polls[:20],
            "rss_fw1_failing_kib": rss_fw1_failing, "rss_fw2_after_commit_kib": after[1],
            "peak_fw1_kib": peak_fw1, "peak_fw2_kib": peak_fw2, "peak_fw2_bulk_kib": peak_bulk,
            "internal_after_commit": internal_after,
            "internal_settled_s": settled if settled is not None else float("nan"),
            "commit_s": commit_secs, "commit_per_s": n / commit_secs if commit_secs else 0, "kernel_after_commit": in_kernel,
            "link_bytes": link1[0] - link0[0], "link_frames": link1[1] - link0[1],
            "sync_stats": sync,
        }
    finally:
        prompt(False)
        lab.cleanup()


def stripped_size(path):
    out = f"/tmp/bench-strip-{os.getpid()}"
    subprocess.run(["cp", path, out], check=True)
    subprocess.run(["strip", out], check=False)
    size = os.path.getsize(out)
    os.unlink(out)
    return size


def conntrackd_size():
    binary = "/usr/sbin/conntrackd"
    total = stripped_size(binary)
    libs = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    for line in libs.splitlines():
        parts = line.split("=>")
        if len(parts) == 2 and any(k in parts[0] for k in ("netfilter", "nfnetlink", "mnl", "tirpc")):
            total += os.path.getsize(os.path.realpath(parts[1].split()[0]))
    return total


ROWS = [
    ("CPU per entry, sender (µs)", lambda r: 1e6 * r["cpu_sender_s"] / r["n"]),
    ("CPU per entry, receiver (µs)", lambda r: 1e6 * r["cpu_receiver_s"] / r["n"]),
    ("… of the sender's, in the kernel (µs)", lambda r: 1e6 * r.get("sys_sender_s", float("nan")) / r["n"]),
    ("RSS sender (KiB)", lambda r: r["rss_sender_kib"]),
    ("RSS receiver (KiB)", lambda r: r["rss_receiver_kib"]),
    ("idle RSS (KiB)", lambda r: r["rss_idle_kib"]),
    ("entries lost", lambda r: r["lost"]),
    ("replication lag (ms)", lambda r: 1000 * r["lag_s"]),
    ("commit wall time (s)", lambda r: r["commit_s"]),
    ("commit entries/s", lambda r: r["commit_per_s"]),
    ("entries in fw2 kernel after commit", lambda r: r["kernel_after_commit"]),
    ("s until fw2's internal cache holds the committed entries (≤ 20)", lambda r: r.get("internal_settled_s", float("nan"))),
    ("RSS fw-1 when it fails, before fw-2's commit (KiB)", lambda r: r.get("rss_fw1_failing_kib", float("nan"))),
    ("RSS fw-2 after commit, both caches held (KiB)", lambda r: r.get("rss_fw2_after_commit_kib", float("nan"))),
    ("peak RSS fw-1 from start to failure (KiB)", lambda r: r.get("peak_fw1_kib", float("nan"))),
    ("peak RSS fw-2 from start through the commit (KiB)", lambda r: r.get("peak_fw2_kib", float("nan"))),
    ("peak RSS fw-2 during -B after the commit (KiB)", lambda r: r.get("peak_fw2_bulk_kib", float("nan"))),
    ("entries in fw2 internal cache after commit", lambda r: r.get("internal_after_commit", float("nan"))),
    ("sync-link bytes per entry", lambda r: r["link_bytes"] / r["n"]),
    ("sync-link frames per 1000 entries", lambda r: 1000 * r["link_frames"] / r["n"]),
]


def median(xs):
    """The median of a row's runs, a missing value (nan: a run that never
    completed, or never settled) counted as the slowest: statistics.median
    sorts with nan where the run happened to be, so one such run of three
    gave nan, or the faster of the other two, by its place in the list."""
    xs = sorted(xs, key=lambda x: (x != x, x))
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def lag_list(lags):
    """Each run's lag in milliseconds, in run order."""
    return " ".join("–" if v != v else f"{1000 * v:.2f}" for v in lags)


def first_polls(runs):
    """When each run's first poll after the last flow was answered (ms),
    starred when it already found every entry."""
    out = []
    for r in runs:
        if not r.get("polls"):
            out.append("–")
            continue
        _, answered, got = r["polls"][0]
        out.append(f"{1000 * answered:.2f}{'*' if (got or 0) >= r['n'] else ''}")
    return " ".join(out)


def lag_rows(n, of, done):
    """The lossy-link rows: lag after the last flow (median and best run
    of each daemon), runs that never completed, entries lost."""
    nan = float("nan")
    lag = {d: of(n, d, lambda r: r["lag_s"]) for d in ("ctsyncd", "conntrackd")}
    ok = {d: done(v) for d, v in lag.items()}
    lost = max(of(n, "ctsyncd", lambda r: r["lost"]))
    a_med = statistics.median(ok["ctsyncd"]) if ok["ctsyncd"] else nan
    a_best = min(ok["ctsyncd"], default=nan)
    b_best = min(ok["conntrackd"], default=nan)
    met = a_med <= 0.3 and (a_med <= b_best or b_best != b_best) and len(ok["ctsyncd"]) == len(lag["ctsyncd"])
    # In milliseconds: a lucky run's lag is a fraction of one.
    return [
        f"| {n} | lag after the last flow, median of completed runs (ms): ≤ 300 and ≤ conntrackd's best | {1000 * a_med:.2f} | "
        f"best {1000 * b_best:.2f} | {'yes' if met else 'no'} |",
        f"| {n} | lag, best run (ms) | {1000 * a_best:.2f} | {1000 * b_best:.2f} | |",
        f"| {n} | lag of each run (ms; – never completed) | {lag_list(lag['ctsyncd'])} | {lag_list(lag['conntrackd'])} | |",
        f"| {n} | first poll answered (ms; * it found every entry: the lag is the poll's) | "
        f"{first_polls(of(n, 'ctsyncd', lambda r: r))} | {first_polls(of(n, 'conntrackd', lambda r: r))} | |",
        f"| {n} | runs that never completed (of {len(lag['ctsyncd'])}) | {len(lag['ctsyncd']) - len(ok['ctsyncd'])} | "
        f"{len(lag['conntrackd']) - len(ok['conntrackd'])} | |",
        f"| {n} | entries lost (worst run) | {lost} | {max(of(n, 'conntrackd', lambda r: r['lost']))} | {'yes' if lost == 0 else 'no'} |",
    ]


def target_rows(runs, sizes, loss):
    """Issue 17's targets, from the same runs: with a lossy link, the lag
    after the last flow (median and best run of each daemon); always, the
    ratios it bounds."""
    out = ["", "| N | issue-17 target | ctsyncd | conntrackd 1.4.7 | met |", "|---:|---|---:|---:|---|"]

    def of(n, name, f):
        return [f(r) for r in runs if r["n"] == n and r["daemon"] == name]

    def done(xs):
        # A run that never completed has no lag (nan): counted apart.
        return [x for x in xs if x == x]

    nan = float("nan")
    for n in sizes:
        if loss:
            out += lag_rows(n, of, done)
        for label, key, bound in (("receiver CPU ratio ≤ 0.25", "cpu_receiver_s", 0.25), ("sender CPU ratio ≤ 0.35", "cpu_sender_s", 0.35),
                                  ("commit time ratio ≤ 0.6", "commit_s", 0.6), ("receiver RSS ratio ≤ 0.25", "rss_receiver_kib", 0.25),
                                  ("sender RSS ratio ≤ 0.25", "rss_sender_kib", 0.25),
                                  ("fw-1 RSS when it fails ratio ≤ 0.25", "rss_fw1_failing_kib", 0.25),
                                  ("fw-2 RSS after commit (both caches) ratio ≤ 0.25", "rss_fw2_after_commit_kib", 0.25)):
            # Runs that replicated everything: a daemon that got nothing
            # across has nothing to commit.
            def whole(r, key=key):
                return r[key] if r["lost"] == 0 else nan

            a = statistics.median(done(of(n, "ctsyncd", whole)) or [nan])
            b = statistics.median(done(of(n, "conntrackd", whole)) or [nan])
            ratio = a / b if b else nan
            verdict = "yes" if ratio <= bound else "no" if ratio == ratio else "–"
            out.append(f"| {n} | {label} (runs that replicated all) | {a:.2f} | {b:.2f} | {ratio:.2f} {verdict} |")
    return out


PAIR_ROWS = [
    ("CPU per entry, sender (µs)", lambda r: 1e6 * r["cpu_sender_s"] / r["n"]),
    ("CPU per entry, receiver (µs)", lambda r: 1e6 * r["cpu_receiver_s"] / r["n"]),
    ("replication lag (ms)", lambda r: 1000 * r["lag_s"]),
    ("entries lost", lambda r: r["lost"]),
]


KERNEL_FILTER_ROWS = [
    ("CPU per flow, sender (µs)", lambda r: 1e6 * r["cpu_sender_s"] / r["n"]),
    ("… of it in the kernel (µs)", lambda r: 1e6 * r["sys_sender_s"] / r["n"]),
    ("events the sender read per flow", lambda r: r["events_read"] / r["n"]),
    ("entries replicated", lambda r: r["replicated"]),
    ("entries lost", lambda r: r["lost"]),
]


def pair_table(runs, sizes, reps):
    """One row per pair and direction at each size: the mixed pairs next to
    the homogeneous ones."""
    if not sizes:
        return []
    pairs = [("ctsyncd → ctsyncd", "ctsyncd"), ("conntrackd → conntrackd", "conntrackd"),
             ("conntrackd → ctsyncd", "conntrackd → ctsyncd"), ("ctsyncd → conntrackd", "ctsyncd → conntrackd")]
    lines = ["", f"Mixed pairs (rolling upgrade), fw1 → fw2; medians of {reps} runs.", "",
             "| N | pair (sender → receiver) | " + " | ".join(label for label, _ in PAIR_ROWS) + " |",
             "|---:|---|" + "---:|" * len(PAIR_ROWS)]
    for n in sizes:
        for label, name in pairs:
            mine = [r for r in runs if r["n"] == n and r["daemon"] == name]
            if not mine:
                continue
            cells = [f"{median(f(r) for r in mine):.2f}" for _, f in PAIR_ROWS]
            lines.append(f"| {n} | {label} | " + " | ".join(cells) + " |")
    return lines


def kernel_filter_bench(args, ctsyncd):
    """Filter From Userspace against From Kernelspace on a workload where
    half the UDP flows come from an ignored address: the sender's CPU per
    flow (user-space filtering reads, decodes and drops every ignored
    event; the kernel filter drops them before they are queued)."""
    daemons = [("ctsyncd", ctsyncd), ("conntrackd", "/usr/sbin/conntrackd")]
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = []
    for n in sizes:
        for rep in range(args.reps):
            for name, binary in daemons:
                for where in ("Userspace", "Kernelspace"):
                    r = run_once(Daemon(name, binary), n, filter_from=where, half_ignored=True)
                    r["filter"] = where
                    runs.append(r)
                    print(f"N={n} rep={rep + 1} {name} From {where}: cpu sender {r['cpu_sender_s']:.2f}s "
                          f"(sys {r['sys_sender_s']:.2f}s) events read {r['events_read']} "
                          f"replicated {r['replicated']} lost {r['lost']}", flush=True)
    machine = f"{os.uname().machine}, {os.cpu_count()} cores, kernel {os.uname().release}"
    head = ["N", "metric", "ctsyncd user", "ctsyncd kernel", "kernel/user",
            "conntrackd user", "conntrackd kernel", "kernel/user"]
    lines = [f"Kernel-space vs user-space Filter {time.strftime('%Y-%m-%d %H:%M')} on {machine}; "
             f"half the UDP flows ignored; medians of {args.reps} runs.", "",
             "| " + " | ".join(head) + " |", "|---:|---|" + "---:|" * (len(head) - 2)]
    for n in sizes:
        for label, f in KERNEL_FILTER_ROWS:
            cells = []
            for name, _ in daemons:
                med = [median(f(r) for r in runs if r["n"] == n and r["daemon"] == name and r["filter"] == w)
                       for w in ("Userspace", "Kernelspace")]
                ratio = f"{med[1] / med[0]:.2f}" if med[0] else "–"
                cells += [f"{med[0]:.2f}", f"{med[1]:.2f}", ratio]
            lines.append(f"| {n} | {label} | " + " | ".join(cells) + " |")
    save_table(args.out, "bench-kernel-filter", lines, {"machine": machine, "runs": runs})


def save_table(out, name, lines, data):
    """Prints a table and writes it to out/name-<time>.md, the runs
    behind it to out/name-<time>.json."""
    table = "\n".join(lines)
    print("\n" + table)
    os.makedirs(out, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with open(f"{out}/{name}-{stamp}.md", "w") as f:
        f.write(table + "\n")
    with open(f"{out}/{name}-{stamp}.json", "w") as f:
        json.dump(data, f, indent=1)


DUMP_ROWS = [
    ("CPU per entry, receiver, one `-e` included (µs)",
     lambda r: 1e6 * (r["cpu_receiver_s"] + r["cpu_receiver_children_s"]) / r["n"]),
    ("… of it in forked children (µs)", lambda r: 1e6 * r["cpu_receiver_children_s"] / r["n"]),
    ("entries in fw2's external cache when `-e` began", lambda r: r.get("dump_from", float("nan"))),
    ("lines `-e` printed", lambda r: r.get("dump_lines", float("nan"))),
    ("`-e` wall time (s)", lambda r: r.get("dump_s", float("nan"))),
    ("CPU per entry, sender (µs)", lambda r: 1e6 * r["cpu_sender_s"] / r["n"]),
    ("replication lag (ms)", lambda r: 1000 * r["lag_s"]),
    ("entries lost", lambda r: r["lost"]),
]


def dump_table(runs, sizes, reps, loss, machine):
    """The table of `dump_during_bench`, with issue 17's receiver target
    (ratio of medians, runs that replicated everything)."""
    lines = [f"Receiver with monitoring {time.strftime('%Y-%m-%d %H:%M')} on {machine}: one `-e` on fw2 once "
             f"its external cache holds half the flows; medians of {reps} runs"
             + (f"; sync link: {loss} % loss each way." if loss else "."), "",
             "| N | metric | ctsyncd | conntrackd 1.4.7 | ratio |", "|---:|---|---:|---:|---:|"]
    for n in sizes:
        for label, f in DUMP_ROWS:
            med = [median(f(r) for r in runs if r["n"] == n and r["daemon"] == name) for name in ("ctsyncd", "conntrackd")]
            ratio = f"{med[0] / med[1]:.2f}" if med[1] and med[1] == med[1] else "–"
            lines.append(f"| {n} | {label} | {med[0]:.2f} | {med[1]:.2f} | {ratio} |")
        a, b = (median(DUMP_ROWS[0][1](r) for r in runs if r["n"] == n and r["daemon"] == name and r["lost"] == 0)
                for name in ("ctsyncd", "conntrackd"))
        ratio = a / b if b else float("nan")
        verdict = "yes" if ratio <= 0.25 else "no" if ratio == ratio else "–"
        lines.append(f"| {n} | issue-17 target: receiver CPU ratio ≤ 0.25, one `-e` included (runs that replicated all) "
                     f"| {a:.2f} | {b:.2f} | {ratio:.2f} {verdict} |")
    return lines


def dump_during_bench(args, ctsyncd):
    """--dump-during: the backup's cost while replicating with monitoring
    (issue 17 item 4): one `-e` on fw2 once its external cache holds half
    the flows, ctsyncd and conntrackd 1.4.7 alternately. The receiver's
    CPU includes the dump (conntrackd's runs in a forked child, counted)."""
    daemons = [Daemon("ctsyncd", ctsyncd), Daemon("conntrackd", "/usr/sbin/conntrackd")]
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = []
    for n in sizes:
        for rep in range(args.reps):
            for d in daemons:
                r = run_once(d, n, args.loss, dump_at=0.5)
                runs.append(r)
                print(f"N={n} rep={rep + 1} {d.name} with -e: cpu receiver {r['cpu_receiver_s']:.2f}s "
                      f"+ children {r['cpu_receiver_children_s']:.2f}s, -e of {r.get('dump_lines')} lines "
                      f"from {r.get('dump_from')} in {r.get('dump_s', float('nan')):.2f}s, lag {1000 * r['lag_s']:.2f} ms "
                      f"lost {r['lost']}", flush=True)
    machine = f"{os.uname().machine}, {os.cpu_count()} cores, kernel {os.uname().release}"
    save_table(args.out, "bench-dump-during", dump_table(runs, sizes, args.reps, args.loss, machine),
               {"machine": machine, "runs": runs})


def commit_gap_bench(args, ctsyncd):
    """--commit-gap: the failover lab's commit-gap measurement (vmtests/
    gap.py) for ctsyncd and conntrackd 1.4.7, alternately, --reps times.
    Returns the table's lines and the runs."""
    import atexit
    import gap
    import shutil
    import tempfile
    # The lab runs `ctsyncd` from PATH (its notify script too): a
    # directory of its own with a copy of the measured binary named
    # `ctsyncd` (not a link: `-d` re-executes /proc/self/exe, and gap.py
    # finds the daemon by that name for its RSS). With the binary's own
    # directory first, a CTSYNCD not named `ctsyncd` (ctsyncd-v1) left
    # this table measuring whatever `ctsyncd` came next on PATH, another
    # build than the other tables'.
    bindir = tempfile.mkdtemp(prefix="bench-ctsyncd.")
    atexit.register(shutil.rmtree, bindir, True)
    shutil.copy2(ctsyncd, f"{bindir}/ctsyncd")
    os.environ["PATH"] = f"{bindir}:{os.environ['PATH']}"
    n, runs, failed = args.commit_gap, [], {"ctsyncd": 0, "conntrackd": 0}
    for rep in range(args.reps):
        for daemon in ("ctsyncd", "conntrackd"):
            try:
                r = gap.measure(daemon, n)
            except AssertionError as e:
                # A failover that went wrong is a result too; the rest runs.
                print(f"commit gap N={n} rep={rep + 1} {daemon}: FAILED: {str(e)[:300]}", flush=True)
                failed[daemon] += 1
                continue
            r["load"] = os.getloadavg()[0]
            runs.append(r)
            print(f"commit gap N={n} rep={rep + 1} {daemon}: takeover {r['takeover_s']:.2f}s, "
                  f"stream entries +{r['tcp_entry_ms']:.0f}/{r['udp_entry_ms']:.0f} ms (TCP/UDP), "
                  f"UDP through fw-2 +{r['udp_first_forward_ms']:.0f} ms, commit +{r['commit_end_s']:.2f}s, "
                  f"load {r['load']:.1f}", flush=True)
    loads = [r["load"] for r in runs] or [float("nan")]
    lines = ["", f"Commit gap (issue 17 item 3): {n} idle entries, one active TCP stream, one active UDP stream "
             f"and one FTP PASV session through fw-1, which crashes; times from fw-2's takeover (both VIPs on "
             f"fw-2); medians of {args.reps} runs; 1-min load {min(loads):.1f}–{max(loads):.1f}.", ""]
    lines += gap.table(runs)
    lines.append(f"| failed runs (assertions: stream intact, FTP data after failover, all entries in fw-2's kernel) "
                 f"| {failed['ctsyncd']} | {failed['conntrackd']} | |")
    return lines, runs


def commit_gap_target_rows(runs, n):
    """The issue-17 target row for the commit gap, in target_rows' format."""
    import gap
    a, met = gap.target_met(runs, "ctsyncd")
    b, _ = gap.target_met(runs, "conntrackd")
    return [f"| {n} | active stream's pause after takeover ≤ VRRP takeover + 50 ms: takeover → first datagram of the "
            f"active UDP stream through fw-2, median (ms) | {a:.0f} | {b:.0f} | {'yes' if met else 'no'} |"]


def foreign_listeners():
    """conntrack event readers already running anywhere on this kernel
    (`conntrack -E`, a daemon left from a test): netlink's listener mask
    is per protocol, not per namespace, so one of them makes the kernel
    build an event for every create in every namespace. A stray
    `conntrack -E` in a namespace already removed doubled ctsyncd's
    commit time (0.22 → 0.45 s for 50 000) and cost conntrackd less,
    whose own socket listens during its commit anyway."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm in ("conntrack", "conntrackd", "ctsyncd"):
            found.append(f"{comm} (pid {pid})")
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,250000")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=f"{ROOT}/results")
    ap.add_argument("--loss", type=int, default=0,
                    help="percent of sync datagrams dropped in each direction")
    ap.add_argument("--with-key", action="store_true",
                    help="also run ctsyncd with AuthenticationKeyFile (sealed datagrams)")
    ap.add_argument("--mixed-sizes", default="100000",
                    help="sizes at which the mixed pairs (conntrackd ⇄ ctsyncd) run too; empty: none")
    ap.add_argument("--commit-gap", type=int, default=100000,
                    help="idle entries of the commit-gap table (failover lab); 0: no such table")
    ap.add_argument("--only", default="",
                    help="run only these daemons or pairs (comma-separated names as the tables print them; "
                         "a diagnosis: the tables then lack the other side)")
    ap.add_argument("--pcap", default="",
                    help="a diagnosis: capture fw1's sync link of every run into this directory (tcpdump)")
    ap.add_argument("--dump-during", action="store_true",
                    help="the receiver's CPU with one -e on fw2 during replication (monitoring), both daemons")
    ap.add_argument("--kernel-filter", action="store_true",
                    help="compare Filter From Userspace and From Kernelspace (half the flows ignored)")
    ap.add_argument("--first-contact", action="store_true",
                    help="mixed pairs: the burst starts at once, before ctsyncd found its conntrackd peer "
                         "(what a migration's first contact must not lose; the lag then includes the discovery)")
    args = ap.parse_args()
    global PCAP_DIR, FIRST_CONTACT, DIAG_DIR
    PCAP_DIR = args.pcap
    DIAG_DIR = args.out
    FIRST_CONTACT = args.first_contact
    # A daemon of a lab that just ended may still be exiting.
    for _ in range(20):
        if not (stray := foreign_listeners()):
            break
        time.sleep(0.5)
    if stray:
        sys.exit("bench: stop these first, they slow every namespace's conntrack creates: " + ", ".join(stray))
    if os.geteuid() != 0:
        sys.exit("bench: needs root (network namespaces)")
    ctsyncd = os.environ.get("CTSYNCD", f"{ROOT}/target/release/ctsyncd")
    if args.kernel_filter:
        kernel_filter_bench(args, ctsyncd)
        return
    if args.dump_during:
        dump_during_bench(args, ctsyncd)
        return
    if not args.sizes:
        commit_gap_only(args, ctsyncd)
        return
    daemons = [Daemon("ctsyncd", ctsyncd), Daemon("conntrackd", "/usr/sbin/conntrackd")]
    if args.with_key:
        daemons.insert(1, Daemon("ctsyncd+key", ctsyncd, key=True))
    mixed = [Daemon("conntrackd → ctsyncd", "/usr/sbin/conntrackd", receiver=ctsyncd),
             Daemon("ctsyncd → conntrackd", ctsyncd, receiver="/usr/sbin/conntrackd")]
    if args.only:
        wanted = args.only.split(",")
        daemons = [d for d in daemons if d.name in wanted]
        mixed = [d for d in mixed if d.name in wanted]
    sizes = [int(s) for s in args.sizes.split(",")]
    mixed_sizes = [int(s) for s in args.mixed_sizes.split(",") if s]
    runs = []
    for n in sizes:
        for rep in range(args.reps):
            for d in daemons + (mixed if n in mixed_sizes else []):
                r = run_once(d, n, args.loss)
                runs.append(r)
                first = r["polls"][0] if r["polls"] else (float("nan"),) * 3
                print(f"N={n} rep={rep + 1} {d.name}: lag {1000 * r['lag_s']:.2f} ms lost {r['lost']} "
                      f"(first poll asked at {1000 * first[0]:.2f} ms, answered at {1000 * first[1]:.2f} ms: {first[2]}) "
                      f"cpu {r['cpu_sender_s']:.2f}/{r['cpu_receiver_s']:.2f}s rss {r['rss_sender_kib']}/{r['rss_receiver_kib']} KiB "
                      f"commit {r['commit_s']:.2f}s link {r['link_bytes']} B", flush=True)
                for fw, st in r["sync_stats"].items():
                    print(f"    {fw}: lost {st.get('lost')} retransmitted {st.get('retransmitted')} before {st.get('before')} "
                          f"malformed {st.get('malformed')} dropped {st.get('resend_queue_dropped')}", flush=True)
    sizes_bin = {"ctsyncd": stripped_size(ctsyncd), "conntrackd": conntrackd_size()}
    machine = f"{os.uname().machine}, {os.cpu_count()} cores, kernel {os.uname().release}"
    if args.only:
        # A diagnosis: the runs only (the tables compare both daemons).
        os.makedirs(args.out, exist_ok=True)
        with open(f"{args.out}/only-{time.strftime('%Y%m%d-%H%M%S')}.json", "w") as f:
            json.dump({"machine": machine, "runs": runs}, f, indent=1)
        return
    keyed = ["ctsyncd + key", "key / no key"] if args.with_key else []
    head = ["N", "metric", "ctsyncd", *keyed, "conntrackd 1.4.7", "ratio"]
    lines = [f"Benchmark {time.strftime('%Y-%m-%d %H:%M')} on {machine}; medians of {args.reps} runs.", "",
             "| " + " | ".join(head) + " |", "|---:|---|" + "---:|" * (len(head) - 2)]
    for n in sizes:
        for label, f in ROWS:
            med = {d.name: median(f(r) for r in runs if r["n"] == n and r["daemon"] == d.name) for d in daemons}
            a, b = med["ctsyncd"], med["conntrackd"]
            ratio = f"{a / b:.2f}" if b else "–"
            cells = [f"{a:.2f}"]
            if args.with_key:
                k = med["ctsyncd+key"]
                cells += [f"{k:.2f}", f"{k / a:.2f}" if a else "–"]
            lines.append(f"| {n} | {label} | " + " | ".join(cells) + f" | {b:.2f} | {ratio} |")
    a, b = sizes_bin["ctsyncd"], sizes_bin["conntrackd"]
    same = [str(a), "1.00"] if args.with_key else []
    lines.append(f"| – | stripped binary (bytes; conntrackd + its netfilter libraries) | {a} | " + " | ".join(same + [str(b)]) + f" | {a / b:.2f} |")
    lines += pair_table(runs, [n for n in sizes if n in mixed_sizes], args.reps)
    gap_runs = []
    if args.commit_gap:
        gap_lines, gap_runs = commit_gap_bench(args, ctsyncd)
        lines += gap_lines
    if args.loss:
        lines[0] += f" Sync link: {args.loss} % loss each way."
    lines += target_rows(runs, sizes, args.loss)
    if gap_runs:
        lines += commit_gap_target_rows(gap_runs, args.commit_gap)
    save_table(args.out, "bench", lines,
               {"machine": machine, "runs": runs, "binary_sizes": sizes_bin, "commit_gap_runs": gap_runs})


def commit_gap_only(args, ctsyncd):
    """`--sizes ''`: the commit-gap table and its target row alone."""
    if not args.commit_gap:
        sys.exit("bench: --sizes '' runs only the commit-gap table: give --commit-gap N")
    machine = f"{os.uname().machine}, {os.cpu_count()} cores, kernel {os.uname().release}"
    lines, runs = commit_gap_bench(args, ctsyncd)
    lines[1] = f"Benchmark {time.strftime('%Y-%m-%d %H:%M')} on {machine}. " + lines[1]
    lines += ["", "| N | issue-17 target | ctsyncd | conntrackd 1.4.7 | met |", "|---:|---|---:|---:|---|"]
    lines += commit_gap_target_rows(runs, args.commit_gap)
    save_table(args.out, "bench-commit-gap", lines[1:], {"machine": machine, "runs": runs})


if __name__ == "__main__":
    main()
