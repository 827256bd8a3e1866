"""Changing the sync daemon of a running firewall: stop it cleanly, or
replace it by the other implementation (ctsyncd ⇄ conntrackd 1.4.7) on the
same configuration file, as an operator upgrading a live pair does.

A swap stops the old daemon (`-k`), points the keepalived notify wrapper
at the new binary, and then runs the notify script's `backup` step, which
is what brings a daemon up on a backup: it finds no daemon answering,
starts the new one, and asks the peer for its state (`-t`, `-n`). The
firewall must therefore be the backup (or out of the VRRP group) when it
is swapped.
"""

import time

from driver import log
from topology import BINARIES, ctl_cmd, file_text, notify_script

STOP_TIMEOUT = 20


def stop(fw):
    """Stops fw's daemon with `-k` and waits (bounded) until its control
    socket no longer answers and its lock file is gone."""
    lock = f"{fw.conf.rsplit('/', 1)[0]}/ctsyncd.lock"
    fw.execute(ctl_cmd(fw, "-k"), timeout=STOP_TIMEOUT)
    fw.wait_until_fails(ctl_cmd(fw, "-s >/dev/null 2>&1"), timeout=STOP_TIMEOUT)
    fw.wait_until_fails(f"test -e {lock}", timeout=STOP_TIMEOUT)


def log_lines(lab, fw):
    """How many lines fw's daemon log has now (to read only what follows)."""
    return len(file_text(f"{lab.dir}/{fw.name}/ctsyncd.log").splitlines())


def log_since(lab, fw, lines):
    """fw's daemon log after its first `lines` lines."""
    return "\n".join(file_text(f"{lab.dir}/{fw.name}/ctsyncd.log").splitlines()[lines:])


def swap(lab, fw, daemon):
    """Replaces fw's daemon by `daemon` (ctsyncd or conntrackd) on the same
    configuration file and brings it up through the notify script's backup
    step. Returns the log line count before the new daemon's first line."""
    assert daemon in BINARIES, daemon
    t0 = time.monotonic()
    old = getattr(fw, "daemon", "ctsyncd")
    stop(fw)
    lines = log_lines(lab, fw)
    fw.daemon = daemon
    notify = notify_script(lab, fw)
    fw.succeed(f"{notify} backup", timeout=60)
    fw.wait_until_succeeds(ctl_cmd(fw, "-s >/dev/null"), timeout=20)
    log(f"{fw.name}: {old} replaced by {daemon} in {time.monotonic() - t0:.2f}s")
    return lines
