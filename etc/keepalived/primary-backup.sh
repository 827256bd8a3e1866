#!/bin/sh
# keepalived notify script for a ctsyncd primary/backup pair.
#
#   primary-backup.sh primary|backup|fault
#
# Called from the vrrp_sync_group's notify_master / notify_backup /
# notify_fault (see keepalived.conf beside this file). The sequence is the
# one conntrackd users know; with ctsyncd every step's exit status is the
# daemon's real answer, so failures are logged for real.
#
# Overridable from the environment:
# The binary: found on PATH, else where packages and `make install` put it.
if [ -z "${CTSYNCD_BIN:-}" ]; then
	for b in "$(command -v ctsyncd 2>/dev/null)" /usr/sbin/ctsyncd /usr/local/sbin/ctsyncd; do
		if [ -n "$b" ] && [ -x "$b" ]; then
			CTSYNCD_BIN=$b
			break
		fi
	done
	CTSYNCD_BIN=${CTSYNCD_BIN:-/usr/sbin/ctsyncd}
fi
CTSYNCD_CONFIG=${CTSYNCD_CONFIG:-/etc/ctsyncd/ctsyncd.conf}
# The lock file: by default the configuration's LockFile, else ctsyncd's
# default (a stale one must be found to be removed after a crash).
CTSYNCD_LOCK=${CTSYNCD_LOCK:-}
# Under a service manager, how to start the daemon, e.g.
# CTSYNCD_START="systemctl start ctsyncd.service" (with Type=notify it
# returns once the daemon answers). The service manager then owns the
# daemon and its lock file, so this script never touches them.
CTSYNCD_START=${CTSYNCD_START:-}
LOGGER=${LOGGER:-logger -t ctsyncd-failover}

ctl() {
	"$CTSYNCD_BIN" -C "$CTSYNCD_CONFIG" "$@" || $LOGGER "ERROR: ctsyncd $* failed"
}

start_daemon() {
	if [ -n "$CTSYNCD_START" ]; then
		$CTSYNCD_START
		return
	fi
	if [ -z "$CTSYNCD_LOCK" ]; then
		CTSYNCD_LOCK=$(sed -n 's/^[[:space:]]*LockFile[[:space:]][[:space:]]*\([^[:space:]#]*\).*/\1/p' "$CTSYNCD_CONFIG" | head -n 1)
		CTSYNCD_LOCK=${CTSYNCD_LOCK:-/var/lock/ctsyncd.lock}
	fi
	if [ -e "$CTSYNCD_LOCK" ]; then
		$LOGGER "WARNING: ctsyncd was not cleanly stopped; removing $CTSYNCD_LOCK"
		rm -f "$CTSYNCD_LOCK"
	fi
	"$CTSYNCD_BIN" -C "$CTSYNCD_CONFIG" -d
}

case "$1" in
primary)
	# Take over: the peer's connections and expectations into our kernel,
	# then start over from what the kernel now holds and announce it.
	ctl -c
	ctl -f
	ctl -R
	ctl -B
	;;
backup)
	# Make sure the daemon runs (a crash leaves a stale lock behind).
	if ! "$CTSYNCD_BIN" -C "$CTSYNCD_CONFIG" -s >/dev/null 2>&1; then
		if ! start_daemon; then
			$LOGGER "ERROR: cannot launch ctsyncd"
			exit 1
		fi
	fi
	# Our kernel entries now belong to the new primary: purge them after
	# PurgeTimeout, and ask the primary for its whole state.
	ctl -t
	ctl -n
	;;
fault)
	ctl -t
	;;
*)
	$LOGGER "ERROR: unknown state transition"
	echo "Usage: primary-backup.sh {primary|backup|fault}" >&2
	exit 1
	;;
esac
exit 0
