#!/bin/sh
# Sender CPU as counts (stable on a loaded machine, unlike times): fw-1
# replicates N conntracks, created one by one with conntrack -I in its
# namespace, to fw-2 over FT-FW/UDP in two throw-away network namespaces.
# Events then arrive one at a time, each its own turn of the event loop:
# the per-event worst case, and the same every run. GAP=0.01 spaces them
# 10 ms apart, as a router's steady trickle of new flows.
#
#   TOOL=callgrind N=2000 BIN=target/release/ctsyncd benches/sender_profile.sh
#   TOOL=strace    N=2000 BIN=target/release/ctsyncd benches/sender_profile.sh
#   TOOL=perf      N=2000 BIN=target/release/ctsyncd benches/sender_profile.sh
#   (PERF_OPTS=--per-thread splits perf's counts by thread)
#
# callgrind (default): fw-1 runs under callgrind from its start; prints
# callgrind's total (subtract a run with N=1 for start-up and shutdown,
# divide by N for instructions per entry); the profile is left in $OUT.
# strace: `strace -c -f` attached to fw-1 once it is up, detached when fw-2
# holds all N entries; prints its table (divide the calls by N). strace
# slows fw-1 down enough to change how it waits (async-io's helper thread
# then drives the reactor): perf counts the same system calls (kernel
# tracepoints) with far less disturbance.
# A release build with symbols for the annotation:
#   CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
#     cargo build --release --target-dir /tmp/prof-target
# Needs root, valgrind or strace, and conntrack(8).
set -e
BIN=${BIN:-target/release/ctsyncd}
TOOL=${TOOL:-callgrind}
OUT=${OUT:-/tmp/ctsyncd-sender.callgrind}
W=$(mktemp -d /tmp/ctsyncd-sprof.XXXXXX)
N=${N:-2000}
A=sprofa$$; B=sprofb$$
cleanup() {
  # Not under set -e: a step that fails (a tool already gone) must not
  # leave the daemons running, holding the lab lock.
  set +e
  [ -n "$S" ] && kill -INT $S 2>/dev/null
  [ -n "$P1" ] && kill $P1 2>/dev/null; [ -n "$P2" ] && kill $P2 2>/dev/null
  sleep 1; ip netns del $A 2>/dev/null; ip netns del $B 2>/dev/null; rm -rf "$W"
}
trap cleanup EXIT
# sh runs no EXIT trap when a signal ends it: ^C or a timeout's TERM
# left both namespaces and the work directory behind.
trap 'exit 130' INT
trap 'exit 143' TERM
ip netns add $A; ip netns add $B
ip link add spa$$ netns $A type veth peer name spb$$ netns $B
ip -n $A link set spa$$ name s0; ip -n $B link set spb$$ name s0
ip -n $A addr add 10.9.0.1/24 dev s0; ip -n $B addr add 10.9.0.2/24 dev s0
for n in $A $B; do ip -n $n link set s0 up; ip -n $n link set lo up; done
for i in 1 2; do
  me=10.9.0.$i; peer=10.9.0.$((3-i)); d=$W/fw$i; mkdir -p $d
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
if [ "$TOOL" = callgrind ]; then
  ip netns exec $A valgrind --tool=callgrind --callgrind-out-file=$OUT $BIN -C $W/fw1/conf >$W/fw1.out 2>$W/valgrind.err & P1=$!
else
  ip netns exec $A $BIN -C $W/fw1/conf >$W/fw1.out 2>&1 & P1=$!
fi
ip netns exec $B $BIN -C $W/fw2/conf >$W/fw2.out 2>&1 & P2=$!
for c in fw1 fw2; do
  for t in $(seq 1 120); do $BIN -C $W/$c/conf -s >/dev/null 2>&1 && break; sleep 0.5; done
  # A daemon that never answered is a failed run, not a profile.
  $BIN -C $W/$c/conf -s >/dev/null 2>&1 || { echo "sender_profile: $c's daemon did not come up" >&2; exit 1; }
done
echo up
if [ "$TOOL" = perf ]; then
  EV=task-clock,context-switches,raw_syscalls:sys_enter
  for c in recvfrom sendto epoll_pwait epoll_ctl timerfd_settime accept4 futex read write; do
    EV=$EV,syscalls:sys_enter_$c
  done
  perf stat ${PERF_OPTS:-} -e $EV -o $W/perf.txt -p $P1 2>/dev/null & S=$!
  sleep 1
elif [ "$TOOL" = strace ]; then
  strace ${STRACE_OPTS:--c} -f -o ${STRACE_OUT:-$W/strace.txt} -p $P1 2>$W/strace.err & S=$!
  sleep 1
fi
python3 - $A $N ${GAP:-0} <<'EOP'
import subprocess,sys
ns,n,gap=sys.argv[1],int(sys.argv[2]),sys.argv[3]
# One exec per flow, in the namespace through one shell; GAP seconds
# apart (a router's steady trickle) when set.
pause=f"; sleep {gap}" if gap != "0" else ""
lines=[f"conntrack -I -p udp -s 10.130.{i//250}.{i%250+1} -d 10.200.0.1 --sport 1024 --dport 53 -t 600 >/dev/null 2>&1{pause}" for i in range(n)]
subprocess.run(["ip","netns","exec",ns,"sh"],input="\n".join(lines)+"\n",text=True,check=True)
EOP
echo created
for t in $(seq 1 240); do
  c=$($BIN -C $W/fw2/conf -s 2>/dev/null | sed -n '/cache external/,/active/p' | grep "current active" | awk '{print $4}')
  [ "$c" = "$N" ] && break; sleep 0.5
done
echo "external $c"
[ "$c" = "$N" ] || { echo "sender_profile: $c of $N entries reached fw-2: no profile" >&2; exit 1; }
# What the receiver sent back (its reports): each datagram is a wake-up of fw-1.
for c in fw1 fw2; do
  $BIN -C $W/$c/conf -s --json 2>/dev/null | python3 -c "import json,sys; s=json.load(sys.stdin)['sync']; print('$c datagrams sent', s['datagrams_sent'], 'received', s['datagrams_recv'])" || true
done
if [ "$TOOL" = strace ] || [ "$TOOL" = perf ]; then
  kill -INT $S; wait $S || true; S=
  # Only one of strace.txt and perf.txt exists: cat's status for the
  # other one made every complete strace or perf run exit 1.
  cat $W/strace.txt $W/perf.txt $W/strace.err 2>/dev/null || true
else
  kill -TERM $P1; wait $P1 || true; P1=
  callgrind_annotate "$OUT" 2>/dev/null | grep 'PROGRAM TOTALS'
fi
