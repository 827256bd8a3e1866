"""keepalived drives ctsyncd through the notify script conntrack-tools
ships (Debian: /usr/share/doc/conntrackd/examples/sync/primary-backup.sh),
unchanged but for its three paths: the binary, the configuration and the
lock file. The script is copied from the installed package at run time
(it is GPL: never into this repository).

The FTP passive session fails over when fw-1 crashes and fails back when
fw-1 returns (its stale lock removed and its daemon started by the
script's backup branch). The script logs "failed to invoke" through
`logger` whenever a command exits 1: a `logger` on the script's PATH
records every line, and none may say so.
"""

import gzip
import os
import subprocess
import sys
import time

from driver import log, subtest
from topology import HOLDS_VIPS, build, dump_logs, file_text, ftp_server, keepalived, start_daemon

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STOCK = "/usr/share/doc/conntrackd/examples/sync/primary-backup.sh"


def stock_script_text():
    """The packaged script. The lab reaches no network: where conntrackd
    is not installed the scenario stops and says so (`make ci-deps`
    installs it) instead of running apt-get itself."""
    if not os.path.exists(STOCK) and not os.path.exists(STOCK + ".gz"):
        sys.exit(f"primary_backup_stock: {STOCK} is missing: install conntrackd (`make ci-deps`)")
    if os.path.exists(STOCK):
        with open(STOCK) as f:
            return f.read()
    with gzip.open(STOCK + ".gz", "rt") as f:
        return f.read()


def install_script(lab, fw, conf=None, tag=""):
    """fw's copy of the stock script with its paths changed (to fw's
    daemon, or the one `conf` names, whose files start with `tag`), and a
    wrapper that puts the recording `logger` first on its PATH (it writes
    `{tag}syslog.log`). Returns the wrapper for keepalived."""
    d = f"{lab.dir}/{fw.name}"
    conf = conf or fw.conf
    text = stock_script_text()
    binary = subprocess.run(["sh", "-c", "command -v ctsyncd"], env=lab.env, capture_output=True,
                            text=True, check=True).stdout.strip()
    for var, value in (("CONNTRACKD_BIN", binary), ("CONNTRACKD_LOCK", f"{d}/{tag}ctsyncd.lock"),
                       ("CONNTRACKD_CONFIG", conf)):
        lines = [line for line in text.splitlines() if line.startswith(f"{var}=")]
        assert len(lines) == 1, (var, lines)
        text = text.replace(lines[0], f"{var}={value}")
    script = f"{d}/{tag}primary-backup.sh"
    with open(script, "w") as f:
        f.write(text)
    os.chmod(script, 0o755)
    shim = f"{d}/{tag}bin"
    os.makedirs(shim, exist_ok=True)
    with open(f"{shim}/logger", "w") as f:
        f.write(f'#!/bin/sh\necho "$(date +%T.%N) $*" >> {d}/{tag}syslog.log\n')
    os.chmod(f"{shim}/logger", 0o755)
    wrapper = f"{d}/{tag}stock-notify.sh"
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\nPATH={shim}:$PATH exec {script} "$1"\n')
    os.chmod(wrapper, 0o755)
    return wrapper


def main():
    lab, client, fw1, fw2, server = build()
    try:
        with subtest("keepalived with the stock script; fw-1 primary; PASV through it"):
            start_daemon(lab, fw1)
            start_daemon(lab, fw2)
            scripts = {fw.name: install_script(lab, fw) for fw in (fw1, fw2)}
            keepalived(lab, fw1, 150, script=scripts["fw1"])
            keepalived(lab, fw2, 100, script=scripts["fw2"])
            fw1.wait_until_succeeds(HOLDS_VIPS, timeout=30)
            fw1.wait_until_succeeds(f"grep -q 'sending bulk update' {lab.dir}/fw1/ctsyncd.log", timeout=20)
            ftp_server(lab, server)
            port_file, go = f"{lab.dir}/pasv", f"{lab.dir}/go"
            client.spawn(f"/usr/bin/python3 {HERE}/ftp_client.py 192.168.1.2 {port_file} {go} 150 2",
                         log_file=f"{lab.dir}/ftp_client.log")
            client.wait_until_succeeds(f"test -s {port_file}", timeout=20)
            port = file_text(port_file)
            fw2.wait_until_succeeds(f"ctsyncd -C {fw2.conf} -e expect | grep -q 'dport={port} '", timeout=10)
        with subtest("fw-1 crashes; the script's primary step on fw-2; LIST works"):
            t0 = time.monotonic()
            fw1.crash()
            fw2.wait_until_succeeds(HOLDS_VIPS, timeout=30)
            # The script's last step is -B, logged after the commit's lines
            # (fw-2 logged a bulk update at start-up too, for fw-1's resync
            # request: that one must not count).
            script_done = ("awk '/committing all external caches/{c=1} c && /sending bulk update/{f=1} END{exit !f}' "
                           f"{lab.dir}/fw2/ctsyncd.log")
            fw2.wait_until_succeeds(script_done, timeout=20)
            log(f"fw-2 primary, its script done {time.monotonic() - t0:.2f}s after the crash")
            assert "Committed 1 new expectations" in file_text(f"{lab.dir}/fw2/ctsyncd.log")
            open(go, "w").close()
            client.wait_until_succeeds(f"test -s {port_file}.done", timeout=30)
            verdict = file_text(f"{port_file}.done")
            assert verdict.startswith("LISTED") and "hello.txt" in verdict, verdict
            log(f"through fw-2: {verdict}")
        with subtest("fw-1 returns: the script removes the stale lock, starts the daemon, fails back"):
            t0 = time.monotonic()
            fw1.unblock()
            keepalived(lab, fw1, 150, script=scripts["fw1"])
            fw1.wait_until_succeeds(f"ctsyncd -C {fw1.conf} -s >/dev/null", timeout=20)
            fw1.wait_until_succeeds(HOLDS_VIPS, timeout=40)
            log(f"VIPs back on fw-1 {time.monotonic() - t0:.2f}s after its return")
            assert "was not cleanly stopped" in file_text(f"{lab.dir}/fw1/syslog.log")
            open(f"{go}2", "w").close()
            client.wait_until_succeeds(f"test -s {port_file}.done2", timeout=30)
            verdict = file_text(f"{port_file}.done2")
            assert verdict.startswith("LISTED") and "hello.txt" in verdict, verdict
            log(f"through fw-1 again: {verdict}")
        with subtest("no command made the script log 'failed to invoke'"):
            # fw-1's script ran backup, primary, backup (after its return),
            # primary; fw-2's backup, primary, backup.
            time.sleep(2)
            steps = {}
            for fw in (fw1, fw2):
                notify = file_text(f"{lab.dir}/{fw.name}/notify.log")
                syslog = file_text(f"{lab.dir}/{fw.name}/syslog.log")
                steps[fw.name] = [l.split()[2] for l in notify.splitlines() if " notify " in l]
                log(f"{fw.name} notify: {' '.join(steps[fw.name])}")
                assert "failed to invoke" not in syslog, f"{fw.name}:\n{syslog}"
                assert "cannot launch" not in syslog, f"{fw.name}:\n{syslog}"
            # fw-2 went back to backup after fw-1's return (its first
            # backup step, at start-up, does not count).
            assert steps["fw2"][-1:] == ["backup"] and steps["fw2"].count("backup") >= 2, steps["fw2"]
        with subtest("a command the daemon refuses is not 'failed to invoke' (-R without internal cache)"):
            # A second daemon on fw-2, NOTRACK + DisableInternalCache, where
            # -R is not supported: conntrackd answers nothing and exits 0;
            # ctsyncd says why, and must not exit 1.
            d = f"{lab.dir}/fw2"
            text = open(fw2.conf).read()
            for old, new in (("Mode FTFW {  }", "Mode NOTRACK { DisableInternalCache On }"),
                             ("Port 3780", "Port 3790"), (f"{d}/ctsyncd.", f"{d}/bypass-ctsyncd.")):
                assert old in text, (old, text)
                text = text.replace(old, new)
            conf = f"{d}/bypass.conf"
            with open(conf, "w") as f:
                f.write(text)
            fw2.succeed(f"ctsyncd -C {conf} -d")
            rc, out = fw2.execute(f"ctsyncd -C {conf} -R")
            assert rc == 2 and "not supported" in out, (rc, out)
            wrapper = install_script(lab, fw2, conf=conf, tag="bypass-")
            fw2.succeed(f"{wrapper} primary")
            syslog = file_text(f"{d}/bypass-syslog.log")
            assert "failed to invoke" not in syslog, syslog
            fw2.succeed(f"ctsyncd -C {conf} -k")
    except BaseException:
        dump_logs(lab, (fw1, fw2))
        for fw in (fw1, fw2):
            print(f"----- {fw.name} syslog.log -----\n{file_text(f'{lab.dir}/{fw.name}/syslog.log')}")
        raise
    finally:
        lab.cleanup()


if __name__ == "__main__":
    main()
