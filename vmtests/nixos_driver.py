"""The NixOS test-driver API on network namespaces.

A testScript shared with nix/vmtest.nix runs here unchanged: this module
gives it the machine methods it calls with the signatures, defaults and
failure semantics of nixpkgs' driver
(nixos/lib/test-driver/src/test_driver/machine/__init__.py):

- `execute(command, check_return=True, check_output=True, timeout=900)`
  runs `timeout T bash -c "set -euo pipefail; command"` in the machine and
  returns (status, stdout); stderr goes to the machine's console log, as a
  VM's goes to its console.
- `succeed(*commands, timeout=None)` / `fail(...)` raise
  RequestedAssertionFailed on the wrong exit status.
- `wait_until_succeeds(command, timeout=900)`, `wait_until_fails`,
  `wait_for_file`, `wait_for_open_port(port, addr="localhost",
  timeout=900)` (`nc -z addr port`), `wait_for_closed_port` and
  `wait_for_unit(unit, user=None, timeout=900)` retry once a second and
  try a last time after the timeout, as nixpkgs' `retry()` does;
  `wait_for_unit` gives up at once on a failed unit.
- `systemctl`, `start_job`, `stop_job`, `get_unit_property`,
  `get_unit_info`, `require_unit_state`, `crash`, `sleep`.

Owns: NixosMachine (a network namespace plus a private mount namespace
with its own /run, /tmp, /var/log and an overlay on /etc: one VM), Unit (a
stand-in for a systemd service, started at boot in order), retry(),
subtest(), the exceptions. The topology is nixos_lab.py's.

Where a namespace cannot do what a VM does, the method raises
NotInNamespace instead of passing: booting a crashed machine again,
`block()`/`unblock()` (a VM unplugs one NIC, virtio-net-pci.1, whichever
that is), users (`user=`), `systemctl` verbs other than
start/stop/restart/is-active/show/list-jobs, units' Restart= policies.
"""

import contextlib
import os
import re
import select
import shlex
import socket
import subprocess
import threading
import time

from driver import log


class TestScriptError(Exception):
    """As nixpkgs' test_driver.errors.TestScriptError."""


class RequestedAssertionFailed(TestScriptError):
    """As nixpkgs': a requested check (succeed, fail, a wait) failed."""


class NotInNamespace(TestScriptError):
    """A VM can do this and a network namespace cannot: the test fails."""


def retry(fn, timeout_seconds=900):
    """nixpkgs' retry(): fn(False) once a second until it returns True or
    the time is up, then fn(True) a last time."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_seconds:
        if fn(False):
            return
        time.sleep(1)
    elapsed = time.monotonic() - start
    if not fn(True):
        raise RequestedAssertionFailed(f"action timed out after {elapsed:.2f} seconds (timeout={timeout_seconds})")


@contextlib.contextmanager
def subtest(name):
    t = time.monotonic()
    log(f"subtest: {name}")
    try:
        yield
    except BaseException:
        log(f"FAIL {name} ({time.monotonic() - t:.1f}s)")
        raise
    log(f"PASS {name} ({time.monotonic() - t:.1f}s)")


class Unit:
    """A systemd service as far as the shared scripts see one.

    kind: "oneshot" (RemainAfterExit: active once the command exited 0),
    "simple" (active once started) or "notify" (active after READY=1 on
    $NOTIFY_SOCKET). Like systemd, the next boot unit starts only when this
    one's start job is done. `dirs` are created first (RuntimeDirectory=,
    LogsDirectory=). No Restart=: a main process that exits leaves the unit
    inactive (status 0) or failed. `timer`: started that many seconds after
    boot by a timer instead (nixpkgs' keepalived-boot-delay.timer), with no
    job pending until then."""

    def __init__(self, name, command, kind="simple", dirs=(), start_timeout=90, timer=None):
        self.name, self.command, self.kind, self.timer = name, command, kind, timer
        self.dirs, self.start_timeout = dirs, start_timeout
        self.state, self.proc, self.job = "inactive", None, None
        self.ready = threading.Event()

    def refresh(self):
        if self.proc is not None and self.state in ("active", "activating") and self.proc.poll() is not None:
            self.state = "inactive" if self.proc.returncode == 0 else "failed"
            self.job = None
        return self.state


class NixosMachine:
    """One VM: `host` (a driver.Machine: the namespace and its links) plus
    a private mount namespace held by a `sleep` process."""

    def __init__(self, lab, host, units=(), files=()):
        self.lab, self.host, self.name = lab, host, host.name
        self.units = {u.name: u for u in units}
        self.boot_order = [u.name for u in units if u.timer is None]
        self.files = list(files)  # (path, text, mode) written at boot
        self.holder = None
        self.crashed = False
        self.console = os.path.join(lab.dir, f"{self.name}.console")
        self.notify_dir = os.path.join(lab.dir, f"{self.name}.notify")

    def __repr__(self):
        return f"<NixosMachine '{self.name}'>"

    # ===== lifecycle =====

    def start(self):
        """Boots the machine: mount namespace, /etc files, units in order
        (in the background, as a VM boots while the script goes on)."""
        if self.holder is not None:
            return
        if self.crashed:
            raise NotInNamespace(f"{self.name}: the netns driver cannot boot a machine again after crash()")
        lab_dir = self.lab.dir
        setup = f"""set -e
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/.lab /run/.etc/upper /run/.etc/work
mount --bind {lab_dir} /run/.lab
mount -t tmpfs -o mode=1777 tmpfs /tmp
mkdir -p {lab_dir}
mount --bind /run/.lab {lab_dir}
mount -t overlay overlay -o lowerdir=/etc,upperdir=/run/.etc/upper,workdir=/run/.etc/work /etc
mount -t tmpfs -o mode=755 tmpfs /var/log
echo booted
exec sleep 2147483647"""
        with open(self.console, "ab") as console:
            self.holder = subprocess.Popen(
                ["ip", "netns", "exec", self.host.ns, "unshare", "--mount", "--propagation", "private", "sh", "-c",
                 setup],
                stdout=subprocess.PIPE, stderr=console, start_new_session=True,
            )
        self.host.procs.append(self.holder)
        ready, _, _ = select.select([self.holder.stdout], [], [], 20)
        booted = ready and self.holder.stdout.readline().strip() == b"booted"
        self.holder.stdout.close()
        if not booted:
            raise RuntimeError(f"{self.name}: the mount namespace did not come up (see {self.console})")
        log(f"{self.name}: booted (mount namespace held by pid {self.holder.pid})")
        for path, text, mode in self.files:
            self.write_file(path, text, mode)
        os.makedirs(self.notify_dir, exist_ok=True)
        # A VM's boot queues every wanted unit's start job at once.
        for name in self.boot_order:
            self.units[name].job = "start"
        threading.Thread(target=self._boot_units, daemon=True).start()
        for unit in self.units.values():
            if unit.timer is not None:
                t = threading.Timer(unit.timer, self._timer_fired, args=(unit,))
                t.daemon = True
                t.start()

    def _timer_fired(self, unit):
        if not self.crashed:
            self._start_unit(unit, wait=False)

    def _boot_units(self):
        for name in self.boot_order:
            if self.crashed:
                return
            self._start_unit(self.units[name], wait=True)

    def crash(self):
        """As a VM's sudden power failure: every process of the machine
        killed (its mount namespace with them) and, since a namespace's
        kernel would go on forwarding, every link down."""
        if self.holder is None:
            return
        log(f"{self.name}: forced crash")
        self.crashed = True
        self.host.crash()

    def block(self):
        raise NotInNamespace("block(): a VM unplugs one NIC (virtio-net-pci.1); the netns driver does not guess which")

    def unblock(self):
        raise NotInNamespace("unblock(): see block()")

    def is_up(self):
        return self.holder is not None and not self.crashed

    def write_file(self, path, text, mode=0o644):
        """Puts a file into the machine (the netns stand-in for NixOS
        activation writing /etc); not part of the test-driver API."""
        q = shlex.quote(path)
        self._run(f"mkdir -p $(dirname {q}) && cat > {q} && chmod {mode:o} {q}", timeout=10, stdin=text)

    # ===== commands =====

    def _run(self, command, timeout, stdin=None):
        self.start()
        if self.crashed:
            raise NotInNamespace(f"{self.name}: the netns driver cannot boot a machine again after crash()")
        argv = ["nsenter", "--target", str(self.holder.pid), "--mount", "--net", "--"]
        if timeout is not None:
            argv += ["timeout", str(timeout)]
        argv += ["bash", "-c", f"set -euo pipefail; {command}"]
        with open(self.console, "ab") as console:
            p = subprocess.run(argv, input=stdin.encode() if stdin is not None else None,
                               stdin=None if stdin is not None else subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=console, env=self.lab.env)
        return p.returncode, p.stdout.decode(errors="replace")

    def execute(self, command, check_return=True, check_output=True, timeout=900):
        status, out = self._run(command, timeout)
        if not check_output:
            return -2, ""
        if not check_return:
            return -1, out
        return status, out

    def succeed(self, *commands, timeout=None):
        output = ""
        for command in commands:
            status, out = self.execute(command, timeout=timeout)
            if status != 0:
                log(f"{self.name}: output: {out}")
                raise RequestedAssertionFailed(f"{self.name}: command `{command}` failed (exit code {status})")
            output += out
        return output

    def fail(self, *commands, timeout=None):
        output = ""
        for command in commands:
            status, out = self.execute(command, timeout=timeout)
            if status == 0:
                raise RequestedAssertionFailed(f"{self.name}: command `{command}` unexpectedly succeeded")
            output += out
        return output

    def wait_until_succeeds(self, command, timeout=900):
        output = ""

        def check_success(_last_try):
            nonlocal output
            status, output = self.execute(command, timeout=timeout)
            return status == 0

        log(f"{self.name}: waiting for success: {command}")
        retry(check_success, timeout)
        return output

    def wait_until_fails(self, command, timeout=900):
        output = ""

        def check_failure(_last_try):
            nonlocal output
            status, output = self.execute(command, timeout=timeout)
            return status != 0

        log(f"{self.name}: waiting for failure: {command}")
        retry(check_failure, timeout)
        return output

    def sleep(self, secs):
        self.succeed(f"sleep {secs}")

    def wait_for_file(self, filename, timeout=900):
        log(f"{self.name}: waiting for file '{filename}'")
        retry(lambda _: self.execute(f"test -e {filename}")[0] == 0, timeout)

    def wait_for_open_port(self, port, addr="localhost", timeout=900):
        log(f"{self.name}: waiting for TCP port {port} on {addr}")
        retry(lambda _: self.execute(f"nc -z {addr} {port}")[0] == 0, timeout)

    def wait_for_closed_port(self, port, addr="localhost", timeout=900):
        log(f"{self.name}: waiting for TCP port {port} on {addr} to be closed")
        retry(lambda _: self.execute(f"nc -z {addr} {port}")[0] != 0, timeout)

    # ===== units =====

    def _unit(self, name):
        if name not in self.units and not name.endswith(".service") and f"{name}.service" in self.units:
            name = f"{name}.service"
        return self.units.get(name)

    def _start_unit(self, unit, wait):
        if unit.refresh() == "active" or unit.proc is not None and unit.state == "activating":
            return 0
        unit.state, unit.job = "activating", "start"
        unit.ready.clear()
        for d in unit.dirs:
            self._run(f"mkdir -p {d} && chmod 0755 {d}", timeout=10)
        env = dict(self.lab.env)
        listener = None
        if unit.kind == "notify":
            path = os.path.join(self.notify_dir, unit.name)
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            listener.bind(path)
            env["NOTIFY_SOCKET"] = path
        argv = ["nsenter", "--target", str(self.holder.pid), "--mount", "--net", "--", "bash", "-c",
                f"exec {unit.command}"]
        if unit.kind == "oneshot":
            with open(self.console, "ab") as console:
                p = subprocess.Popen(argv, stdout=console, stderr=console, env=env, start_new_session=True)
            try:
                rc = p.wait(timeout=unit.start_timeout)
            except subprocess.TimeoutExpired:
                # TimeoutStartSec: systemd kills it and the unit fails
                # (the exception ended the boot thread: the unit stayed
                # activating, its job pending, and no later unit started).
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, 9)
                p.wait()
                rc = 1
            unit.state, unit.job = ("active" if rc == 0 else "failed"), None
            log(f"{self.name}: {unit.name} {unit.state}")
            return rc
        with open(self.console, "ab") as console:
            unit.proc = subprocess.Popen(argv, stdout=console, stderr=console, env=env, start_new_session=True)
        self.host.procs.append(unit.proc)
        if unit.kind == "simple":
            unit.state, unit.job = "active", None
        else:
            threading.Thread(target=self._await_ready, args=(unit, listener), daemon=True).start()
        if wait:
            unit.ready.wait(unit.start_timeout) if unit.kind == "notify" else None
        return 0 if unit.refresh() in ("active", "activating") else 1

    def _await_ready(self, unit, listener):
        deadline = time.monotonic() + unit.start_timeout
        listener.settimeout(0.5)
        try:
            while time.monotonic() < deadline and unit.proc.poll() is None:
                try:
                    msg = listener.recv(4096).decode(errors="replace")
                except TimeoutError:
                    continue
                if "READY=1" in msg.split("\n"):
                    unit.state, unit.job = "active", None
                    log(f"{self.name}: {unit.name} active (READY=1)")
                    unit.ready.set()
                    return
            if unit.proc.poll() is None:
                # TimeoutStartSec: systemd kills it and the unit fails.
                os.killpg(unit.proc.pid, 9)
            unit.state, unit.job = "failed", None
            log(f"{self.name}: {unit.name} failed (no READY=1)")
            unit.ready.set()
        finally:
            listener.close()

    def _stop_unit(self, unit):
        if unit.proc is not None and unit.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(unit.proc.pid, 15)
            with contextlib.suppress(subprocess.TimeoutExpired):
                unit.proc.wait(timeout=10)
            if unit.proc.poll() is None:
                os.killpg(unit.proc.pid, 9)
        unit.state, unit.job = "inactive", None

    def systemctl(self, q, user=None):
        """The verbs the scripts use, answered from the unit table as
        systemctl would; anything else raises NotInNamespace."""
        if user is not None:
            raise NotInNamespace("systemctl --user: the netns driver has no users")
        self.start()
        words = [w.strip('"') for w in shlex.split(q) if w != "--no-pager"]
        verb, args = (words[0], words[1:]) if words else ("", [])
        if verb == "list-jobs":
            jobs = [u for u in self.units.values() if u.refresh() != "failed" and u.job]
            return 0, "".join(f"{u.name} {u.job} waiting\n" for u in jobs) or "No jobs running.\n"
        names = [a for a in args if not a.startswith("-")]
        if verb in ("start", "stop", "restart", "is-active", "show") and len(names) == 1:
            unit = self._unit(names[0])
            if unit is None and verb != "show":
                return (3 if verb == "is-active" else 5), f"Unit {names[0]} not found.\n"
            if verb == "start":
                return self._start_unit(unit, wait=True), ""
            if verb == "stop":
                self._stop_unit(unit)
                return 0, ""
            if verb == "restart":
                self._stop_unit(unit)
                return self._start_unit(unit, wait=True), ""
            state = unit.refresh() if unit else "inactive"
            if verb == "is-active":
                return (0 if state == "active" else 3), f"{state}\n"
            alive = unit is not None and unit.proc is not None and unit.proc.poll() is None
            props = {"Id": unit.name if unit else names[0], "ActiveState": state,
                     "LoadState": "loaded" if unit else "not-found", "MainPID": str(unit.proc.pid if alive else 0)}
            wanted = [a.split("=", 1)[1] for a in args if a.startswith("--property=")]
            if wanted:
                return 0, "".join(f"{p}={props.get(p, '')}\n" for p in wanted)
            return 0, "".join(f"{k}={v}\n" for k, v in props.items())
        raise NotInNamespace(f"systemctl {q}: not emulated by the netns driver")

    def start_job(self, jobname, user=None):
        return self.systemctl(f"start {jobname}", user)

    def stop_job(self, jobname, user=None):
        return self.systemctl(f"stop {jobname}", user)

    def get_unit_info(self, unit, user=None):
        status, lines = self.systemctl(f'--no-pager show "{unit}"', user)
        if status != 0:
            raise RequestedAssertionFailed(f'retrieving systemctl info for unit "{unit}" failed with exit code {status}')
        return dict(m.groups() for m in re.finditer(r"^([^=\n]+)=(.*)$", lines, re.M))

    def get_unit_property(self, unit, property, user=None):
        status, lines = self.systemctl(f'--no-pager show "{unit}" --property="{property}"', user)
        if status != 0:
            raise RequestedAssertionFailed(f'retrieving systemctl property "{property}" for unit "{unit}" failed')
        m = re.match(r"^([^=]+)=(.*)$", lines.strip())
        assert m is not None and m[1] == property, f"invalid systemctl show output: {lines}"
        return m[2]

    def require_unit_state(self, unit, require_state="active"):
        state = self.get_unit_info(unit)["ActiveState"]
        if state != require_state:
            raise RequestedAssertionFailed(f"Expected unit '{unit}' to to be in state '{require_state}' but it is in state '{state}'")

    def wait_for_unit(self, unit, user=None, timeout=900):
        """nixpkgs' logic: fails at once on "failed", and on "inactive"
        with no job pending; succeeds on "active"."""

        def check_active(_last_try):
            state = self.get_unit_property(unit, "ActiveState", user)
            if state == "failed":
                raise RequestedAssertionFailed(f'unit "{unit}" reached state "{state}"')
            if state == "inactive":
                _, jobs = self.systemctl("list-jobs --full 2>&1", user)
                if "No jobs" in jobs and self.get_unit_info(unit, user)["ActiveState"] == state:
                    raise RequestedAssertionFailed(f'unit "{unit}" is inactive and there are no pending jobs')
            return state == "active"

        log(f"{self.name}: waiting for unit {unit}")
        retry(check_active, timeout)
