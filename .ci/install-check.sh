#!/bin/sh
# `make install` into temporary DESTDIRs and check what it installed: the
# GNU layout under PREFIX, the modes, the man pages rendering with `man -l`,
# and, with CONNTRACKD_LINK=1, a `conntrackd` link that behaves as
# conntrackd (its usage, default config path and messages). Needs the
# release build (make install-check builds it). No root needed.
set -eu
cd "$(dirname "$0")/.."
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() {
	echo "install-check: $*" >&2
	exit 1
}

make --no-print-directory -s install DESTDIR="$TMP/plain" PREFIX=/usr >/dev/null
make --no-print-directory -s install DESTDIR="$TMP/link" PREFIX=/opt/x CONNTRACKD_LINK=1 >/dev/null

P=$TMP/plain/usr
for f in sbin/ctsyncd share/man/man8/ctsyncd.8 share/man/man5/ctsyncd.conf.5 \
	share/doc/ctsyncd/examples/ctsyncd.conf share/doc/ctsyncd/examples/ftfw-multicast.conf \
	share/doc/ctsyncd/examples/notrack-tcp.conf share/doc/ctsyncd/examples/alarm.conf \
	share/doc/ctsyncd/examples/keepalived/keepalived.conf \
	share/doc/ctsyncd/examples/keepalived/primary-backup.sh \
	share/doc/ctsyncd/README.md; do
	[ -f "$P/$f" ] || fail "missing $f"
done
[ -x "$P/sbin/ctsyncd" ] || fail "sbin/ctsyncd is not executable"
[ -x "$P/share/doc/ctsyncd/examples/keepalived/primary-backup.sh" ] || fail "primary-backup.sh lost its x bit"
[ "$(stat -c %a "$P/share/man/man8/ctsyncd.8")" = 644 ] || fail "ctsyncd.8 is not 0644"
[ ! -e "$P/sbin/conntrackd" ] || fail "conntrackd link installed without CONNTRACKD_LINK=1"
# Every file of etc/ is an example.
n_etc=$(find etc -type f | wc -l)
n_ex=$(find "$P/share/doc/ctsyncd/examples" -type f | wc -l)
[ "$n_etc" = "$n_ex" ] || fail "$n_ex examples installed, etc/ has $n_etc files"
for m in "$P/share/man/man8/ctsyncd.8" "$P/share/man/man5/ctsyncd.conf.5"; do
	out=$(MANWIDTH=80 man --warnings=all -l "$m" 2>&1 >/dev/null) || fail "man -l $m failed"
	[ -z "$out" ] || fail "man -l $m: $out"
done
# The installed examples pass the strictest check.
for c in "$P"/share/doc/ctsyncd/examples/*.conf; do
	"$P/sbin/ctsyncd" -C "$c" --check-config --strict >/dev/null || fail "$c fails --check-config --strict"
done
echo "install-check: PREFIX=/usr: binary, 2 man pages, $n_ex examples; no conntrackd link"

L=$TMP/link/opt/x
[ -L "$L/sbin/conntrackd" ] || fail "CONNTRACKD_LINK=1 did not install sbin/conntrackd"
[ "$(readlink "$L/sbin/conntrackd")" = ctsyncd ] || fail "sbin/conntrackd does not point at ctsyncd"
[ "$(readlink "$L/share/man/man8/conntrackd.8")" = ctsyncd.8 ] || fail "no conntrackd.8 link"
[ "$(readlink "$L/share/man/man5/conntrackd.conf.5")" = ctsyncd.conf.5 ] || fail "no conntrackd.conf.5 link"
usage=$("$L/sbin/conntrackd" -h)
case "$usage" in
*"Usage: conntrackd [commands]"*"(default /etc/conntrackd/conntrackd.conf)"*) ;;
*) fail "conntrackd -h: $usage" ;;
esac
conf=$TMP/t.conf
printf 'General {\n\tLockFile %s/lock\n\tUNIX { Path %s/ctl }\n}\n' "$TMP" "$TMP" >"$conf"
if err=$("$L/sbin/conntrackd" -C "$conf" -s 2>&1); then
	fail "conntrackd -s without a daemon exited 0"
fi
case "$err" in
*"can't connect: is conntrackd running? appropriate permissions?"*) ;;
*) fail "conntrackd -s: $err" ;;
esac
if err=$("$L/sbin/ctsyncd" -C "$conf" -s 2>&1); then
	fail "ctsyncd -s without a daemon exited 0"
fi
case "$err" in
*"is ctsyncd running?"*) ;;
*) fail "ctsyncd -s: $err" ;;
esac
echo "install-check: CONNTRACKD_LINK=1: conntrackd -> ctsyncd (and its man pages) behaves as conntrackd"

# uninstall removes what install put there, and only that.
make --no-print-directory -s uninstall DESTDIR="$TMP/link" PREFIX=/opt/x >/dev/null
left=$(find "$TMP/link" ! -type d)
[ -z "$left" ] || fail "uninstall left: $left"
echo "install-check: uninstall removes everything"
