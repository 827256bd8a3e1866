"""The FTP passive-mode failover, shared by the headline scenario, its
negative control and its mixed-daemon variants (conntrackd on one
firewall, ctsyncd on the other)."""

import os
import time

from driver import log, subtest
from topology import (CTD_HASH_SIZE, HOLDS_VIPS, build, ctl, ctl_cmd, dump_logs, file_text, ftp_server, keepalived,
                      start_daemon)


def ftp_failover(expectation_sync=True, failure="block", daemons=("ctsyncd", "ctsyncd"), transport="UDP"):
    """Runs the scenario with daemons[0] on fw-1 and daemons[1] on fw-2
    (ctsyncd or conntrackd) over a `transport` (UDP or TCP) sync link;
    returns the client's verdict (`LISTED …` or `FAILED …`) and the lab
    for further checks."""
    lab, client, fw1, fw2, server = build(events_log=True)
    machines = (fw1, fw2)
    try:
        options = "ExpectationSync { ftp }" if expectation_sync else "ExpectationSync Off"
        size = {"hash_size": CTD_HASH_SIZE} if "conntrackd" in daemons else {}
        size["transport"] = transport
        with subtest(f"{daemons[0]} on fw-1, {daemons[1]} on fw-2 ({transport}) and keepalived start; fw-1 becomes primary"):
            start_daemon(lab, fw1, daemon=daemons[0], options=options, **size)
            start_daemon(lab, fw2, daemon=daemons[1], options=options, **size)
            keepalived(lab, fw1, 150)
            keepalived(lab, fw2, 100)
            fw1.wait_until_succeeds(HOLDS_VIPS, timeout=30)
            fw2.fail(HOLDS_VIPS)
            ftp_server(lab, server)
        port_file, go = f"{lab.dir}/pasv", f"{lab.dir}/go"
        with subtest("FTP control connection and PASV through fw-1"):
            client.spawn(f"/usr/bin/python3 {os.path.dirname(__file__)}/ftp_client.py 192.168.1.2 {port_file} {go} 120",
                         log_file=f"{lab.dir}/ftp_client.log")
            client.wait_until_succeeds(f"test -s {port_file}", timeout=20)
            port = file_text(port_file)
            log(f"server announced passive port {port}")
            # The helper created the expectation in fw-1's kernel.
            fw1.wait_until_succeeds(f"conntrack -L expect 2>/dev/null | grep -q 'dport={port} '", timeout=10)
            if expectation_sync:
                fw1.wait_until_succeeds(f"{ctl_cmd(fw1, '-i expect')} | grep -q 'dport={port} '", timeout=10)
                fw2.wait_until_succeeds(f"{ctl_cmd(fw2, '-e expect')} | grep -q 'dport={port} '", timeout=10)
                fw2.succeed(f"{ctl_cmd(fw2, '-e')} | grep -q 'dport=21 .*helper=ftp'")
            else:
                assert ctl(fw2, "-e expect").strip() == "", "expectation replicated although disabled"
        with subtest(f"fw-1 fails ({failure}); fw-2 takes over and commits"):
            t0 = time.monotonic()
            if failure == "block":
                fw1.block()
            else:
                fw1.crash()
            fw2.wait_until_succeeds(HOLDS_VIPS, timeout=30)
            log(f"VIPs moved to fw-2 after {time.monotonic() - t0:.2f}s")
            fw2.wait_until_succeeds(f"grep -q 'commit has taken' {lab.dir}/fw2/ctsyncd.log", timeout=30)
            log(f"fw-2 committed after {time.monotonic() - t0:.2f}s")
            kernel_exp = fw2.succeed("conntrack -L expect 2>/dev/null")
            if expectation_sync:
                assert f"dport={port} " in kernel_exp, kernel_exp
        with subtest("the data connection to the announced port"):
            t1 = time.monotonic()
            open(go, "w").close()
            client.wait_until_succeeds(f"test -s {port_file}.done", timeout=30)
            verdict = file_text(f"{port_file}.done")
            log(f"client: {verdict} ({time.monotonic() - t1:.2f}s after the go)")
        return verdict, lab, fw2
    except BaseException:
        dump_logs(lab, machines)
        raise


def ftp_passive_failover(daemons=("ctsyncd", "ctsyncd")):
    """The headline scenario's assertions: fw-1 fails in the middle of an
    FTP passive-mode session; the data connection to the announced port
    still works through fw-2, which committed the connection and the
    expectation. The sync link is UDP, or LAB_TRANSPORT (TCP)."""
    transport = os.environ.get("LAB_TRANSPORT", "UDP")
    verdict, lab, fw2 = ftp_failover(expectation_sync=True, failure="block", daemons=daemons, transport=transport)
    with subtest(f"LIST returned the listing through fw-2 ({daemons[1]})"):
        if not verdict.startswith("LISTED"):
            dump_logs(lab, [fw2])
        assert verdict == "LISTED failover.txt hello.txt" or verdict.startswith("LISTED") and "hello.txt" in verdict, verdict
        log = file_text(f"{lab.dir}/fw2/ctsyncd.log")
        for line in ("committing all external caches", "Committed 1 new expectations", "commit has taken"):
            assert line in log, line
        assert "Committed" in log and "new entries" in log
    return lab, fw2


def ftp_manual_failover(name, **daemon):
    """The FTP failover without keepalived: VIPs moved by hand and the
    notify script's `primary` step run on fw-2. Returns the verdict."""
    from topology import ROOT, vips

    lab, client, fw1, fw2, server = build(events_log=True)
    try:
        with subtest(f"{name}: PASV through fw-1"):
            vips(fw1, True)
            start_daemon(lab, fw1, **daemon)
            start_daemon(lab, fw2, **daemon)
            ftp_server(lab, server)
            port_file, go = f"{lab.dir}/pasv", f"{lab.dir}/go"
            client.spawn(f"/usr/bin/python3 {os.path.dirname(__file__)}/ftp_client.py 192.168.1.2 {port_file} {go} 120")
            client.wait_until_succeeds(f"test -s {port_file}", timeout=20)
            port = file_text(port_file)
            fw1.wait_until_succeeds(f"ctsyncd -C {fw1.conf} -i expect | grep -q 'dport={port} '", timeout=10)
        with subtest(f"{name}: fw-2 has the expectation before the failure"):
            if "DisableExternalCache On" in daemon.get("mode_body", ""):
                # Injected straight into fw-2's kernel; nothing is cached.
                fw2.wait_until_succeeds(f"conntrack -L expect 2>/dev/null | grep -q 'dport={port} '", timeout=10)
                assert ctl(fw2, "-e expect").strip() == ""
            else:
                fw2.wait_until_succeeds(f"ctsyncd -C {fw2.conf} -e expect | grep -q 'dport={port} '", timeout=10)
        with subtest(f"{name}: failover by hand"):
            fw1.block()
            vips(fw1, False)
            vips(fw2, True)
            fw2.succeed(f"CTSYNCD_BIN=$(command -v ctsyncd) CTSYNCD_CONFIG={fw2.conf} LOGGER=echo "
                        f"{ROOT}/etc/keepalived/primary-backup.sh primary")
            fw2.succeed(f"conntrack -L expect 2>/dev/null | grep -q 'dport={port} '")
            open(go, "w").close()
            client.wait_until_succeeds(f"test -s {port_file}.done", timeout=30)
            verdict = file_text(f"{port_file}.done")
            log(f"{name}: {verdict}")
            return verdict, lab, fw1, fw2
    except BaseException:
        dump_logs(lab, (fw1, fw2))
        raise


def protocol_switch_logged(lab, fw, protocol="conntrackd", since=0):
    """ctsyncd on fw logged (after the log's first `since` lines), at
    notice level, that its peer on the sync link speaks `protocol`
    (issue 12: one line per switch naming the link and the protocol).
    Waits for it (bounded): a switch back needs the peer's first words."""
    path = f"{lab.dir}/{fw.name}/ctsyncd.log"
    with subtest(f"{fw.name}'s ctsyncd logged the switch to {protocol}'s protocol"):
        def lines():
            return [line for line in file_text(path).splitlines()[since:]
                    if "[notice]" in line and "sync0" in line and f"speaks {protocol}" in line]
        deadline = time.monotonic() + 20
        while not lines() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert lines(), "\n".join(file_text(path).splitlines()[since:])[-2000:]
        log(f"{fw.name}: {lines()[0]}")
