"""A long-lived TCP stream, a UDP stream (both SNATed) and an IPv6 TCP
stream keep flowing across the failover to fw-2 (no reset, bounded pause,
same NAT binding) and across the failback to fw-1, which first resyncs
from fw-2."""

import os
import time

from daemons import log_lines
from driver import log, subtest
from topology import HOLDS_VIPS, build, dump_logs, file_text, keepalived, start_daemon

STREAM = f"/usr/bin/python3 {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}/stream.py"
DURATION = 40


def stats(path):
    return dict(kv.split("=", 1) for kv in file_text(path).split())


def main():
    lab, client, fw1, fw2, server = build(events_log=True)
    try:
        start_daemon(lab, fw1)
        start_daemon(lab, fw2)
        keepalived(lab, fw1, 150)
        keepalived(lab, fw2, 100)
        fw1.wait_until_succeeds(HOLDS_VIPS, timeout=30)
        d = lab.dir
        server.spawn(f"{STREAM} tcp-sink 192.168.1.2 5001 {d}/tcp.sink")
        server.spawn(f"{STREAM} udp-sink 192.168.1.2 5002 {d}/udp.sink")
        server.spawn(f"{STREAM} tcp-sink fd00:1::2 5001 {d}/tcp6.sink")
        time.sleep(0.5)
        client.spawn(f"{STREAM} tcp-send 192.168.1.2 5001 {DURATION} {d}/tcp.send")
        client.spawn(f"{STREAM} udp-send 192.168.1.2 5002 {DURATION} {d}/udp.send")
        client.spawn(f"{STREAM} tcp-send fd00:1::2 5001 {DURATION} {d}/tcp6.send")
        with subtest("streams flow through fw-1 and are replicated"):
            for sink in ("tcp", "udp", "tcp6"):
                server.wait_until_succeeds(f"test -s {d}/{sink}.sink", timeout=15)
            fw2.wait_until_succeeds(f"ctsyncd -C {fw2.conf} -e | grep -q 'dport=5001 '", timeout=10)
            fw2.wait_until_succeeds(f"ctsyncd -C {fw2.conf} -e | grep -q 'dport=5002 '", timeout=10)
            fw2.wait_until_succeeds(f"ctsyncd -C {fw2.conf} -e | grep -q 'dst=fd00:1::2 .*dport=5001 '", timeout=10)
            before = {s: stats(f"{d}/{s}.sink")["peers"] for s in ("tcp", "udp")}
            log(f"server sees {before}")
        with subtest("failover: fw-1 blocked, fw-2 takes over"):
            time.sleep(3)
            t0 = time.monotonic()
            fw1.block()
            fw2.wait_until_succeeds(HOLDS_VIPS, timeout=30)
            log(f"VIPs on fw-2 after {time.monotonic() - t0:.2f}s")
            counts = {s: int(stats(f"{d}/{s}.sink")["received"]) for s in ("tcp", "udp", "tcp6")}
            for s in counts:
                server.wait_until_succeeds(
                    f"test $(sed 's/.*received=\\([0-9]*\\).*/\\1/' {d}/{s}.sink) -gt {counts[s] + 20}", timeout=20)
            log(f"all streams flow through fw-2 {time.monotonic() - t0:.2f}s after the failure")
        with subtest("failback: fw-1 returns, resyncs and becomes primary again"):
            time.sleep(3)
            t0 = time.monotonic()
            # fw-2's log from here on: fw-1's resync request must reach it
            # (both logs say "resync requested" from the start already,
            # each node's first backup step sent one).
            since = log_lines(lab, fw2)
            fw1.unblock()
            fw1.wait_until_succeeds(HOLDS_VIPS, timeout=40)
            log(f"VIPs back on fw-1 after {time.monotonic() - t0:.2f}s")
            fw2.wait_until_succeeds(f"tail -n +{since + 1} {d}/fw2/ctsyncd.log | grep -q 'resync requested by other node'",
                                    timeout=10)
            counts = {s: int(stats(f"{d}/{s}.sink")["received"]) for s in ("tcp", "udp", "tcp6")}
            for s in counts:
                server.wait_until_succeeds(
                    f"test $(sed 's/.*received=\\([0-9]*\\).*/\\1/' {d}/{s}.sink) -gt {counts[s] + 20}", timeout=20)
            log(f"all streams flow through fw-1 again {time.monotonic() - t0:.2f}s after its return")
        with subtest("no reset, bounded pause, same NAT binding"):
            for s in ("tcp", "udp", "tcp6"):
                client.wait_until_succeeds(f"test -s {d}/{s}.send", timeout=DURATION + 40)
            for s in ("tcp", "tcp6"):
                sent, got = stats(f"{d}/{s}.send"), stats(f"{d}/{s}.sink")
                assert sent["error"] == "none", (s, sent)
                assert int(got["received"]) == int(sent["sent"]), (s, sent, got)
                assert float(got["max_gap"]) < 10, (s, got)
                log(f"{s}: {sent['sent']} lines, all received, longest pause {got['max_gap']}s")
            u = stats(f"{d}/udp.sink")
            assert u["peers"] == before["udp"], ("NAT binding changed", before["udp"], u["peers"])
            assert float(u["max_gap"]) < 10, u
            assert int(u["received"]) > int(stats(f"{d}/udp.send")["sent"]) * 0.8, u
            log(f"udp: {u['received']} of {stats(f'{d}/udp.send')['sent']} datagrams, longest pause {u['max_gap']}s, source {u['peers']}")
    except BaseException:
        dump_logs(lab, (fw1, fw2))
        raise


if __name__ == "__main__":
    main()
