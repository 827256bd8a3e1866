"""Issue 17 item 3, the commit gap: LAB_GAP_FLOWS idle conntracks (100 000
by default), one active TCP stream, one active UDP stream and one FTP PASV
session through fw-1; fw-1 crashes; fw-2 takes over (vmtests/gap.py has
the details). Asserts what must hold (the TCP stream goes on without a
reset and loses nothing, the UDP stream passes fw-2, the FTP data
connection opens through fw-2, fw-2's kernel ends with every entry) and
prints the timings (VRRP takeover, takeover → each stream's entry and
first packet through fw-2, the full commit) without asserting them: they
are benchmark output (`benches/bench.py --commit-gap`).

LAB_GAP_SETTLE (seconds, default 12: one ActivityScan period and slack)
is how long the idle entries stay idle before fw-1 fails.
LAB_GAP_ORDER=idle-first creates the idle entries before the streams
start (default streams-first: a long-lived stream is older than most of
the table, the realistic case).

LAB_DAEMONS=conntrackd,conntrackd runs conntrackd 1.4.7 on both firewalls;
LAB_GAP_DAEMONS=ctsyncd,conntrackd runs both, one after the other, and
prints them side by side."""

import os

from gap import measure, table


def main():
    n = int(os.environ.get("LAB_GAP_FLOWS", "100000"))
    pair = os.environ.get("LAB_DAEMONS", "ctsyncd,ctsyncd").split(",")
    assert len(pair) == 2 and pair[0] == pair[1], f"commit_gap runs one daemon on both firewalls: {pair}"
    daemons = os.environ.get("LAB_GAP_DAEMONS", pair[0]).split(",")
    order = os.environ.get("LAB_GAP_ORDER", "streams-first")
    assert order in ("streams-first", "idle-first"), order
    runs = [measure(d, n, streams_first=order == "streams-first") for d in daemons]
    print(f"\ncommit gap, {n} idle entries, {order} (one run each; timings are not asserted)\n")
    print("\n".join(table(runs)))


if __name__ == "__main__":
    main()
