"""Failback waits for the resync, not for a guessed delay: keepalived
tracks `ctsyncd -s ready` (etc/keepalived/keepalived.conf's check, weight
-60) and has no preempt_delay.

fw-1 carries a long TCP stream and LAB_FAILBACK_FLOWS idle conntracks
(20 000 by default), replicated to fw-2. fw-1 crashes and comes back with
an empty kernel table (a reboot); fw-2 has taken over. fw-2's daemon is
stopped for PAUSE seconds as fw-1 comes back (a primary slow to answer:
a large table on a busy small core), so that its answer to fw-1's resync
request comes later than keepalived's wait before it preempts (three
adverts and its skew, about 3.6 s). fw-1 must take the VIPs back only once its
daemon says the resync is complete, and commit every entry: the stream
goes on through fw-1 without a reset.

LAB_FAILBACK_GATED=0 runs the control: the same without the check. fw-1
then takes over before the resync is complete and commits part of the
table (what the scenario asserts in that case)."""

import json
import os
import signal
import threading
import time

from driver import log, subtest
from topology import (HOLDS_VIPS, build, cached, ctl_cmd, daemon_log, dump_logs, file_text, keepalived,
                      start_daemon, vips)

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = f"/usr/bin/python3 {HERE}/gap_probe.py"
# The stream's sender, the sink, and keepalived wait on these.
WAIT = 60
# How long fw-2's daemon is stopped as fw-1 comes back.
PAUSE = 6


def wait_cached(fw, which, want, timeout=60):
    deadline = time.monotonic() + timeout
    while (got := cached(fw, which)) < want:
        assert time.monotonic() < deadline, f"{fw.name}'s {which} cache holds {got}, wanted {want}"
        time.sleep(0.25)


def daemon_lines(lab, fw, line_from):
    """The lines fw's daemon logged after line `line_from` of its log."""
    return daemon_log(lab, fw).splitlines()[line_from:]


def committed_since(lab, fw, line_from):
    """The counts of `Committed N new entries` lines the daemon logged
    after line `line_from` of its log."""
    lines = daemon_lines(lab, fw, line_from)
    return [int(x.split("Committed ")[1].split()[0]) for x in lines if "new entries" in x and "Committed " in x]


def pause(pid, seconds):
    """Stops `pid` for `seconds` (a thread continues it; the caller must
    continue it too if it stops early)."""
    os.kill(pid, signal.SIGSTOP)
    timer = threading.Timer(seconds, os.kill, (pid, signal.SIGCONT))
    timer.daemon = True
    timer.start()
    return timer


def main():
    n = int(os.environ.get("LAB_FAILBACK_FLOWS", "20000"))
    gated = os.environ.get("LAB_FAILBACK_GATED", "1") != "0"
    lab, client, fw1, fw2, server = build()
    d = lab.dir
    stop = f"{d}/stream.stop"
    try:
        with subtest(f"fw-1 primary (readiness check: {gated}, no preempt_delay); a stream and {n} idle flows"):
            for fw in (fw1, fw2):
                fw.succeed("sysctl -qw net.netfilter.nf_conntrack_tcp_loose=0")
                start_daemon(lab, fw)
            # fw-2 without the check: its daemon is about to be stopped,
            # and a check that times out lowers a master's priority, which
            # would hand fw-1 the VIPs whatever fw-1 says.
            keepalived(lab, fw1, 150, ready=gated, preempt_delay=0)
            keepalived(lab, fw2, 100, preempt_delay=0)
            fw1.wait_until_succeeds(HOLDS_VIPS, timeout=30)
            server.spawn(f"{PROBE} sink 192.168.1.2 5001 {d}/sink.json {stop}")
            server.wait_until_succeeds("ss -ltn | grep -q ':5001 '", timeout=10)
            client.spawn(f"{PROBE} send 192.168.1.2 5001 {d}/send.json {stop}")
            server.wait_until_succeeds(f"test -s {d}/sink.json.progress", timeout=10)
            made = json.loads(fw1.succeed(f"{PROBE} inject {n}", timeout=300))
            assert made["created"] == n, made
            wait_cached(fw2, "external", n + 1)
        with subtest("fw-1 crashes; fw-2 takes over; the stream goes on"):
            fw1.crash()
            fw2.wait_until_succeeds(HOLDS_VIPS, timeout=30)
            fw2.wait_until_succeeds(f"grep -q 'Committed' {d}/fw2/ctsyncd.log", timeout=30)
            before = int(file_text(f"{d}/sink.json.progress") or 0)
            server.wait_until_succeeds(f"test $(cat {d}/sink.json.progress) -gt {before + 400}", timeout=30)
            # fw-2's notify script ends with -B: its internal cache holds
            # the table again (its kernel's, after the commit).
            wait_cached(fw2, "internal", n + 1)
        with subtest("fw-1 comes back with an empty table; fw-2's answer is slow"):
            # A reboot: no conntracks, no addresses keepalived added.
            fw1.succeed("conntrack -F 2>/dev/null; true")
            vips(fw1, False)
            fw2_pid = int(file_text(f"{d}/fw2/ctsyncd.lock"))
            resume = pause(fw2_pid, PAUSE)
            log_from = len(daemon_log(lab, fw1).splitlines())
            fw1.unblock()
            t_back = time.monotonic()
            keepalived(lab, fw1, 150, ready=gated, preempt_delay=0)
            t_ready = t_vips = t_all = None
            deadline = t_back + WAIT
            while time.monotonic() < deadline and t_vips is None:
                if t_all is None and cached(fw1, "external") >= n + 1:
                    t_all = time.monotonic()
                if t_ready is None and fw1.execute(ctl_cmd(fw1, "-s ready"))[0] == 0 \
                        and any("resync complete" in x for x in daemon_lines(lab, fw1, log_from)):
                    t_ready = time.monotonic()
                if fw1.execute(HOLDS_VIPS)[0] == 0:
                    t_vips = time.monotonic()
                time.sleep(0.1)
            assert t_vips is not None, "fw-1 never took the VIPs back"
            log(f"fw-1's external cache held every entry {(t_all or t_vips) - t_back:.1f}s after its return"
                f"{'' if t_all else ' (not before the VIPs moved)'}")
            log(f"fw-1 took the VIPs back {t_vips - t_back:.1f}s after its return; "
                f"its daemon said ready after {(t_ready or t_vips) - t_back:.1f}s"
                f"{'' if t_ready else ' (not before the VIPs moved)'}")
            fw1.wait_until_succeeds(f"tail -n +{log_from + 1} {d}/fw1/ctsyncd.log | grep -q 'Committed .* new entries'",
                                    timeout=30)
            for line in file_text(f"{d}/fw1/keepalived.log").splitlines():
                if "effective priority" in line:
                    log(f"fw-1's keepalived: {line}")
            for fw in (fw1, fw2):
                sync = json.loads(fw.succeed(ctl_cmd(fw, "-s --json")))["sync"]
                log(f"{fw.name}: " + ", ".join(f"{k} {sync[k]}" for k in (
                    "retransmitted", "lost", "probes_sent", "tail_resent", "synced_sent", "resyncs_complete",
                    "msgs_sent", "datagrams_sent")))
            committed = committed_since(lab, fw1, log_from)
            log(f"fw-1 committed {committed} entries; fw-2's internal cache held {n + 1}")
            if gated:
                assert t_ready is not None and t_ready <= t_vips, "the VIPs moved before the resync was complete"
                assert t_ready - t_back > PAUSE, f"ready {t_ready - t_back:.1f}s after fw-1's return: before fw-2 answered"
                assert committed[0] >= n + 1, f"fw-1 committed {committed[0]} of {n + 1}"
            else:
                assert committed[0] < n + 1, f"control: fw-1 committed all {committed[0]}: fw-2 answered in time"
        if gated:
            with subtest("the stream goes on through fw-1 and ends cleanly"):
                before = int(file_text(f"{d}/sink.json.progress") or 0)
                server.wait_until_succeeds(f"test $(cat {d}/sink.json.progress) -gt {before + 400}", timeout=30)
                open(stop, "w").close()
                client.wait_until_succeeds(f"test -s {d}/send.json", timeout=90)
                server.wait_until_succeeds(f"test -s {d}/sink.json", timeout=30)
                sent, got = json.loads(file_text(f"{d}/send.json")), json.loads(file_text(f"{d}/sink.json"))
                assert sent["error"] == "none", sent
                assert got["bytes"] == sent["bytes"], (sent["bytes"], got["bytes"])
    except BaseException:
        if "resume" in locals():
            resume.cancel()
            os.kill(fw2_pid, signal.SIGCONT)
        dump_logs(lab, (fw1, fw2))
        raise
    finally:
        lab.cleanup()


if __name__ == "__main__":
    main()
