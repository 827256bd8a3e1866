#!/usr/bin/env bash
# Router builds: cross-compiles ctsyncd and runs its tests under qemu-user.
#
#   .ci/cross.sh deps  TARGET   install what TARGET needs (idempotent, root)
#   .ci/cross.sh build TARGET   the `small` binary: target/cross/TARGET/small/ctsyncd
#   .ci/cross.sh test  TARGET   lib, config, kernel-fixture and channel tests
#                               and the smol timer check under qemu-user,
#                               then the smoke test of the `small` binary
#   .ci/cross.sh smoke TARGET   the binary under qemu: --check-config and a
#                               smol timer (examples/timer_check.rs)
#   .ci/cross.sh ci             the tests (not the `small` build) for one
#                               big-endian 32-bit MIPS target and one ARM
#                               target (`make cross-ci`)
#   .ci/cross.sh ci-start ID OWNER   what `make test` runs after its builds:
#                               `ci` in the background at idle priority,
#                               stopped if the process OWNER (make) ends first
#   .ci/cross.sh ci-wait ID     what `make test` runs last: waits for that
#                               run and prints its output
#
# Only Debian and registry packages: Debian's Rust 1.96 (rustc-web,
# cargo-web, rust-web-src) builds std for the target (-Zbuild-std, allowed
# on a stable compiler by RUSTC_BOOTSTRAP=1), since rustup has no std for
# these targets here and must not download one. glibc targets link with
# Debian's gcc cross toolchains; musl targets link with zig (PyPI ziglang)
# through cargo-zigbuild (crates.io), both installed under target/cross/ so
# nothing outside the clone is cached.
set -euo pipefail
SELF=$(realpath "$0")
cd "$(dirname "$0")/.."

CROSS=target/cross
# Debian's toolchain, never rustup's proxies on PATH.
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
CARGO=/usr/bin/cargo
ZIGBUILD_VERSION=0.24.1
# The sizes in the README were measured with this zig (it links musl in).
ZIG_VERSION=0.17.1
# The `small` binary: std rebuilt for size, and panics that abort at once
# (no unwinding, no message formatting): Debian's 1.96 offers both only
# unstably, hence flags here rather than in Cargo.toml, which stable
# x86_64 builds also read.
SMALL=(-Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size
	-Zpanic-immediate-abort --config 'profile.small.panic="immediate-abort"'
	--profile small)

usage() {
	# The header comment, up to the usage's end.
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" | sed -n '1,/^$/p'
	exit 2
}

# Per target: how it links (gcc triple or zig) and which qemu runs it.
target_info() {
	gnu="" zig=0 pdr=0
	case $1 in
	aarch64-unknown-linux-musl) zig=1 qemu=qemu-aarch64-static ;;
	aarch64-unknown-linux-gnu) gnu=aarch64-linux-gnu deb=arm64 qemu=qemu-aarch64-static ;;
	armv7-unknown-linux-gnueabihf) gnu=arm-linux-gnueabihf deb=armhf qemu=qemu-arm-static ;;
	armv7-unknown-linux-musleabihf) zig=1 qemu=qemu-arm-static ;;
	mips-unknown-linux-gnu) gnu=mips-linux-gnu deb=mips qemu=qemu-mips-static ;;
	mipsel-unknown-linux-gnu) gnu=mipsel-linux-gnu deb=mipsel qemu=qemu-mipsel-static ;;
	mips-unknown-linux-musl) zig=1 pdr=1 qemu=qemu-mips-static ;;
	mipsel-unknown-linux-musl) zig=1 pdr=1 qemu=qemu-mipsel-static ;;
	*)
		echo "cross: unsupported target '$1' (see README, Router builds)" >&2
		exit 2
		;;
	esac
	# CARGO_TARGET_<TRIPLE>_… variable prefix.
	var=CARGO_TARGET_$(echo "$1" | tr 'a-z-' 'A-Z_')
}

deps() {
	target_info "$1"
	local pkgs=(rustc-web cargo-web rust-web-src qemu-user-static)
	[ -n "$gnu" ] && pkgs+=("gcc-$gnu" "libc6-dev-$deb-cross")
	# objcopy for the MIPS `small` binary (see build; reads both byte orders).
	[ "$pdr" = 1 ] && pkgs+=(binutils-mips-linux-gnu)
	# pip only installs zig under target/cross (--target: not into the
	# system's Python).
	[ "$zig" = 1 ] && pkgs+=(python3-pip)
	local missing=()
	for p in "${pkgs[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		if [ "$(id -u)" != 0 ]; then
			echo "cross: missing Debian packages (install as root): ${missing[*]}" >&2
			exit 1
		fi
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
	if [ "$zig" = 1 ]; then
		[ -x $CROSS/py/ziglang/zig ] || python3 -m pip install -q --disable-pip-version-check --target $CROSS/py ziglang==$ZIG_VERSION
		[ -x $CROSS/tools/bin/cargo-zigbuild ] ||
			$CARGO install -q --locked --root $CROSS/tools cargo-zigbuild@$ZIGBUILD_VERSION
	fi
}

# Exports the linker, runner and flags for target $1.
setup() {
	target_info "$1"
	export "${var}_RUNNER=$qemu"
	local flags=()
	if [ -n "$gnu" ]; then
		export "${var}_LINKER=$gnu-gcc"
		# The target's ld.so and libc for qemu-user.
		export QEMU_LD_PREFIX=/usr/$gnu
		build=($CARGO build)
		test=($CARGO test)
	else
		export PATH=$PWD/$CROSS/tools/bin:$PWD/$CROSS/py/ziglang:$PATH
		# Static: the musl MIPS targets default to dynamic linking (for
		# OpenWrt's shared musl).
		# zig supplies musl's crt objects and libc: rustc has no
		# self-contained musl for these targets in Debian's sysroot.
		flags+=(-Ctarget-feature=+crt-static -Clink-self-contained=no)
		case $1 in
		mips-unknown-linux-musl | mipsel-unknown-linux-musl)
			# rustix's libc backend must convert its time structs into
			# the libc crate's instead of casting pointers, or timers
			# never fire: docs/notes/rustix-mips-musl-timerfd.md.
			flags+=(--cfg=fix_y2038)
			;;
		esac
		# cargo-zigbuild runs the cargo named by $CARGO: Debian's.
		export CARGO
		build=(cargo-zigbuild zigbuild)
		test=(cargo-zigbuild test)
	fi
	export "${var}_RUSTFLAGS=${flags[*]}"
}

# Runs "$@" with the `small` build's extra flags: no file:line in panic
# locations (an immediate-abort panic prints nothing anyway). On the MIPS
# musl targets (static, not PIE) also code that is not position-independent
# (MIPS PIC code loads every call and address through the GOT: .text is
# 13 % smaller without it) and no unwind tables (.eh_frame), which nothing
# reads once panics abort at once and no backtrace is printed.
small_env() {
	local rf=${var}_RUSTFLAGS extra=-Zlocation-detail=none
	[ "$pdr" = 1 ] && extra+=" -Crelocation-model=static -Cforce-unwind-tables=no"
	env "$rf=${!rf} $extra" "$@"
}

build() {
	setup "$1"
	local t0=$SECONDS
	small_env nice -n 10 "${build[@]}" -q --target "$1" "${SMALL[@]}" --bin ctsyncd --target-dir $CROSS
	local bin=$CROSS/$1/small/ctsyncd
	# LLVM gives every MIPS function a .pdr record (procedure descriptor,
	# for old debuggers; nothing at run time reads it): ~14 % of the file,
	# and the linker's strip keeps it (it is not debug info).
	[ "$pdr" = 1 ] && mips-linux-gnu-objcopy --remove-section=.pdr "$bin"
	echo "cross: $bin: $(stat -c %s "$bin") bytes stripped, built in $((SECONDS - t0)) s"
}

# Tests qemu-user cannot run, with the reason; skipped by name and said so.
QEMU_SKIPS=(
	"multicast_ipv4_and_ipv6|qemu-user does not translate IP_MULTICAST_IF/IPV6 multicast membership"
	"a_multicast_link_whose_interface_is_created_again_is_opened_again|qemu-user does not translate IP_MULTICAST_IF: run natively (its UDP twin runs on the target)"
	"an_overrun_whose_buffer_cannot_grow_is_still_an_overrun|qemu-user opens no NETLINK_NETFILTER socket (it translates only a few netlink families): run natively"
	"a_flush_deletes_the_expectations_of_masters_in_zones|qemu-user opens no NETLINK_NETFILTER socket (it translates only a few netlink families): run natively"
	"an_invalid_update_leaves_the_kernels_entry|qemu-user opens no NETLINK_NETFILTER socket (it translates only a few netlink families): run natively"
	"past_the_window_|2^18 messages numbered through the conntrackd-protocol engine, pure sequence arithmetic (under five minutes each under emulation in run 121, measured with --report-time): run natively; the same ACK and NACK checks within the window run on the target"
	"forged_sessions_are_challenged_a_few_times_a_second|simulated seconds of forged sessions, pure computation (179 s under emulation in run 121, --report-time): run natively"
	"forged_challenges_are_answered_a_few_times_a_second|simulated seconds of forged challenges, pure computation (178 s under emulation): run natively"
	"a_lossy_handshake_does_not_hold_back_the_first_burst|seeded lossy-link simulations, pure computation (152 s under emulation): run natively"
	"unacked_than_the_window|200 000 and 270 000 messages lost during an outage, pure computation (146 s and more each under emulation): run natively"
	"hundred_thousand_entries_with_fifty_differences_converge|100 000-entry anti-entropy rounds, pure computation: minutes under emulation, run natively"
	"a_restart_during_a_storm_is_repaired_in_one_period|100 000-entry anti-entropy round, pure computation: minutes under emulation, run natively"
	"digest_at_rest_for_100k_entries_is_under_one_percent|100 000-entry digest, pure computation: run natively"
	"a_large_dump_is_answered_in_parts_between_other_work|10 000-entry dump rendering, pure computation: run natively"
	"a_100_000_address_filter_parses_quickly_and_filters_the_same|a wall-clock bound on parsing 110 000 addresses, for native speed: run natively"
	"twenty_percent_loss_each_way_converges_fast_for_every_seed|200 seeded lossy-link simulations, pure computation (9 s natively, about 6 minutes under emulation): run natively"
	"a_slow_link_converges_too|200 more seeded lossy-link simulations, pure computation (8 s natively; with it the qemu runs took 11 to 13 minutes in CI): run natively; a_lossless_link_has_no_tail_to_recover runs the same simulation on the target"
	"hundred_thousand_entries_over_five_percent_loss_both_ways|100 000-entry conntrackd-protocol simulation, pure computation (5 s natively in a debug build, the longest test under emulation): run natively; the protocol's encoding is tested on the target by the smaller wire::ctd tests"
)

# The test binaries (lib, config, kernel fixtures, channel) and
# examples/timer_check for every target given, in one cargo invocation per
# step, so that both cores stay busy (the crate graph of one target is
# mostly serial) and the host side (build scripts, proc macros) is built
# once. All targets given must link the same way (gcc or zig). Leaves the
# test executables' paths in $CROSS/tests-TARGET.txt.
test_build() {
	local t targets=()
	for t in "$@"; do
		setup "$t"
		targets+=(--target "$t")
	done
	# A one-off build: no incremental caches, no debug info (panic
	# messages still name file and line), for CI time.
	export CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=false
	local t0=$SECONDS json=$CROSS/tests.json
	mkdir -p $CROSS
	nice -n 10 "${test[@]}" -q "${targets[@]}" -Zbuild-std --target-dir $CROSS --no-run \
		--lib --test config --test kernel_fixtures --test channel \
		--message-format=json-render-diagnostics >$json
	# The smol timer, in the test build's profile. Not in the invocation
	# above: `cargo test --example` would build it as a test harness,
	# without its main. `test` in the std crates, as a test build has it:
	# otherwise std hashes differently and every dependency is rebuilt.
	nice -n 10 "${build[@]}" -q "${targets[@]}" -Zbuild-std=std,test --target-dir $CROSS \
		--example timer_check
	for t in "$@"; do
		grep -o '"executable":"[^"]*"' $json | cut -d'"' -f4 | grep "/$t/debug/deps/" \
			>$CROSS/tests-$t.txt
	done
	echo "cross: test binaries for $* built in $((SECONDS - t0)) s"
}

# Runs target $1's test binaries (built by test_build) and the smol timer
# under qemu-user, as `cargo test --no-fail-fast` would, and says what it
# skips.
test_run() {
	setup "$1"
	local t0=$SECONDS skip=() s exe failed=0
	for s in "${QEMU_SKIPS[@]}"; do
		echo "SKIPPED under qemu-user: ${s%%|*} (${s#*|})"
		skip+=(--skip "${s%%|*}")
	done
	echo "SKIPPED under qemu-user: tests/kernel.rs, tests/daemon.rs (ctnetlink: qemu-user does not translate NETLINK_NETFILTER messages)"
	echo "SKIPPED under qemu-user: tests/netsim.rs (pure simulation, no target-specific code; left out for CI time)"
	if [ "$(id -u)" != 0 ]; then
		echo "SKIPPED: tests/channel.rs needs root for its network namespaces"
	fi
	while read -r exe; do
		echo "     Running $exe under $qemu"
		$qemu "$exe" -q "${skip[@]}" || failed=1
	done <$CROSS/tests-$1.txt
	$qemu $CROSS/$1/debug/examples/timer_check || failed=1
	if [ $failed != 0 ]; then
		echo "cross: $1: tests FAILED under $qemu ($((SECONDS - t0)) s)"
		return 1
	fi
	echo "cross: $1: tests passed under $qemu in $((SECONDS - t0)) s"
}

test_() {
	test_build "$1"
	test_run "$1"
}

# The CI targets' qemu runs side by side (each on its own output file,
# printed whole once both are done), after one build of both.
ci() {
	local targets=(mips-unknown-linux-gnu armv7-unknown-linux-gnueabihf) t pids=() failed=0 i
	for t in "${targets[@]}"; do
		deps $t
	done
	test_build "${targets[@]}"
	for t in "${targets[@]}"; do
		(test_run $t >$CROSS/run-$t.log 2>&1) &
		pids+=($!)
	done
	for i in "${!targets[@]}"; do
		wait "${pids[$i]}" || failed=1
		cat $CROSS/run-${targets[$i]}.log
	done
	return $failed
}

# `make test` runs `ci` beside its native tests rather than between them:
# the cross build and the qemu runs took 8 to 11 of CI's 19 to 24 minutes,
# most of it while the native tests (which mostly wait: on daemons, timers,
# network namespaces) and the lab left a core idle. Not beside the native
# builds: on this machine's two cores an idle-policy build still slowed
# them by about half (CI run 22: 17 min in all). At SCHED_IDLE it runs
# only on CPU time they leave, so their timing-sensitive tests are not
# delayed by it (the kernel preempts an idle-policy task at once). ID keeps
# one make run's job apart from an aborted earlier one's. OWNER is make:
# when a native step fails, make ends and the job is stopped with it.
ci_start() {
	local dir=$CROSS/bg-$1 owner=$2 job
	rm -rf "$dir"
	mkdir -p "$dir"
	(
		# Its own session: stopped as a group (cargo, rustc, qemu).
		setsid chrt --idle 0 "$SELF" ci >"$dir/log" 2>&1 </dev/null &
		job=$!
		while kill -0 $job 2>/dev/null; do
			if ! kill -0 "$owner" 2>/dev/null; then
				kill -- -$job 2>/dev/null || true
				echo "cross: stopped, make (pid $owner) ended first" >>"$dir/log"
				break
			fi
			sleep 2
		done
		wait $job && rc=0 || rc=$?
		echo $rc >"$dir/rc"
	) </dev/null >/dev/null 2>&1 &
	echo $! >"$dir/pid"
	echo "cross: router-target tests started in the background at idle priority (output at the end; $dir/log)"
}

ci_wait() {
	local dir=$CROSS/bg-$1 t0=$SECONDS rc
	if [ ! -d "$dir" ]; then
		echo "cross: no background run $1: running the router-target tests now"
		ci
		return
	fi
	# Bounded: CI's limit is 90 minutes. The watcher writes rc as it
	# ends; one that is gone without it was killed.
	while [ ! -f "$dir/rc" ] && [ $((SECONDS - t0)) -lt 3600 ] &&
		kill -0 "$(cat "$dir/pid")" 2>/dev/null; do
		sleep 2
	done
	cat "$dir/log"
	if [ ! -f "$dir/rc" ]; then
		echo "cross: the background run ended without a status (killed?) or did not end within an hour"
		return 1
	fi
	rc=$(cat "$dir/rc")
	echo "cross: the router-target tests ran in the background; waited $((SECONDS - t0)) s for them at the end"
	rm -rf "$dir"
	return "$rc"
}

smoke() {
	setup "$1"
	local bin=$CROSS/$1/small/ctsyncd
	[ -x "$bin" ] || build "$1"
	small_env nice -n 10 "${build[@]}" -q --target "$1" "${SMALL[@]}" --example timer_check --target-dir $CROSS
	$qemu "$bin" --check-config -C etc/ctsyncd.conf
	$qemu $CROSS/$1/small/examples/timer_check
	echo "cross: $1: binary starts, parses etc/ctsyncd.conf and runs its timers under $qemu"
}

main() {
	local cmd=${1:-}
	case $cmd in
	deps | build | smoke)
		[ $# = 2 ] || usage
		[ "$cmd" = deps ] || deps "$2"
		$cmd "$2"
		;;
	test)
		[ $# = 2 ] || usage
		deps "$2"
		test_ "$2"
		smoke "$2"
		;;
	ci) ci ;;
	ci-start)
		[ $# = 3 ] || usage
		ci_start "$2" "$3"
		;;
	ci-wait)
		[ $# = 2 ] || usage
		ci_wait "$2"
		;;
	*) usage ;;
	esac
}

# On one line: bash has read the whole file before anything runs, so the
# script can be edited while a long run is going.
main "$@"; exit
