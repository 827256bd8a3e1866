"""The moment between a takeover and its commit: fw-2 holds the VIPs but
has not committed its external cache yet, and the server sends on a
connection SNATed to the server-side VIP (IPv4 and IPv6). The segment
reaches fw-2, matches no entry there and would be delivered to fw-2's own
TCP stack, which answers a segment for no socket with a reset: the
connection would end before the commit could save it. The ruleset's input
chain (etc/nftables/firewall.nft) drops it instead; after `-c` the server's
retransmission passes and the connection lives on.

This is the race the rolling_upgrade scenario lost now and then (a
server's ACK to the VIP right after keepalived moved it, before the notify
script's commit); here the window is held open on purpose.
"""

import sys

from driver import log, subtest
from topology import build, ctsyncd, daemon_log, file_text, start_daemon, vips

PORT = 5001
# (family, server address, client address)
FAMILIES = [("ipv4", "192.168.1.2", "192.168.0.2"), ("ipv6", "fd00:1::2", "fd00::2")]

# The server: accepts one connection, says `accepted`, then on the trigger
# file sends `ping` and waits for the client's `pong`; its verdict is the
# first line of OUT (`ok`, or the error).
SERVER = """
import os, socket, sys, time
addr, out, trigger = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, PORT))
s.listen(1)
s.settimeout(60)
conn, peer = s.accept()
conn.settimeout(60)
conn.recv(16)  # the client's hello
open(out, "w").write(f"accepted {peer[0]}:{peer[1]}\\n")
deadline = time.monotonic() + 60
while not os.path.exists(trigger) and time.monotonic() < deadline:
    time.sleep(0.02)
conn.settimeout(30)
try:
    conn.sendall(b"ping\\n")
    got = conn.recv(16)
    verdict = "ok" if got == b"pong\\n" else f"unexpected {got!r}"
except OSError as e:
    verdict = f"{type(e).__name__}: {e}"
open(out, "w").write(verdict + "\\n")
""".replace("PORT", str(PORT))

# The client: connects (SNATed by the primary), answers `ping` with `pong`.
CLIENT = """
import socket, sys
addr = sys.argv[1]
c = socket.create_connection((addr, PORT), timeout=60)
c.sendall(b"hello\\n")
if c.recv(16) == b"ping\\n":
    c.sendall(b"pong\\n")
c.recv(16)
""".replace("PORT", str(PORT))


def script(lab, name, text):
    path = f"{lab.dir}/{name}.py"
    with open(path, "w") as f:
        f.write(text)
    return path


def drops(fw):
    """Packets the input chain's VIP rules dropped on fw (both families)."""
    out = fw.succeed("nft list chain inet ctsyncd_fw input")
    return sum(int(line.split("counter packets ")[1].split()[0]) for line in out.splitlines()
               if "counter packets" in line)


def main():
    lab, client, fw1, fw2, server = build()
    d = lab.dir
    server_py, client_py = script(lab, "server", SERVER), script(lab, "client", CLIENT)
    try:
        vips(fw1, True)
        start_daemon(lab, fw1)
        start_daemon(lab, fw2)
        with subtest("a connection of each family through fw-1 is replicated to fw-2"):
            for fam, saddr, _ in FAMILIES:
                server.spawn(f"python3 {server_py} {saddr} {d}/{fam}.server {d}/go")
            server.wait_until_succeeds(f"test $(ss -ltnH | grep -c ':{PORT} ') -eq {len(FAMILIES)}", timeout=10)
            for fam, saddr, _ in FAMILIES:
                client.spawn(f"python3 {client_py} {saddr}")
                server.wait_until_succeeds(f"grep -q accepted {d}/{fam}.server", timeout=10)
                log(f"{fam}: server {file_text(f'{d}/{fam}.server').strip()}")
            for _, saddr, caddr in FAMILIES:
                fw2.wait_until_succeeds(f"ctsyncd -C {fw2.conf} -e | grep 'ESTABLISHED src={caddr} dst={saddr} '"
                                        f" | grep -q 'dport={PORT} '", timeout=20)
        with subtest("fw-2 takes the VIPs; the server's segment before the commit is dropped, not reset"):
            vips(fw1, False)
            vips(fw2, True)
            # Neighbours resolve the VIPs afresh: fw-2 answers.
            for m in (client, server):
                m.succeed("ip neigh flush dev eth0 && ip -6 neigh flush dev eth0")
            before = drops(fw2)
            open(f"{d}/go", "w").close()
            for _ in range(50):
                if drops(fw2) >= before + len(FAMILIES):
                    break
                fw2.succeed("sleep 0.1")
            dropped = drops(fw2) - before
            assert dropped >= len(FAMILIES), f"fw-2 dropped {dropped} segments to its VIPs before the commit"
            for fam, _, _ in FAMILIES:
                verdict = file_text(f"{d}/{fam}.server").strip()
                assert verdict.startswith("accepted"), (fam, verdict)
            kernel = fw2.succeed(f"conntrack -L -p tcp 2>/dev/null | grep 'port={PORT} ' || true").strip()
            assert not kernel, kernel
            log(f"fw-2 dropped {dropped} segments to its VIPs; nothing for them in its kernel yet")
        with subtest("after -c on fw-2 the server's retransmission passes: both connections live on"):
            ctsyncd(fw2, "-c")
            for fam, _, _ in FAMILIES:
                server.wait_until_succeeds(f"grep -qv accepted {d}/{fam}.server", timeout=20)
                verdict = file_text(f"{d}/{fam}.server").strip()
                assert verdict == "ok", (fam, verdict)
                log(f"{fam}: ping answered through fw-2")
    except BaseException:
        for fw in (fw1, fw2):
            print(f"----- {fw.name} daemon log -----\n{daemon_log(lab, fw)[-4000:]}", file=sys.stderr)
        raise


if __name__ == "__main__":
    main()
