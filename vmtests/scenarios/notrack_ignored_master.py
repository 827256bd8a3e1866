"""NOTRACK with DisableInternalCache, and a Filter that ignores the FTP
client (so the control connection, the expectation's master, is never
replicated).

conntrackd replicates an expectation only with its master. Without an
internal cache there is no cached master to look at: the daemon must ask
the kernel for it and apply the Filter. If it sends the expectation
anyway, the backup holds an expectation whose master it never heard of,
and its `-c` fails for it ("1 expectations can't be committed", exit
status non-zero) at every failover.
"""

import os
import time

from driver import log, subtest
from topology import build, config, ctsyncd, dump_logs, file_text, ftp_server, vips

CLIENT = "192.168.0.2"
OTHER = "192.168.0.3"  # a second client address, not ignored


def start(lab, fw):
    """fw's daemon with the client's address added to the Filter's
    ignore list (an asserted edit of the lab's configuration)."""
    path = config(lab, fw, options="ExpectationSync On", mode="NOTRACK", mode_body="DisableInternalCache On")
    text = open(path).read()
    anchor = "IPv4_address 10.99.0.0/30"
    assert text.count(anchor) == 1, text
    with open(path, "w") as f:
        f.write(text.replace(anchor, f"{anchor}\n            IPv4_address {CLIENT}"))
    fw.conf = path
    fw.succeed(f"ctsyncd -C {path} -d")


def main():
    lab, client, fw1, fw2, server = build()
    try:
        with subtest("PASV from an ignored client through fw-1"):
            vips(fw1, True)
            start(lab, fw1)
            start(lab, fw2)
            ftp_server(lab, server)
            port_file, go = f"{lab.dir}/pasv", f"{lab.dir}/go"
            client.spawn(f"/usr/bin/python3 {os.path.dirname(os.path.dirname(__file__))}/ftp_client.py "
                         f"192.168.1.2 {port_file} {go} 60", log_file=f"{lab.dir}/ftp_client.log")
            client.wait_until_succeeds(f"test -s {port_file}", timeout=20)
            port = file_text(port_file)
            fw1.wait_until_succeeds(f"conntrack -L expect 2>/dev/null | grep -q 'dport={port} '", timeout=10)
            log(f"fw-1's kernel has the expectation for port {port}")
        with subtest("neither the master nor its expectation reaches fw-2"):
            # A flow the Filter does not ignore reaches fw-2 (the nothing
            # below is not that of a link that carries nothing), sent after
            # the FTP session's: fw-1 sent the session's first.
            client.succeed(f"ip addr add {OTHER}/24 dev eth0")
            client.succeed(f"python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                           f"s.bind((\"{OTHER}\", 0)); s.sendto(b\"x\", (\"192.168.1.2\", 9000))'")
            fw2.wait_until_succeeds(f"ctsyncd -C {fw2.conf} -e | grep -q 'src={OTHER} .*dport=9000 '", timeout=10)
            # Long enough for anything fw-1 sent to arrive (NOTRACK sends at
            # once; the datagram coalescing delay is milliseconds).
            time.sleep(2)
            stats = ctsyncd(fw1, "-s expect")
            log("fw-1 " + " | ".join(line.strip() for line in stats.splitlines() if "connections" in line))
            assert f"={CLIENT} " not in ctsyncd(fw2, "-e"), "the ignored master was replicated"
            exps = ctsyncd(fw2, "-e expect").strip()
            assert exps == "", f"an expectation whose master the Filter ignores was replicated: {exps}"
        with subtest("fw-2's commit has nothing it cannot commit"):
            rc, out = fw2.execute(f"ctsyncd -C {fw2.conf} -c")
            log_text = file_text(f"{lab.dir}/fw2/ctsyncd.log")
            assert rc == 0, f"-c exited {rc}: {out}\n{log_text}"
            assert "can't be committed" not in log_text, log_text
    except BaseException:
        dump_logs(lab, (fw1, fw2))
        raise
    finally:
        lab.cleanup()


if __name__ == "__main__":
    main()
