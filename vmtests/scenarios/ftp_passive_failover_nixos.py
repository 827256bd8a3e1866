# The FTP passive-mode failover on four machines, written once for two
# drivers: nix/vmtest.nix reads this file as its testScript (NixOS VMs),
# and `make lab` runs it on network namespaces (vmtests/nixos_lab.py with
# vmtests/nixos_driver.py). Only the NixOS test-driver API is used; the
# machines, units and paths are the ones both set up.
#
# The client opens an FTP control connection through fw1 and gets a PASV
# port; fw1 crashes; fw2 takes the VIPs and commits the expectation that
# ctsyncd replicated; the data connection to the announced port must then
# pass fw2 (its nftables forward only what an expectation allows).
import time

HOLDS_VIPS = ("ip -4 addr show dev eth0 | grep -q 192.168.0.100"
              " && ip -4 addr show dev eth1 | grep -q 192.168.1.100")
CTL = "ctsyncd -C /etc/ctsyncd/ctsyncd.conf"
# Written by keepalived's sync-group `notify` on every transition.
VRRP_STATE = "/run/ctsyncd-test/vrrp-state"
# pyftpdlib closes a passive listener nobody connected to after 30 s
# (PassiveDTP.timeout): everything between PASV and the data connection
# must fit well inside that. The waits below add up to 20 s at most.
PASV_BUDGET = 25

start_all()

with subtest("daemons and keepalived start; fw1 becomes primary, fw2 backup"):
    for fw in (fw1, fw2):
        fw.wait_for_unit("nftables.service", timeout=120)
        fw.wait_for_unit("ctsyncd.service", timeout=120)
        fw.succeed(f"{CTL} -s")
    server.wait_for_unit("ftpd.service", timeout=120)
    # pyftpdlib listens on 192.168.1.2 only: not on localhost.
    server.wait_for_open_port(21, "192.168.1.2", timeout=60)
    # keepalived starts from a timer 5 s after boot (no job is pending
    # before: wait_for_unit("keepalived.service") would fail), possibly on
    # fw2 first, which then holds the VIPs until fw1 preempts: wait for
    # the final VRRP states rather than assert at once.
    fw1.wait_until_succeeds(f"grep -qx MASTER {VRRP_STATE} && {HOLDS_VIPS}", timeout=60)
    fw2.wait_until_succeeds(f"grep -qx BACKUP {VRRP_STATE}", timeout=60)
    fw2.wait_until_fails(HOLDS_VIPS, timeout=10)

with subtest("FTP control connection and PASV through fw1"):
    client.succeed(
        "python3 /etc/ctsyncd-test/ftp_client.py 192.168.1.2 /tmp/pasv /tmp/go 120"
        " >/tmp/ftp_client.log 2>&1 &"
    )
    client.wait_until_succeeds("test -s /tmp/pasv", timeout=30)
    pasv_at = time.monotonic()
    port = client.succeed("cat /tmp/pasv").strip()
    fw1.wait_until_succeeds(f"conntrack -L expect 2>/dev/null | grep -q 'dport={port} '", timeout=4)
    # fw2 holds it in its external cache, not yet in its kernel.
    fw2.wait_until_succeeds(f"{CTL} -e expect | grep -q 'dport={port} '", timeout=4)
    fw2.succeed(f"{CTL} -e | grep -q 'dport=21 .*helper=ftp'")
    fw2.fail(f"conntrack -L expect 2>/dev/null | grep -q 'dport={port} '")

with subtest("fw1 crashes; fw2 takes the VIPs and commits"):
    fw1.crash()
    fw2.wait_until_succeeds(HOLDS_VIPS, timeout=8)
    fw2.wait_until_succeeds("grep -q 'Committed 1 new expectations' /var/log/ctsyncd/ctsyncd.log", timeout=4)
    fw2.succeed(f"conntrack -L expect 2>/dev/null | grep -q 'dport={port} '")
    since_pasv = time.monotonic() - pasv_at
    assert since_pasv < PASV_BUDGET, f"{since_pasv:.1f}s since PASV: pyftpdlib gives up on it at 30 s"

with subtest("the data connection to the announced port passes fw2"):
    client.succeed("touch /tmp/go")
    client.wait_until_succeeds("test -s /tmp/pasv.done", timeout=15)
    verdict = client.succeed("cat /tmp/pasv.done").strip()
    print(client.succeed("cat /tmp/ftp_client.log"))
    assert verdict.startswith("LISTED") and "hello.txt" in verdict, verdict
