"""10 000 real flows through fw1 reach fw2's external cache; after `-c` on
fw2 they are in fw2's kernel with the right tuples, NAT and timeouts;
deleting them on fw1 empties fw2's external cache."""

import json
import sys

from driver import log, subtest
from topology import build, ctsyncd, daemon_log, start_daemon, vips

N = 10_000

FLOWS = f"""
import socket
for i in range({N}):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("192.168.0.2", 20000 + i))
    s.sendto(b"x", ("192.168.1.2", 9000))
    s.close()
"""


def count(fw, args):
    return int(ctsyncd(fw, f"{args} | grep -c 'dport=9000 ' || true").strip() or 0)


def main():
    lab, client, fw1, fw2, server = build()
    try:
        vips(fw1, True)
        start_daemon(lab, fw1)
        start_daemon(lab, fw2)
        with subtest("10 000 flows through fw1 replicate to fw2"):
            client.succeed(f"python3 - <<'EOF'\n{FLOWS}\nEOF", timeout=120)
            fw1.wait_until_succeeds(f"test $(conntrack -L -p udp --dport 9000 2>/dev/null | wc -l) -ge {N}", timeout=60)
            fw1.wait_until_succeeds(f"test $(ctsyncd -C {fw1.conf} -i | grep -c 'dport=9000 ') -ge {N}", timeout=60)
            fw2.wait_until_succeeds(f"test $(ctsyncd -C {fw2.conf} -e | grep -c 'dport=9000 ') -ge {N}", timeout=60)
            entries = json.loads(ctsyncd(fw2, "-e --json"))
            flows = [e for e in entries if e["orig"].get("dport") == 9000]
            assert len(flows) == N, len(flows)
            one = flows[0]
            assert one["orig"]["src"] == "192.168.0.2" and one["orig"]["dst"] == "192.168.1.2", one
            # The NAT binding: replies go to the LAN1 VIP.
            assert one["reply"]["dst"] == "192.168.1.100", one
            log(f"fw2 external cache: {len(flows)} flows")
        with subtest("-c on fw2 puts them into fw2's kernel"):
            assert fw2.succeed("conntrack -L -p udp --dport 9000 2>/dev/null | wc -l").strip() == "0"
            ctsyncd(fw2, "-c")
            out = fw2.succeed("conntrack -L -p udp --dport 9000 2>/dev/null")
            lines = [l for l in out.splitlines() if "dport=9000" in l]
            assert len(lines) == N, len(lines)
            sample = lines[0]
            assert "src=192.168.0.2 dst=192.168.1.2" in sample and "dst=192.168.1.100" in sample, sample
            timeout = int(sample.split()[2])
            assert 0 < timeout <= 30, sample  # udp unreplied timeout, age-adjusted
            logtext = daemon_log(lab, fw2)
            assert f"Committed {N} new entries" in logtext, logtext[-2000:]
            assert "commit has taken" in logtext
        with subtest("deletes on fw1 propagate"):
            # Within seconds (the deletes' events take milliseconds), and
            # before the flows expire by themselves (unreplied UDP: 30 s
            # from their datagram): fw-1's expiry events, or anti-entropy
            # (every 30 s), would empty fw-2 too, and the 60 s wait this
            # had passed with no delete at all.
            out = fw1.succeed("conntrack -L -p udp --dport 9000 2>/dev/null")
            left = min(int(l.split()[2]) for l in out.splitlines() if "dport=9000" in l)
            log(f"fw1's flows expire in {left}s or more")
            assert left >= 8, f"fw1's flows expire in {left}s: too soon to tell a delete from an expiry"
            fw1.succeed("conntrack -D -p udp --dport 9000 >/dev/null 2>&1 || true")
            assert fw1.succeed("conntrack -L -p udp --dport 9000 2>/dev/null | wc -l").strip() == "0"
            fw2.wait_until_succeeds(f"test $(ctsyncd -C {fw2.conf} -e | grep -c 'dport=9000 ') -eq 0", timeout=5)
            assert count(fw1, "-i") == 0
    except BaseException:
        for fw in (fw1, fw2):
            print(f"----- {fw.name} daemon log -----\n{daemon_log(lab, fw)[-4000:]}", file=sys.stderr)
        raise


if __name__ == "__main__":
    main()
