#!/usr/bin/env python3
"""The commit-gap scenario's probes, one process per role and namespace.

    gap_probe.py inject COUNT                 (fw-1) COUNT idle UDP conntracks
    gap_probe.py watch OUT STOP SECONDS       (fw-2) timestamps of the takeover
    gap_probe.py sink ADDR PORT OUT STOP      (server) one TCP stream's receive times
    gap_probe.py send ADDR PORT OUT STOP      (client) 8 bytes every 10 ms
    gap_probe.py usink ADDR PORT OUT STOP     (server) a UDP stream's receive times, echoed
    gap_probe.py usend ADDR PORT OUT STOP     (client) a datagram every 10 ms

inject creates the conntracks through ctnetlink directly (batches of
IPCTNL_MSG_CT_NEW in one sendmsg each; the kernel handles a batch in the
sender's context), paced so the firewall daemon's event socket keeps up:
100 000 entries take a few seconds instead of minutes of real packets or
`conntrack -I` processes.

watch records, with time.monotonic() (one clock for every namespace), in
fw-2: when each VIP appears (rtnetlink), when each stream's conntrack
(TCP to port 5001, UDP to port 9000) is created in fw-2's kernel (a
ctnetlink NEW event through a socket filter, so 100 000 committed idle
entries cost it nothing), every stream packet that reaches fw-2 addressed
to it (eth0, PACKET_HOST) and every one fw-2 forwards to the server (eth1,
PACKET_OUTGOING), and when an expectation is created. It writes OUT (JSON) when STOP exists or after SECONDS.

sink and send: the active stream; the sink writes OUT.progress (bytes so
far) while running and OUT (JSON: bytes, receive times) at the end.
sink and usink end by themselves after LAB_HELPER_LIFETIME seconds (900,
beyond run.py's bound on a scenario), also when nobody connects or STOP
never comes: every loop is bounded in time.
"""

import json
import os
import select
import socket
import struct
import sys
import time

STREAM_PORT = 5001
UDP_PORT = 9000
NETLINK_NETFILTER = 12
NLM_F_REQUEST, NLM_F_CREATE, NLM_F_EXCL = 0x1, 0x400, 0x200
NLA_F_NESTED = 0x8000
NLMSG_ERROR = 2
IPS_SEEN_REPLY_ASSURED = 0x2 | 0x4 | 0x8  # and CONFIRMED: ctnetlink refuses to clear it (EBUSY)
IDLE_TIMEOUT = 3600
DEADLINE = time.monotonic() + float(os.environ.get("LAB_HELPER_LIFETIME", "900"))


def left():
    """Seconds of a sink's lifetime left (at least a tenth, for a timeout)."""
    return max(0.1, DEADLINE - time.monotonic())


def write_json(path, obj):
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f)
    os.replace(path + ".tmp", path)


def write_progress(out, total):
    """OUT.progress, replaced whole: gap.py reads it while it changes, and
    a read between the truncation and the write found it empty (0)."""
    with open(out + ".progress.tmp", "w") as f:
        f.write(f"{total}\n")
    os.replace(out + ".progress.tmp", out + ".progress")


def nla(kind, payload):
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def tuple_attr(kind, src, dst, sport, dport):
    ip = nla(1 | NLA_F_NESTED, nla(1, src) + nla(2, dst))
    proto = nla(2 | NLA_F_NESTED, nla(1, bytes([17])) + nla(2, struct.pack("!H", sport)) + nla(3, struct.pack("!H", dport)))
    return nla(kind | NLA_F_NESTED, ip + proto)


def idle_flow(k, seq):
    """Flow k: 172.16.x.y:sport → 192.168.1.2:dport, UDP, assured."""
    src = socket.inet_aton(f"172.16.{k // 50000}.{1 + k % 250}")
    dst = socket.inet_aton("192.168.1.2")
    sport, dport = 1024 + k % 50000, 40000 + (k // 250) % 20000
    body = (struct.pack("!BBH", socket.AF_INET, 0, 0)
            + tuple_attr(1, src, dst, sport, dport) + tuple_attr(2, dst, src, dport, sport)
            + nla(3, struct.pack("!I", IPS_SEEN_REPLY_ASSURED)) + nla(7, struct.pack("!I", IDLE_TIMEOUT)))
    return struct.pack("=IHHII", 16 + len(body), 0x100, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL, seq, 0) + body


def inject(count, batch=500, pause=0.02):
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    s.setsockopt(socket.SOL_SOCKET, 32, 8 << 20)  # SO_SNDBUFFORCE
    s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE
    s.bind((0, 0))
    s.setblocking(False)
    errors = {}

    def drain():
        while True:
            try:
                data = s.recv(1 << 16)
            except BlockingIOError:
                return
            off = 0
            while off + 20 <= len(data):
                length, kind = struct.unpack_from("=IH", data, off)
                if kind == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", data, off + 16)[0]
                    if err:
                        errors[err] = errors.get(err, 0) + 1
                off += max(length, 16 + 4) + (-length % 4)

    t0 = time.monotonic()
    for start in range(0, count, batch):
        s.send(b"".join(idle_flow(k, k + 1) for k in range(start, min(count, start + batch))))
        drain()
        time.sleep(pause)
    drain()
    print(json.dumps({"created": count - sum(errors.values()), "errors": errors, "seconds": time.monotonic() - t0}))


# In a ctnetlink IPv4 event the original tuple comes first: addresses,
# then the protocol number (byte 52) and the ports (destination at 68).
CT_PROTO_AT, CT_DPORT_AT = 52, 68


def stream_ct_filter():
    """cBPF for ctnetlink events: accept only those whose original
    destination port is a stream's."""
    insns = [(0x28, 0, 0, CT_DPORT_AT), (0x15, 1, 0, STREAM_PORT), (0x15, 0, 1, UDP_PORT),
             (0x06, 0, 0, 0xFFFF), (0x06, 0, 0, 0)]
    prog = b"".join(struct.pack("=HBBI", *i) for i in insns)
    import ctypes
    buf = ctypes.create_string_buffer(prog)
    return struct.pack("HL", len(insns), ctypes.addressof(buf)), buf


def stream_packet(frame):
    """(src, dst, kind) of an IPv4 Ethernet frame of a stream ("tcp" to
    STREAM_PORT, "udp" to UDP_PORT), else None."""
    if len(frame) < 38 or frame[12:14] != b"\x08\x00" or frame[23] not in (6, 17):
        return None
    ihl = (frame[14] & 0xF) * 4
    dport = struct.unpack_from("!H", frame, 14 + ihl + 2)[0]
    kind = {(6, STREAM_PORT): "tcp", (17, UDP_PORT): "udp"}.get((frame[23], dport))
    return kind and (socket.inet_ntoa(frame[26:30]), socket.inet_ntoa(frame[30:34]), kind)


def watch(out, stop, seconds):
    rt = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    rt.bind((0, 0x10))  # RTMGRP_IPV4_IFADDR
    ct = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    ct.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)
    fprog, _keep = stream_ct_filter()
    ct.setsockopt(socket.SOL_SOCKET, 26, fprog)  # SO_ATTACH_FILTER
    ct.bind((0, 1))  # NFNLGRP_CONNTRACK_NEW
    exp = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    exp.bind((0, 1 << 3))  # NFNLGRP_CONNTRACK_EXP_NEW
    pkt = {}
    for ifname in ("eth0", "eth1"):
        p = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        p.bind((ifname, 3))
        pkt[p] = ifname
    rec = {"offset": time.time() - time.monotonic(), "vip": {}, "exp_new": []}
    for kind in ("tcp", "udp"):
        rec.update({f"{kind}_ct_new": [], f"{kind}_arrive": [], f"{kind}_forward": []})
    open(out + ".ready", "w").close()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not os.path.exists(stop):
        ready, _, _ = select.select([rt, ct, exp, *pkt], [], [], 0.05)
        for s in ready:
            if s is rt:
                data = rt.recv(1 << 16)
                now = time.monotonic()
                off = 0
                while off + 24 <= len(data):
                    length, kind = struct.unpack_from("=IH", data, off)
                    a = off + 24
                    while kind == 20 and a + 4 <= off + length:  # RTM_NEWADDR
                        alen, atype = struct.unpack_from("=HH", data, a)
                        if atype in (1, 2) and alen == 8:
                            rec["vip"].setdefault(socket.inet_ntoa(data[a + 4:a + 8]), now)
                        a += max(alen, 4) + (-alen % 4)
                    off += max(length, 24) + (-length % 4)
            elif s is exp:
                exp.recv(1 << 16)
                rec["exp_new"].append(time.monotonic())
            elif s is ct:
                try:
                    data = ct.recv(1 << 16)
                except OSError:  # ENOBUFS: the filter makes it unlikely
                    continue
                if len(data) > CT_DPORT_AT + 1:
                    kind = {6: "tcp", 17: "udp"}.get(data[CT_PROTO_AT])
                    if kind:
                        rec[f"{kind}_ct_new"].append(time.monotonic())
            else:
                data, addr = s.recvfrom(256)
                now = time.monotonic()
                t = stream_packet(data)
                if not t:
                    continue
                if pkt[s] == "eth0" and addr[2] == socket.PACKET_HOST and t[0] == "192.168.0.2":
                    rec[f"{t[2]}_arrive"].append(now)
                elif pkt[s] == "eth1" and addr[2] == socket.PACKET_OUTGOING and t[1] == "192.168.1.2":
                    rec[f"{t[2]}_forward"].append(now)
    write_json(out, rec)


def sink(addr, port, out, stop):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port))
    ls.listen(1)
    ls.settimeout(left())
    try:
        conn, _ = ls.accept()
    except TimeoutError:
        sys.exit(f"gap_probe: nobody connected within its lifetime ({addr} {port})")
    total, times, last_report = 0, [], 0.0

    def chunk():
        conn.settimeout(left())
        try:
            return conn.recv(4096)
        except TimeoutError:
            return b""

    while time.monotonic() < DEADLINE and (data := chunk()):
        now = time.monotonic()
        total += len(data)
        times.append(now)
        if now - last_report > 0.1:
            last_report = now
            write_progress(out, total)
    write_json(out, {"bytes": total, "times": times})


def send(addr, port, out, stop):
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sent, error = 0, "none"
    try:
        s.connect((addr, port))
        end = time.monotonic() + 600
        while time.monotonic() < end and not os.path.exists(stop):
            s.sendall(b"%07d\n" % (sent % 10_000_000))
            sent += 8
            time.sleep(0.01)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(60)
        s.recv(1)  # the sink closes once it has everything
    except Exception as e:  # noqa: BLE001 - reported to the scenario
        error = f"{type(e).__name__}: {e}"
    write_json(out, {"bytes": sent, "error": error})


def usink(addr, port, out, stop):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    s.settimeout(0.2)
    total, times, last_report = 0, [], 0.0
    while not os.path.exists(stop) and time.monotonic() < DEADLINE:
        try:
            data, peer = s.recvfrom(2048)
        except TimeoutError:
            continue
        # Echoed: a two-way flow (as RTP is), whose conntrack has seen a
        # reply and is ESTABLISHED (an unreplied one stays "new").
        s.sendto(data, peer)
        now = time.monotonic()
        total += 1
        times.append(now)
        if now - last_report > 0.1:
            last_report = now
            write_progress(out, total)
    write_json(out, {"datagrams": total, "times": times})


def usend(addr, port, out, stop):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent, error = 0, "none"
    try:
        s.connect((addr, port))
        end = time.monotonic() + 600
        while time.monotonic() < end and not os.path.exists(stop):
            try:
                s.send(b"%07d\n" % sent)
            except ConnectionRefusedError:  # an ICMP error while no firewall forwards
                pass
            sent += 1
            time.sleep(0.01)
    except Exception as e:  # noqa: BLE001 - reported to the scenario
        error = f"{type(e).__name__}: {e}"
    write_json(out, {"datagrams": sent, "error": error})


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "inject":
        inject(int(sys.argv[2]))
    elif mode == "watch":
        watch(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    elif mode == "sink":
        sink(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif mode in ("send", "usink", "usend"):
        {"send": send, "usink": usink, "usend": usend}[mode](sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    else:
        sys.exit(__doc__)
