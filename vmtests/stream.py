"""Long-lived streams for the failover scenarios.

    stream.py tcp-sink ADDR PORT OUT        count lines, record the peer and gaps
    stream.py udp-sink ADDR PORT OUT
    stream.py tcp-send ADDR PORT SECONDS OUT [STOP]   one line every 50 ms
    stream.py udp-send ADDR PORT SECONDS OUT [STOP]

A sender stops after SECONDS, or earlier once the file STOP exists. A
sink ends by itself after LAB_HELPER_LIFETIME seconds (900, beyond
run.py's bound on a scenario): its loop is bounded in time also when the
scenario that started it died without its cleanup.

Sinks write `received=N max_gap=S peers=a,b` to OUT on every datagram/line
burst; senders write `sent=N error=...` to OUT when done.
"""

import os
import socket
import sys
import time

mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
DEADLINE = time.monotonic() + float(os.environ.get("LAB_HELPER_LIFETIME", "900"))


def left():
    """Seconds of the sink's lifetime left (at least a tenth, for a timeout)."""
    return max(0.1, DEADLINE - time.monotonic())


family = socket.AF_INET6 if ":" in addr else socket.AF_INET


def report(out, text):
    with open(out + ".tmp", "w") as f:
        f.write(text + "\n")
    os.replace(out + ".tmp", out)


if mode.endswith("sink"):
    out = sys.argv[4]
    kind = socket.SOCK_STREAM if mode == "tcp-sink" else socket.SOCK_DGRAM
    s = socket.socket(family, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    received, last, max_gap, peers = 0, None, 0.0, set()
    if kind == socket.SOCK_STREAM:
        s.listen(1)
        s.settimeout(left())
        try:
            conn, peer = s.accept()
        except TimeoutError:
            sys.exit(f"stream.py: nobody connected within its lifetime ({mode} {addr} {port})")
        peers.add(f"{peer[0]}:{peer[1]}")
        buf = b""

        def chunk():
            conn.settimeout(left())
            try:
                return conn.recv(4096)
            except TimeoutError:
                return b""

        while time.monotonic() < DEADLINE and (data := chunk()):
            buf += data
            now = time.monotonic()
            lines = buf.count(b"\n")
            if lines:
                buf = buf[buf.rindex(b"\n") + 1:]
                max_gap = max(max_gap, now - last) if last else 0.0
                last = now
                received += lines
                report(out, f"received={received} max_gap={max_gap:.2f} peers={','.join(sorted(peers))} open=1")
        report(out, f"received={received} max_gap={max_gap:.2f} peers={','.join(sorted(peers))} open=0")
    else:
        while time.monotonic() < DEADLINE:
            s.settimeout(left())
            try:
                data, peer = s.recvfrom(2048)
            except TimeoutError:
                continue
            now = time.monotonic()
            max_gap = max(max_gap, now - last) if last else 0.0
            last = now
            received += 1
            peers.add(f"{peer[0]}:{peer[1]}")
            report(out, f"received={received} max_gap={max_gap:.2f} peers={','.join(sorted(peers))}")
else:
    seconds, out = float(sys.argv[4]), sys.argv[5]
    stop = sys.argv[6] if len(sys.argv) > 6 else None
    kind = socket.SOCK_STREAM if mode == "tcp-send" else socket.SOCK_DGRAM
    s = socket.socket(family, kind)
    sent, error = 0, "none"
    try:
        if kind == socket.SOCK_STREAM:
            s.connect((addr, port))
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (stop and os.path.exists(stop)):
            line = f"{sent}\n".encode()
            if kind == socket.SOCK_STREAM:
                s.sendall(line)
            else:
                s.sendto(line, (addr, port))
            sent += 1
            time.sleep(0.05)
        if kind == socket.SOCK_STREAM:
            s.shutdown(socket.SHUT_WR)
            s.settimeout(30)
            s.recv(1)  # wait for the sink to close: everything arrived
    except Exception as e:  # noqa: BLE001 - reported to the scenario
        error = f"{type(e).__name__}:{e}"
    report(out, f"sent={sent} error={error}")
