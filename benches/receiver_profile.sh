#!/bin/sh
# Receiver CPU as instruction counts (stable on a loaded machine, unlike
# times): fw-2 runs under callgrind while fw-1 replicates N flows to it
# over FT-FW/UDP in two throw-away network namespaces; optionally one
# `-e` dump follows (DUMP=1, the default). Prints callgrind's total; the
# profile is left in $OUT for callgrind_annotate. SIDE=sender profiles
# fw-1 (the sender: kernel events in, datagrams out) instead.
#
#   N=5000 DUMP=0 BIN=target/release/ctsyncd benches/receiver_profile.sh
#   SENDER=/usr/sbin/conntrackd N=5000 DUMP=0 benches/receiver_profile.sh
#     (fw-1 runs conntrackd 1.4.7: ctsyncd receives conntrackd's protocol,
#     as the backup of a pair being migrated)
#
# The flows are made one `conntrack -I` at a time, so they trickle in:
# most datagrams carry one entry, and the event loop's share (one wake-up
# per datagram) depends on the machine's timing; compare the node's
# functions (callgrind_annotate --inclusive=yes) rather than totals alone.
#
# Subtract a run with N=1 (start-up and shutdown) and divide by N for
# instructions per entry. A release build with symbols for the annotation:
#   CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
#     cargo build --release --target-dir /tmp/prof-target
# Needs root, valgrind and conntrack(8).
set -e
BIN=${BIN:-target/release/ctsyncd}
SENDER=${SENDER:-$BIN}
OUT=${OUT:-/tmp/ctsyncd-receiver.callgrind}
W=$(mktemp -d /tmp/ctsyncd-rprof.XXXXXX)
N=${N:-5000}
A=rprofa$$; B=rprofb$$
cleanup() { set +e; [ -n "$P1" ] && kill $P1 2>/dev/null; [ -n "$P2" ] && kill $P2 2>/dev/null; sleep 1; ip netns del $A 2>/dev/null; ip netns del $B 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
# sh runs no EXIT trap when a signal ends it: ^C or a timeout's TERM
# left both namespaces and the work directory behind.
trap 'exit 130' INT
trap 'exit 143' TERM
ip netns add $A; ip netns add $B
ip link add rpa$$ netns $A type veth peer name rpb$$ netns $B
ip -n $A link set rpa$$ name s0; ip -n $B link set rpb$$ name s0
ip -n $A addr add 10.9.0.1/24 dev s0; ip -n $B addr add 10.9.0.2/24 dev s0
for n in $A $B; do ip -n $n link set s0 up; ip -n $n link set lo up; done
for i in 1 2; do
  me=10.9.0.$i; peer=10.9.0.$((3-i)); d=$W/fw$i; rm -rf $d; mkdir -p $d
  cat > $d/conf <<EOC
General {
  LogFile $d/log
  LockFile $d/lock
  UNIX { Path $d/ctl }
  HashLimit 262144
  Filter { Address Ignore { IPv4_address 10.9.0.0/24 } }
}
Sync {
  Mode FTFW { }
  UDP { IPv4_address $me IPv4_Destination_Address $peer Port 3780 Interface s0 }
}
EOC
done
VG="valgrind --tool=callgrind --callgrind-out-file=$OUT"
if [ "${SIDE:-receiver}" = sender ]; then V1=$VG; V2=; else V1=; V2=$VG; fi
ip netns exec $A $V1 $SENDER -C $W/fw1/conf 2>$W/valgrind1.err & P1=$!
ip netns exec $B $V2 $BIN -C $W/fw2/conf 2>$W/valgrind2.err & P2=$!
for t in $(seq 1 120); do $BIN -C $W/fw2/conf -s >/dev/null 2>&1 && $SENDER -C $W/fw1/conf -s >/dev/null 2>&1 && break; sleep 0.5; done
# A daemon that never answered, or entries that never all arrived, is a
# failed run: its count must not be printed as a profile of N entries.
$BIN -C $W/fw2/conf -s >/dev/null 2>&1 && $SENDER -C $W/fw1/conf -s >/dev/null 2>&1 ||
  { echo "receiver_profile: a daemon did not come up" >&2; exit 1; }
echo up
python3 - $A $N <<'EOP'
import subprocess,sys
ns,n=sys.argv[1],int(sys.argv[2])
# conntrack -I from a batch file is not available: one exec per flow, in the namespace via one shell.
lines=[f"conntrack -I -p udp -s 10.130.{i//250}.{i%250+1} -d 10.200.0.1 --sport 1024 --dport 53 -t 600 >/dev/null 2>&1" for i in range(n)]
subprocess.run(["ip","netns","exec",ns,"sh"],input="\n".join(lines)+"\n",text=True,check=True)
EOP
echo created
for t in $(seq 1 240); do c=$($BIN -C $W/fw2/conf -s 2>/dev/null | sed -n '/cache external/,/active/p' | grep "current active" | awk '{print $4}'); [ "$c" = "$N" ] && break; sleep 0.5; done
echo "external $c"
[ "$c" = "$N" ] || { echo "receiver_profile: $c of $N entries reached fw-2: no profile" >&2; exit 1; }
[ "${DUMP:-1}" = 1 ] && $BIN -C $W/fw2/conf -e | wc -l
kill -TERM $P1 $P2; wait $P1 || true; wait $P2 || true; P1=; P2=
callgrind_annotate "$OUT" 2>/dev/null | grep 'PROGRAM TOTALS'
