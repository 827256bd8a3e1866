"""Every control command checked by its effect, and the cache bound:
with HashLimit 1000, 5000 flows leave exactly 1000 entries, a non-zero
refused counter in `-s cache`, and a bounded RSS."""

import json
import sys

from driver import log, subtest
from topology import build, ctsyncd, dump_logs, file_text, start_daemon, vips

FLOWS = """
import socket, sys
n, base = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("192.168.0.2", base + i))
    s.sendto(b"x", ("192.168.1.2", 9000))
    s.close()
"""


def flows(client, lab, n, base):
    path = f"{lab.dir}/flows.py"
    with open(path, "w") as f:
        f.write(FLOWS)
    client.succeed(f"python3 {path} {n} {base}", timeout=120)


def lines(fw, args, pattern="dport=9000 "):
    return sum(1 for l in ctsyncd(fw, args).splitlines() if pattern in l)


def kernel_flows(fw):
    return int(fw.succeed("conntrack -L -p udp --dport 9000 2>/dev/null | wc -l").strip())


def rss_kib(fw):
    pid = fw.succeed(f"cat {fw.conf.rsplit('/', 1)[0]}/ctsyncd.lock").strip()
    status = fw.succeed(f"cat /proc/{pid}/status")
    return int(next(l.split()[1] for l in status.splitlines() if l.startswith("VmRSS:")))


def main():
    lab, client, fw1, fw2, server = build()
    try:
        vips(fw1, True)
        start_daemon(lab, fw1, extra_general="HashLimit 1000", mode_body="PurgeTimeout 2")
        start_daemon(lab, fw2, extra_general="HashLimit 1000", mode_body="PurgeTimeout 2")
        with subtest("HashLimit 1000: 5000 flows leave exactly 1000 entries"):
            flows(client, lab, 5000, 20000)
            fw1.wait_until_succeeds(f"test $(conntrack -L -p udp --dport 9000 2>/dev/null | wc -l) -ge 5000")
            fw2.wait_until_succeeds(f"test $(ctsyncd -C {fw2.conf} -e | grep -c 'dport=9000 ') -eq 1000", timeout=30)
            assert lines(fw1, "-i") == 1000
            cache = ctsyncd(fw1, "-s cache")
            refused = int(cache.split("no space left in cache:")[1].split()[0])
            assert refused >= 4000, cache
            stats = json.loads(ctsyncd(fw1, "-s cache --json"))
            assert stats["caches"]["internal"]["active"] == 1000, stats
            assert stats["caches"]["internal"]["full"] == refused, stats
            rss = rss_kib(fw1)
            log(f"fw1: 1000 cached, {refused} refused, RSS {rss} KiB")
            assert rss < 16 * 1024, rss
        with subtest("-i/-e in text, XML and JSON agree"):
            assert lines(fw2, "-e -x", "<dport>9000</dport>") == 1000
            assert len([e for e in json.loads(ctsyncd(fw2, "-e --json")) if e["orig"]["dport"] == 9000]) == 1000
            assert "[active since" in ctsyncd(fw1, "-i").splitlines()[0]
        with subtest("every -s view answers in conntrackd's layout"):
            firsts = {
                "": "cache internal:", "ct": "cache internal:", "network": "network statistics:",
                "cache": "cache:internal", "runtime": "daemon uptime:", "link": "UDP traffic device=sync0 status=RUNNING role=ACTIVE:",
                "rsqueue": "resent queue (len=", "queue": "allocated queue nodes:",
            }
            for view, first in firsts.items():
                out = ctsyncd(fw1, f"-s {view}")
                assert out.startswith(first), (view, out[:200])
            assert ctsyncd(fw1, "-s process") == ""
        with subtest("-f external / -n: fw2 empties, then resyncs from fw1"):
            ctsyncd(fw2, "-f external")
            assert lines(fw2, "-e") == 0
            ctsyncd(fw2, "-n")
            fw2.wait_until_succeeds(f"test $(ctsyncd -C {fw2.conf} -e | grep -c 'dport=9000 ') -eq 1000", timeout=30)
            assert "resync requested by other node" in file_text(f"{lab.dir}/fw1/ctsyncd.log")
        with subtest("-f internal / -R: fw1 relearns its kernel table"):
            ctsyncd(fw1, "-f internal")
            assert lines(fw1, "-i") == 0
            ctsyncd(fw1, "-R")
            assert lines(fw1, "-i") == 1000
            assert "resync with master conntrack table" in file_text(f"{lab.dir}/fw1/ctsyncd.log")
        with subtest("-B: fw1 sends everything again"):
            ctsyncd(fw2, "-f")
            assert lines(fw2, "-e") == 0
            ctsyncd(fw1, "-B")
            fw2.wait_until_succeeds(f"test $(ctsyncd -C {fw2.conf} -e | grep -c 'dport=9000 ') -eq 1000", timeout=30)
        with subtest("-c ct commits conntracks; -c expect has none to commit"):
            ctsyncd(fw2, "-c ct")
            assert kernel_flows(fw2) == 1000
            ctsyncd(fw2, "-c expect")
            log2 = file_text(f"{lab.dir}/fw2/ctsyncd.log")
            assert "committing conntrack cache" in log2 and "Committed 1000 new entries" in log2
            assert "committing expectation cache" in log2 and "Committed 0 new expectations" in log2
            # -f right after -c is accepted (conntrackd 1.4.x refuses it).
            ctsyncd(fw2, "-f")
        with subtest("-t: after PurgeTimeout the kernel entries go, the sync flows stay"):
            # The sync link's own flows (counted by their fields: a looser
            # grep also matched a purged flow whose port contained 3780).
            sync_flows = fw2.succeed("conntrack -L -p udp --dport 3780 -s 10.99.0.0/30 2>/dev/null | wc -l").strip()
            assert int(sync_flows) > 0
            ctsyncd(fw2, "-t")
            assert kernel_flows(fw2) == 1000, "nothing happens before PurgeTimeout"
            fw2.wait_until_succeeds("test $(conntrack -L -p udp --dport 9000 2>/dev/null | wc -l) -eq 0", timeout=10)
            assert "flushing conntrack table in 2 secs" in file_text(f"{lab.dir}/fw2/ctsyncd.log")
            assert "flushing kernel conntrack table (scheduled)" in file_text(f"{lab.dir}/fw2/ctsyncd.log")
            assert fw2.succeed("conntrack -L -p udp --dport 3780 -s 10.99.0.0/30 2>/dev/null | wc -l").strip() == sync_flows
        with subtest("-F: fw1's kernel flows go (what the Filter ignores stays)"):
            assert kernel_flows(fw1) >= 5000
            ctsyncd(fw1, "-F")
            assert kernel_flows(fw1) == 0
            assert int(fw1.succeed("conntrack -L -p udp --dport 3780 -s 10.99.0.0/30 2>/dev/null | wc -l").strip()) > 0
        with subtest("a refused request exits 1 with the reason"):
            rc, out = fw1.execute(f"ctsyncd -C {fw1.conf} -i bogus")
            assert rc == 1 and "unknown parameter" in out, (rc, out)
        with subtest("-k stops the daemon and removes its files"):
            d = fw1.conf.rsplit("/", 1)[0]
            ctsyncd(fw1, "-k")
            fw1.wait_until_fails(f"test -e {d}/ctsyncd.lock", timeout=10)
            fw1.fail(f"test -e {d}/ctsyncd.ctl")
            rc, out = fw1.execute(f"ctsyncd -C {fw1.conf} -s")
            assert rc == 1 and "can't connect" in out
            assert "---- shutdown received ----" in file_text(f"{d}/ctsyncd.log")
    except BaseException:
        dump_logs(lab, (fw1, fw2))
        raise


if __name__ == "__main__":
    sys.exit(main())
