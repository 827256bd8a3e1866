"""FTP server behind DNAT, DisableExternalCache on both firewalls, failover
in the middle of a passive-mode session.

The client reaches the server through the LAN0 VIP (192.168.0.100:21,
DNATed to 192.168.1.2:21). The FTP NAT helper rewrites the server's PASV
reply to the VIP, which changes its length: the control connection gets a
sequence adjustment, and the kernel reports it in an update of the control
connection *after* the expectation the same reply created. With
DisableExternalCache the backup applies every change straight to its
kernel: an update applied as delete + re-create drops the master's
expectations with it, and the data connection fails after the failover.
The update must change the entry in place (expectation kept, sequence
adjustment applied), so LIST works through fw-2.
"""

import os
import time

from driver import log, subtest
from topology import ROOT, build, ctsyncd, dump_logs, file_text, ftp_server, start_daemon, vips

VIP = "192.168.0.100"

# The server is published on the LAN0 VIP; the FTP NAT helper follows the
# DNAT into the data connection (the expectation's NAT part).
DNAT = f"""
add chain inet ctsyncd_fw publish {{ type nat hook prerouting priority -100; }}
add rule inet ctsyncd_fw publish iifname "eth0" ip daddr {VIP} tcp dport 21 dnat ip to 192.168.1.2
"""


def publish_ftp(fw):
    fw.succeed(f"nft -f - <<'EOF'\n{DNAT}\nEOF")
    rules = fw.succeed("nft list chain inet ctsyncd_fw publish")
    assert "dnat ip to 192.168.1.2" in rules, rules


def main():
    lab, client, fw1, fw2, server = build()
    daemon = dict(options="ExpectationSync { ftp }", mode="FTFW", mode_body="DisableExternalCache On")
    try:
        with subtest("PASV through fw-1's DNAT; the reply is rewritten"):
            for fw in (fw1, fw2):
                publish_ftp(fw)
            vips(fw1, True)
            start_daemon(lab, fw1, **daemon)
            start_daemon(lab, fw2, **daemon)
            ftp_server(lab, server)
            port_file, go = f"{lab.dir}/pasv", f"{lab.dir}/go"
            client.spawn(f"/usr/bin/python3 {os.path.dirname(os.path.dirname(__file__))}/ftp_client.py "
                         f"{VIP} {port_file} {go} 120", log_file=f"{lab.dir}/ftp_client.log")
            client.wait_until_succeeds(f"test -s {port_file}", timeout=20)
            port = file_text(port_file)
            log(f"server announced passive port {port} (on the VIP)")
            exp1 = fw1.succeed("conntrack -L expect 2>/dev/null")
            assert f"dport={port} " in exp1, exp1
            # The rewrite made a sequence adjustment on the control connection.
            ctl1 = fw1.succeed("conntrack -L -p tcp --dport 21 -o extended 2>/dev/null || true")
            log(f"fw-1 control connection: {ctl1.strip()}")
            fw1.wait_until_succeeds(f"ctsyncd -C {fw1.conf} -i | grep 'dport=21 ' | grep -q helper=ftp", timeout=10)
        with subtest("fw-2 holds the control connection and its expectation in its kernel"):
            fw2.wait_until_succeeds(f"conntrack -L expect 2>/dev/null | grep -q 'dport={port} '", timeout=10)
            fw2.wait_until_succeeds("conntrack -L -p tcp --dport 21 2>/dev/null | grep -q 192.168.1.2", timeout=10)
            # Whatever updates of the control connection are still on their
            # way (seq-adj, ASSURED) reach fw-2 within a second or so: the
            # expectation must survive them.
            time.sleep(3)
            exp2 = fw2.execute("conntrack -L expect 2>/dev/null")[1]
            log(f"fw-2 kernel expectations after the updates: {exp2.strip()!r}")
            stats = ctsyncd(fw2, "-s")
            log("fw-2 " + " | ".join(line.strip() for line in stats.splitlines() if "connections" in line))
            assert f"dport={port} " in exp2, "the control connection's update removed the injected expectation"
            assert ctsyncd(fw2, "-e expect").strip() == "", "DisableExternalCache caches nothing"
        with subtest("failover by hand; LIST through fw-2"):
            fw1.block()
            vips(fw1, False)
            vips(fw2, True)
            fw2.succeed(f"CTSYNCD_BIN=$(command -v ctsyncd) CTSYNCD_CONFIG={fw2.conf} LOGGER=echo "
                        f"{ROOT}/etc/keepalived/primary-backup.sh primary")
            open(go, "w").close()
            client.wait_until_succeeds(f"test -s {port_file}.done", timeout=30)
            verdict = file_text(f"{port_file}.done")
            log(f"client: {verdict}")
            if not verdict.startswith("LISTED"):
                dump_logs(lab, (fw1, fw2))
            assert verdict.startswith("LISTED") and "hello.txt" in verdict, verdict
            # The data connection went through fw-2 as RELATED, DNATed to
            # the server by the expectation's NAT part.
            data = fw2.succeed(f"conntrack -L -p tcp --dport {port} 2>/dev/null || true")
            assert "192.168.1.2" in data, data
            log_text = file_text(f"{lab.dir}/fw2/ctsyncd.log")
            assert "could not inject" not in log_text, log_text
    except BaseException:
        dump_logs(lab, (fw1, fw2))
        raise
    finally:
        lab.cleanup()


if __name__ == "__main__":
    main()
