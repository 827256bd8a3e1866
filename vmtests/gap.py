"""The commit gap (issue 17 item 3), shared by scenarios/commit_gap.py and
benches/bench.py --commit-gap: N idle conntracks, one active TCP stream
and one FTP PASV session through fw-1; fw-1 crashes; how long until fw-2
holds the VIPs, until the stream's first packet goes through fw-2, and
until the commit is complete.

The lab is topology.py's, with two changes that make the measurement
mean something:

- both firewalls set nf_conntrack_tcp_loose=0: a mid-stream TCP packet
  without a conntrack is INVALID and dropped, so the stream passes fw-2
  only once its entry is committed (with the default, fw-2 would pick the
  stream up by itself and no daemon would matter);
- a UDP stream (client → server port 9000, a datagram every 10 ms) runs
  beside the TCP one, and fw-2 refuses new UDP/9000 flows (a probe rule
  of its own): the UDP stream passes fw-2 only through its committed
  entry, and since it keeps sending, its first datagram through fw-2 shows
  when the entry arrived. The TCP stream's first packet through fw-2 comes
  only with the client's next retransmission (exponential backoff: after a
  3.6 s VRRP failover, seconds later), the same with any daemon;
- the notify script is primary-backup.sh unchanged, but its daemon client
  goes through a wrapper that logs when each command (`-c`, `-f`, ...)
  starts and ends.

The stream starts before the idle entries are created: the idle ones are
the newer ones in fw-2's cache, as on a real firewall where a long-lived
connection is older than most of the table.

The failure is a crash: fw-1's links go down, then every process in it is
killed: it sends nothing more (no priority-0 advert), so fw-2 waits for
keepalived's master-down interval, as when a machine dies.

Timestamps are time.monotonic() of gap_probe.py's watcher in fw-2 (one
clock in every namespace); the wrapper's `date +%s.%N` is converted with
the watcher's realtime offset.
"""

import json
import os
import statistics
import subprocess
import time

from driver import log, subtest
from topology import (CTD_HASH_SIZE, HOLDS_VIPS, build, cached, ctl_cmd, dump_logs, file_text, ftp_server, keepalived,
                      start_daemon)

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE = f"/usr/bin/python3 {HERE}/gap_probe.py"
PRIMARY_BACKUP = f"{os.path.dirname(HERE)}/etc/keepalived/primary-backup.sh"
WAIT_REPLICATED = 30  # s without progress before giving up
# fw-2 takes no new UDP/9000 flow: the UDP stream needs its committed entry.
NFT_PROBE = """table inet gap_probe {
    chain forward {
        type filter hook forward priority -10;
        udp dport 9000 ct state new drop
    }
}"""


def notify_with_times(lab, fw):
    """primary-backup.sh with a timing wrapper around the daemon's client."""
    d = f"{lab.dir}/{fw.name}"
    times = f"{d}/ctl-times.log"
    wrapper, script = f"{d}/timed-ctl.sh", f"{d}/timed-notify.sh"
    with open(wrapper, "w") as f:
        f.write(f"""#!/bin/sh
echo "$(date +%s.%N) start $*" >> {times}
"$CTSYNCD_REAL" "$@"; rc=$?
echo "$(date +%s.%N) end $* rc=$rc" >> {times}
exit $rc
""")
    with open(script, "w") as f:
        f.write(f"""#!/bin/sh
echo "$(date +%s.%N) notify $1" >> {times}
export CTSYNCD_REAL="$CTSYNCD_BIN" CTSYNCD_BIN={wrapper}
exec {PRIMARY_BACKUP} "$1"
""")
    os.chmod(wrapper, 0o755)
    os.chmod(script, 0o755)
    return script


def ctl_times(lab, fw):
    """[(realtime, event, args)] from fw's timing wrapper."""
    out = []
    for line in file_text(f"{lab.dir}/{fw.name}/ctl-times.log").splitlines():
        t, event, *rest = line.split()
        if rest[:1] == ["-C"]:
            rest = rest[2:]
        out.append((float(t), event, " ".join(rest)))
    return out


def external_count(fw):
    return cached(fw, "external")


def daemon_pid(fw):
    """The pid of the daemon fw runs (ctsyncd or conntrackd), or None."""
    pids = subprocess.run(["ip", "netns", "pids", fw.ns], capture_output=True, text=True).stdout.split()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == fw.daemon:
                    return pid
        except OSError:
            pass
    return None


def daemon_rss_kib(fw):
    try:
        with open(f"/proc/{daemon_pid(fw)}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    except OSError:
        return float("nan")


def first_after(times, t):
    return next((x for x in times if x >= t), None)


def max_gap(times):
    """(longest pause between two receives, when it ended)."""
    best = (0.0, None)
    for a, b in zip(times, times[1:]):
        if b - a > best[0]:
            best = (b - a, b)
    return best


def measure(daemon="ctsyncd", n=100_000, streams_first=True):
    """One run with `daemon` on both firewalls; asserts the behaviour
    (stream survives, FTP data connection after the failover, fw-2's
    kernel holds ≥ n entries) and returns the timings (not asserted).
    streams_first: the streams and the FTP session start before the idle
    entries are created (the realistic case), else after them."""
    lab, client, fw1, fw2, server = build()
    d = lab.dir
    try:
        with subtest(f"{daemon} on both firewalls, keepalived; fw-1 primary"):
            for fw in (fw1, fw2):
                fw.succeed("sysctl -qw net.netfilter.nf_conntrack_tcp_loose=0")
                start_daemon(lab, fw, daemon=daemon, options="ExpectationSync { ftp }", hash_size=CTD_HASH_SIZE)
            keepalived(lab, fw1, 150, script=notify_with_times(lab, fw1))
            keepalived(lab, fw2, 100, script=notify_with_times(lab, fw2))
            fw1.wait_until_succeeds(HOLDS_VIPS, timeout=30)
            ftp_server(lab, server)
            fw2.succeed(f"nft -f - <<'EOF'\n{NFT_PROBE}\nEOF")
        stop, port_file, go = f"{d}/stream.stop", f"{d}/pasv", f"{d}/go"

        def streams():
            with subtest("active TCP and UDP streams and FTP PASV through fw-1, replicated"):
                server.spawn(f"{PROBE} sink 192.168.1.2 5001 {d}/sink.json {stop}")
                server.wait_until_succeeds("ss -ltn | grep -q ':5001 '", timeout=10)
                client.spawn(f"{PROBE} send 192.168.1.2 5001 {d}/send.json {stop}")
                server.spawn(f"{PROBE} usink 192.168.1.2 9000 {d}/usink.json {stop}")
                client.spawn(f"{PROBE} usend 192.168.1.2 9000 {d}/usend.json {stop}")
                server.wait_until_succeeds(f"test -s {d}/sink.json.progress", timeout=10)
                server.wait_until_succeeds(f"test -s {d}/usink.json.progress", timeout=10)
                client.spawn(f"{PROBE.split()[0]} {HERE}/ftp_client.py 192.168.1.2 {port_file} {go} 300",
                             log_file=f"{d}/ftp_client.log")
                client.wait_until_succeeds(f"test -s {port_file}", timeout=20)
                port = file_text(port_file)
                log(f"FTP PASV: the server announced port {port}")
                fw2.wait_until_succeeds(f"{ctl_cmd(fw2, '-e expect')} | grep -q 'dport={port} '", timeout=15)
                fw2.wait_until_succeeds(f"{ctl_cmd(fw2, '-e')} | grep -q 'dport=5001 '", timeout=15)
                fw2.wait_until_succeeds(f"{ctl_cmd(fw2, '-e')} | grep -q 'dport=9000 '", timeout=15)

        def idle():
            with subtest(f"{n} idle conntracks in fw-1, replicated to fw-2's external cache"):
                base = external_count(fw2)
                t = time.monotonic()
                made = json.loads(fw1.succeed(f"{PROBE} inject {n}", timeout=600))
                assert made["created"] == n, made
                got, seen, last_change = 0, -1, time.monotonic()
                while got < base + n and time.monotonic() - last_change < WAIT_REPLICATED:
                    time.sleep(0.25)
                    got = external_count(fw2)
                    if got != seen:
                        seen, last_change = got, time.monotonic()
                log(f"created in {made['seconds']:.1f}s; fw-2's external cache holds {got} "
                    f"({time.monotonic() - t:.1f}s after the first)")
                assert got >= base + n, f"fw-2's external cache holds {got}, wanted {base + n}"

        for step in ((streams, idle) if streams_first else (idle, streams)):
            step()
        # Idle means idle for a while: the flows stay untouched for one
        # activity-scan period and some slack (ctsyncd's primary sends the
        # flows that carried packets again every ActivityScan = 10 s;
        # events alone cannot tell a busy stream from an idle flow).
        settle = float(os.environ.get("LAB_GAP_SETTLE", "12"))
        if settle > 0:
            log(f"the idle entries stay idle for {settle:g}s (LAB_GAP_SETTLE)")
            time.sleep(settle)
        with subtest("fw-1 crashes; fw-2 takes over and commits"):
            watch = f"{d}/watch.json"
            fw2.spawn(f"{PROBE} watch {watch} {d}/watch.stop 300")
            fw2.wait_until_succeeds(f"test -e {watch}.ready", timeout=10)
            if os.environ.get("LAB_GAP_STRACE"):
                # Diagnosis only (slows the daemon): fw-2 daemon's syscalls
                # around the commit, -ttt (realtime) in fw2/strace.txt.
                lab.strace = subprocess.Popen(["strace", "-f", "-ttt", "-T", "-e", "trace=accept4,sendto,sendmsg,recvmsg",
                                               "-o", f"{d}/fw2/strace.txt", "-p", daemon_pid(fw2)],
                                              stderr=subprocess.DEVNULL)
            elif os.environ.get("LAB_GAP_PERF"):
                # Diagnosis only: where fw-2's daemon spends the commit.
                lab.strace = subprocess.Popen(["perf", "record", "-F", "4000", "-g", "-o", f"{d}/fw2/perf.data",
                                               "-p", daemon_pid(fw2)], stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL)
            time.sleep(1)
            sent_before = int(file_text(f"{d}/sink.json.progress") or 0)
            udp_before = int(file_text(f"{d}/usink.json.progress") or 0)
            t_fail = time.monotonic()
            # Links first: a dead machine says nothing (killed first,
            # keepalived's VRRP child gets SIGTERM from its parent's death
            # and sends a priority-0 advert on its way out).
            fw1.block()
            fw1.kill_all()
            fw2.wait_until_succeeds(HOLDS_VIPS, timeout=30)
            fw2.wait_until_succeeds(f"grep -q '^[0-9.]* end -C [^ ]* -c ' {d}/fw2/ctl-times.log", timeout=120)
            server.wait_until_succeeds(f"test $(cat {d}/sink.json.progress) -gt {sent_before + 8 * 50}", timeout=60)
            server.wait_until_succeeds(f"test $(cat {d}/usink.json.progress) -gt {udp_before + 50}", timeout=30)
            log(f"stream flows through fw-2, {time.monotonic() - t_fail:.1f}s after the crash")
        with subtest("FTP data connection through fw-2"):
            open(go, "w").close()
            client.wait_until_succeeds(f"test -s {port_file}.done", timeout=30)
            verdict = file_text(f"{port_file}.done")
            assert verdict.startswith("LISTED") and "hello.txt" in verdict, verdict
        with subtest("the stream ends cleanly; fw-2's kernel holds every entry"):
            open(f"{d}/watch.stop", "w").close()
            open(stop, "w").close()
            client.wait_until_succeeds(f"test -s {d}/send.json", timeout=90)
            server.wait_until_succeeds(f"test -s {d}/sink.json", timeout=30)
            server.wait_until_succeeds(f"test -s {d}/usink.json", timeout=10)
            fw2.wait_until_succeeds(f"test -s {watch}", timeout=10)
            sent, got = json.loads(file_text(f"{d}/send.json")), json.loads(file_text(f"{d}/sink.json"))
            assert sent["error"] == "none", sent
            assert got["bytes"] == sent["bytes"], (sent["bytes"], got["bytes"])
            udp = json.loads(file_text(f"{d}/usink.json"))
            in_kernel = int(fw2.succeed("conntrack -C").strip())
            # The idle entries themselves (gap_probe.py inject: sources in
            # 172.16.0.0/16): the total also counts the streams, the FTP
            # session, the sync link and VRRP/IGMP (14 of them), which
            # hid as many idle entries missing.
            idle_in_kernel = int(fw2.succeed("conntrack -L -p udp 2>/dev/null | grep -c 'src=172\\.16\\.' || true").strip())
            assert idle_in_kernel == n, f"fw-2's kernel holds {idle_in_kernel} of the {n} idle conntracks"
            # RSS once the notify script is done (its last command, -B,
            # returned) and a second later: taken while its -R or -B still
            # ran, it was that command's peak, 19 or 43 MB from one run to
            # the next with the same build (results/wave14-6).
            fw2.wait_until_succeeds(f"grep -q '^[0-9.]* end -C [^ ]* -B ' {d}/fw2/ctl-times.log", timeout=120)
            time.sleep(1)
            rss = daemon_rss_kib(fw2)
        return timings(lab, fw2, t_fail, json.loads(file_text(watch)), {"tcp": got["times"], "udp": udp["times"]},
                       daemon, n, in_kernel, rss)
    except BaseException:
        dump_logs(lab, (fw1, fw2))
        raise
    finally:
        if getattr(lab, "strace", None):
            lab.strace.send_signal(2)  # perf writes its file on SIGINT
            lab.strace.wait(timeout=10)
        lab.cleanup()


def dropped(arrivals, forwards, since):
    """Packets that reached fw-2 after `since` and were not forwarded
    (no forward within 5 ms)."""
    fw = iter(forwards)
    nxt = next(fw, None)
    count = 0
    for t in (a for a in arrivals if a >= since):
        while nxt is not None and nxt < t:
            nxt = next(fw, None)
        if nxt is None or nxt - t > 0.005:
            count += 1
    return count


def timings(lab, fw2, t_fail, w, receives, daemon, n, in_kernel, rss):
    nan = float("nan")
    vips = [w["vip"].get(v) for v in ("192.168.0.100", "192.168.1.100")]
    t_vip = max(vips) if None not in vips else nan
    mono = [(t - w["offset"], event, args) for t, event, args in ctl_times(lab, fw2)]

    def at(event, args):
        return next((t for t, e, a in mono if e == event and a.startswith(args) and t >= t_fail), nan)

    def ms(t):
        return 1000 * (t - t_vip) if t is not None else nan

    out = {
        "daemon": daemon, "n": n,
        "takeover_s": t_vip - t_fail,
        "notify_ms": ms(at("notify", "primary")),
        "commit_start_ms": ms(at("start", "-c")),
        "exp_ms": ms(first_after(w["exp_new"], t_fail)),
    }
    for k in ("tcp", "udp"):
        pause, pause_end = max_gap(receives[k])
        out.update({
            f"{k}_entry_ms": ms(first_after(w[f"{k}_ct_new"], t_fail)),
            f"{k}_first_arrival_ms": ms(first_after(w[f"{k}_arrive"], t_vip)),
            f"{k}_first_forward_ms": ms(first_after(w[f"{k}_forward"], t_fail)),
            f"{k}_dropped_at_fw2": dropped(w[f"{k}_arrive"], w[f"{k}_forward"], t_vip),
            f"{k}_server_pause_ms": 1000 * pause,
            f"{k}_pause_end_ms": ms(pause_end),
        })
    out.update({
        "commit_end_s": (at("end", "-c") - t_vip),
        "commit_s": at("end", "-c") - at("start", "-c"),
        "flush_end_s": at("end", "-f") - t_vip,
        "kernel_after_commit": in_kernel,
        "rss_fw2_kib": rss,
    })
    return out


# (label, key, unit scale) of the table both the scenario and the bench print.
ROWS = [
    ("VRRP takeover: crash → both VIPs on fw-2 (s)", "takeover_s"),
    ("takeover → notify script started (ms)", "notify_ms"),
    ("takeover → `-c` started (ms)", "commit_start_ms"),
    ("takeover → FTP expectation in fw-2's kernel (ms)", "exp_ms"),
    ("takeover → TCP stream's entry in fw-2's kernel (ms)", "tcp_entry_ms"),
    ("takeover → TCP stream's first packet reaches fw-2 (ms)", "tcp_first_arrival_ms"),
    ("takeover → first TCP stream packet through fw-2 (ms)", "tcp_first_forward_ms"),
    ("TCP packets fw-2 dropped after takeover (no entry yet)", "tcp_dropped_at_fw2"),
    ("TCP stream pause seen by the server (ms)", "tcp_server_pause_ms"),
    ("takeover → UDP stream's entry in fw-2's kernel (ms)", "udp_entry_ms"),
    ("takeover → first UDP datagram through fw-2 (ms)", "udp_first_forward_ms"),
    ("UDP datagrams fw-2 dropped after takeover (no entry yet)", "udp_dropped_at_fw2"),
    ("UDP stream pause seen by the server (ms)", "udp_server_pause_ms"),
    ("full commit: takeover → `-c` returned (s)", "commit_end_s"),
    ("`-c` duration (s)", "commit_s"),
    ("entries in fw-2's kernel after commit", "kernel_after_commit"),
    ("fw-2 RSS once the notify script is done (-c -f -R -B; KiB)", "rss_fw2_kib"),
]


def median(runs, key):
    xs = [r[key] for r in runs if r[key] == r[key]]
    return statistics.median(xs) if xs else float("nan")


def table(runs, names=("ctsyncd", "conntrackd")):
    """Markdown: one row per metric, medians per daemon, ratio."""
    heads = {"ctsyncd": "ctsyncd", "conntrackd": "conntrackd 1.4.7"}
    present = [d for d in names if any(r["daemon"] == d for r in runs)]
    lines = ["| metric | " + " | ".join(heads[d] for d in present) + (" | ratio |" if len(present) == 2 else " |"),
             "|---|" + "---:|" * (len(present) + (len(present) == 2))]
    for label, key in ROWS:
        med = [median([r for r in runs if r["daemon"] == d], key) for d in present]
        cells = [f"{m:.0f}" if key.endswith(("_ms", "_kib", "dropped_at_fw2")) or key == "kernel_after_commit"
                 else f"{m:.2f}" for m in med]
        if len(med) == 2:
            cells.append(f"{med[0] / med[1]:.2f}" if med[1] else "–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def target_met(runs, daemon="ctsyncd"):
    """Issue 17: the active stream's pause after takeover ≤ VRRP takeover
    + 50 ms: the stream that keeps sending (UDP) passes fw-2 ≤ 50 ms after
    the takeover (median). Returns (value ms, met)."""
    v = median([r for r in runs if r["daemon"] == daemon], "udp_first_forward_ms")
    return v, v <= 50
