"""The rolling upgrade from conntrackd (issue 12): conntrackd 1.4.7 on both
firewalls carries an FTP control connection and a long SNATed TCP stream;
fw-2's daemon is replaced by ctsyncd, which learns the existing state
through a resync; a planned failover moves the VIPs to fw-2; fw-1's daemon
is replaced by ctsyncd; fw-1 takes the VIPs back. The stream and the FTP
session survive every step, checked after each:

  0. conntrackd on both; PASV 1 through fw-1 (its expectation exists
     before either daemon is replaced).
  1. fw-2: conntrackd → ctsyncd. Its external cache holds the control
     connection, the stream and expectation 1, learnt through the resync;
     it logged that its peer speaks conntrackd's protocol.
  2. keepalived stops on fw-1: fw-2 takes over and commits. LIST 1 opens
     the data connection of expectation 1 through fw-2; PASV 2 there.
  3. fw-1: conntrackd → ctsyncd (while backup). It learns the control
     connection, the stream and expectation 2 from fw-2, which logged that
     its peer speaks ctsyncd's protocol again.
  4. keepalived starts on fw-1 again: it resyncs, preempts and commits.
     LIST 2 through fw-1; PASV 3 + LIST 3 through fw-1.
  Finally: every line of the stream arrived, no reset, no long pause, one
  NAT binding.

LAB_UPGRADE_TO=conntrackd replaces each conntrackd by a fresh conntrackd
instead: the same steps with conntrackd only, the harness's self-check.
LAB_TRANSPORT=TCP runs them over a TCP sync link (UDP otherwise).
"""

import os
import time

from daemons import log_lines, log_since, swap
from driver import log, subtest
from failover import protocol_switch_logged
from topology import (CTD_HASH_SIZE, HOLDS_VIPS, build, ctl_cmd, dump_logs, file_text, ftp_server, keepalived,
                      start_daemon)

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STREAM = f"/usr/bin/python3 {HERE}/stream.py"
FTP = f"/usr/bin/python3 {HERE}/ftp_client.py"
# Upper bound for the whole scenario; the sender stops earlier on request.
DURATION = 400


def stats(path):
    return dict(kv.split("=", 1) for kv in file_text(path).split())


def stream_flows(server, d, through):
    """The stream's sink receives 20 more lines (1 s of traffic)."""
    t0 = time.monotonic()
    count = int(stats(f"{d}/tcp.sink")["received"])
    server.wait_until_succeeds(
        f"test $(sed 's/.*received=\\([0-9]*\\).*/\\1/' {d}/tcp.sink) -gt {count + 20}", timeout=20)
    log(f"stream flows through {through} ({count} lines so far; +20 in {time.monotonic() - t0:.1f}s)")


def replicated(fw, port):
    """fw's daemon holds, from its peer, the FTP control connection with
    its helper, the stream and the expectation for `port`."""
    fw.wait_until_succeeds(f"{ctl_cmd(fw, '-e')} | grep -q 'dport=21 .*helper=ftp'", timeout=20)
    fw.wait_until_succeeds(f"{ctl_cmd(fw, '-e')} | grep -q 'dport=5001 '", timeout=20)
    fw.wait_until_succeeds(f"{ctl_cmd(fw, '-e expect')} | grep -q 'dport={port} '", timeout=20)


def listed(client, d, k):
    """Lets round k's data connection go; asserts it listed the files."""
    go = f"{d}/go" + ("" if k == 1 else str(k))
    done = f"{d}/pasv.done" + ("" if k == 1 else str(k))
    open(go, "w").close()
    client.wait_until_succeeds(f"test -s {done}", timeout=30)
    verdict = file_text(done)
    assert verdict.startswith("LISTED") and "hello.txt" in verdict, (k, verdict)
    log(f"LIST {k}: {verdict}")


def announced(client, d, k):
    path = f"{d}/pasv" + ("" if k == 1 else str(k))
    client.wait_until_succeeds(f"test -s {path}", timeout=20)
    port = file_text(path)
    log(f"PASV {k}: port {port}")
    return port


def committed(lab, fw, since):
    """fw's daemon (its log after line `since`) committed connections and
    one expectation."""
    fw.wait_until_succeeds(f"tail -n +{since + 1} {lab.dir}/{fw.name}/ctsyncd.log | grep -q 'commit has taken'",
                           timeout=30)
    fw.wait_until_succeeds(f"tail -n +{since + 1} {lab.dir}/{fw.name}/ctsyncd.log"
                           " | grep -Eq 'Committed [1-9][0-9]* new expectations'", timeout=30)
    text = log_since(lab, fw, since)
    assert "committing all external caches" in text, text[-2000:]
    assert "new entries" in text, text[-2000:]


def main():
    target = os.environ.get("LAB_UPGRADE_TO", "ctsyncd")
    transport = os.environ.get("LAB_TRANSPORT", "UDP")
    lab, client, fw1, fw2, server = build(events_log=True)
    d = lab.dir
    try:
        with subtest("step 0: conntrackd on both; FTP control connection, PASV 1 and the stream through fw-1"):
            for fw in (fw1, fw2):
                start_daemon(lab, fw, daemon="conntrackd", options="ExpectationSync { ftp }", hash_size=CTD_HASH_SIZE,
                             transport=transport)
            keepalived(lab, fw1, 150)
            keepalived(lab, fw2, 100)
            fw1.wait_until_succeeds(HOLDS_VIPS, timeout=30)
            fw2.fail(HOLDS_VIPS)
            ftp_server(lab, server)
            server.spawn(f"{STREAM} tcp-sink 192.168.1.2 5001 {d}/tcp.sink")
            time.sleep(0.5)
            client.spawn(f"{STREAM} tcp-send 192.168.1.2 5001 {DURATION} {d}/tcp.send {d}/stop",
                         log_file=f"{d}/stream.log")
            client.spawn(f"{FTP} 192.168.1.2 {d}/pasv {d}/go {DURATION} 3 early", log_file=f"{d}/ftp_client.log")
            port1 = announced(client, d, 1)
            server.wait_until_succeeds(f"test -s {d}/tcp.sink", timeout=15)
            before = stats(f"{d}/tcp.sink")["peers"]
            log(f"server sees the stream from {before}")
            replicated(fw2, port1)
            stream_flows(server, d, "fw-1")

        with subtest(f"step 1: fw-2's conntrackd replaced by {target}, which learns the state through a resync"):
            since2 = swap(lab, fw2, target)
            replicated(fw2, port1)
            if target == "ctsyncd":
                protocol_switch_logged(lab, fw2, "conntrackd", since2)
            stream_flows(server, d, "fw-1")

        with subtest(f"step 2: keepalived stops on fw-1; fw-2 ({target}) takes over and commits"):
            t0 = time.monotonic()
            fw1.keepalived.terminate()
            fw1.keepalived.wait(timeout=20)
            fw2.wait_until_succeeds(HOLDS_VIPS, timeout=30)
            fw1.fail(HOLDS_VIPS)
            log(f"VIPs on fw-2 after {time.monotonic() - t0:.2f}s")
            committed(lab, fw2, since2)
            fw2.succeed(f"conntrack -L expect 2>/dev/null | grep -q 'dport={port1} '")
            listed(client, d, 1)
            port2 = announced(client, d, 2)
            stream_flows(server, d, "fw-2")

        with subtest(f"step 3: fw-1's conntrackd replaced by {target}; it learns the state from fw-2"):
            fw2_lines = log_lines(lab, fw2)
            since1 = swap(lab, fw1, target)
            replicated(fw1, port2)
            if target == "ctsyncd":
                protocol_switch_logged(lab, fw2, "ctsyncd", fw2_lines)
            stream_flows(server, d, "fw-2")

        with subtest(f"step 4: keepalived starts on fw-1 again; fw-1 ({target}) takes the VIPs back"):
            t0 = time.monotonic()
            keepalived(lab, fw1, 150)
            fw1.wait_until_succeeds(HOLDS_VIPS, timeout=40)
            fw2.wait_until_fails(HOLDS_VIPS, timeout=10)
            log(f"VIPs back on fw-1 after {time.monotonic() - t0:.2f}s")
            committed(lab, fw1, since1)
            fw1.succeed(f"conntrack -L expect 2>/dev/null | grep -q 'dport={port2} '")
            listed(client, d, 2)
            announced(client, d, 3)
            listed(client, d, 3)
            stream_flows(server, d, "fw-1")

        with subtest("the stream: every line arrived, no reset, bounded pause, one NAT binding"):
            open(f"{d}/stop", "w").close()
            client.wait_until_succeeds(f"test -s {d}/tcp.send", timeout=60)
            sent, got = stats(f"{d}/tcp.send"), stats(f"{d}/tcp.sink")
            assert sent["error"] == "none", sent
            assert int(got["received"]) == int(sent["sent"]), (sent, got)
            assert float(got["max_gap"]) < 10, got
            assert got["peers"] == before, ("NAT binding changed", before, got["peers"])
            log(f"stream: {sent['sent']} lines, all received, longest pause {got['max_gap']}s, from {got['peers']}")
    except BaseException:
        dump_logs(lab, (fw1, fw2))
        raise


if __name__ == "__main__":
    main()
