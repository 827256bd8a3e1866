"""fw-1 crashes (daemon and keepalived killed, links down) in the middle of
an FTP passive session: the data connection works through fw-2. fw-1 then
comes back with a fresh daemon (new session: the HELLO path), resyncs from
fw-2 (notify backup: -n), takes over again, and the same control
connection carries a second PASV + LIST through fw-1.

The sync link is TCP here (UDP everywhere else): fw-2 must notice that
its connection to fw-1 died with fw-1's daemon and reconnect to the new
one, or fw-1's resync request is never answered."""

import os
import time

from driver import log, subtest
from topology import HOLDS_VIPS, build, dump_logs, file_text, ftp_server, keepalived, start_daemon

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    lab, client, fw1, fw2, server = build()
    try:
        with subtest("fw-1 primary, FTP control connection and PASV through it"):
            start_daemon(lab, fw1, transport="TCP")
            start_daemon(lab, fw2, transport="TCP")
            keepalived(lab, fw1, 150)
            keepalived(lab, fw2, 100)
            fw1.wait_until_succeeds(HOLDS_VIPS, timeout=30)
            ftp_server(lab, server)
            port_file, go = f"{lab.dir}/pasv", f"{lab.dir}/go"
            client.spawn(f"/usr/bin/python3 {HERE}/ftp_client.py 192.168.1.2 {port_file} {go} 150 2",
                         log_file=f"{lab.dir}/ftp_client.log")
            client.wait_until_succeeds(f"test -s {port_file}", timeout=20)
            port = file_text(port_file)
            fw2.wait_until_succeeds(f"ctsyncd -C {fw2.conf} -e expect | grep -q 'dport={port} '", timeout=10)
        with subtest("fw-1 crashes; fw-2 takes over; the data connection works"):
            t0 = time.monotonic()
            fw1.crash()
            fw2.wait_until_succeeds(HOLDS_VIPS, timeout=30)
            log(f"VIPs on fw-2 {time.monotonic() - t0:.2f}s after the crash")
            fw2.wait_until_succeeds(f"grep -q 'Committed 1 new expectations' {lab.dir}/fw2/ctsyncd.log", timeout=20)
            open(go, "w").close()
            client.wait_until_succeeds(f"test -s {port_file}.done", timeout=30)
            verdict = file_text(f"{port_file}.done")
            assert verdict.startswith("LISTED") and "hello.txt" in verdict, verdict
            log(f"through fw-2: {verdict}")
        with subtest("fw-1 restarts, resyncs from fw-2 and takes over again"):
            t0 = time.monotonic()
            old_lines = len(file_text(f"{lab.dir}/fw1/ctsyncd.log").splitlines())
            fw2_lines = len(file_text(f"{lab.dir}/fw2/ctsyncd.log").splitlines())
            fw1.unblock()
            # The crash left a stale lock: the notify script's backup step
            # removes it and starts the daemon, as conntrackd's does.
            keepalived(lab, fw1, 150)
            fw1.wait_until_succeeds(f"ctsyncd -C {fw1.conf} -s >/dev/null", timeout=20)
            fw1.wait_until_succeeds(HOLDS_VIPS, timeout=40)
            log(f"VIPs back on fw-1 {time.monotonic() - t0:.2f}s after its return")
            notify = file_text(f"{lab.dir}/fw1/notify.log")
            assert "was not cleanly stopped" in notify, notify
            # The new daemon (its lines follow the old one's in the same
            # log) committed at least the FTP control connection, which
            # came back from fw-2 over the new TCP connection.
            fw1.wait_until_succeeds(
                f"tail -n +{old_lines + 1} {lab.dir}/fw1/ctsyncd.log | grep -Eq 'Committed [1-9][0-9]* new entries'",
                timeout=20)
            # The new daemon's request reached fw-2 (fw-1's log said
            # "resync requested" from its first backup step on).
            fw2.wait_until_succeeds(f"tail -n +{fw2_lines + 1} {lab.dir}/fw2/ctsyncd.log"
                                    " | grep -q 'resync requested by other node'", timeout=10)
        with subtest("the same control connection: PASV + LIST through fw-1"):
            open(f"{go}2", "w").close()
            client.wait_until_succeeds(f"test -s {port_file}.done2", timeout=30)
            verdict = file_text(f"{port_file}.done2")
            assert verdict.startswith("LISTED") and "hello.txt" in verdict, verdict
            log(f"through fw-1 again: {verdict}")
    except BaseException:
        dump_logs(lab, (fw1, fw2))
        raise


if __name__ == "__main__":
    main()
