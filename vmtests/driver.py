"""A network-namespace implementation of the NixOS test-driver API subset
that the ctsyncd scenarios use.

Every machine is a network namespace; LAN segments are bridges inside a
"switch" namespace; everything is created by this driver and removed on
exit, failure or interrupt. Names carry a per-run prefix so two runs never
collide. Nothing is configured in the root namespace.

API (named after nixpkgs' test driver, with this lab's own defaults: 60 s
timeouts, 0.2 s polling, stderr in the output): start_all(), subtest(name),
machine.succeed/fail/execute/wait_until_succeeds/wait_until_fails,
machine.block()/unblock() (every link down/up), machine.crash() (kill every
process in the namespace), plus machine.spawn() for background services.
Scripts shared with the NixOS VM test use nixos_driver.py instead, which
follows nixpkgs' signatures and semantics exactly.
"""

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time

T0 = time.monotonic()
LOG = []


def log(msg):
    line = f"[{time.monotonic() - T0:7.2f}s] {msg}"
    LOG.append(line)
    print(line, flush=True)


def sh(cmd, timeout=60, check=True):
    """Runs a command in the root namespace (only ip/bridge plumbing)."""
    p = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{cmd}: rc={p.returncode}\n{p.stdout}{p.stderr}")
    return p.stdout


class Machine:
    def __init__(self, lab, name):
        self.lab = lab
        self.name = name
        self.ns = f"{lab.prefix}-{name}"
        self.links = []
        self.procs = []

    def __repr__(self):
        return self.name

    def execute(self, cmd, timeout=60):
        """Runs `cmd` in the machine; returns (status, output)."""
        try:
            p = subprocess.run(
                ["ip", "netns", "exec", self.ns, "sh", "-c", cmd],
                capture_output=True, text=True, timeout=timeout, env=self.lab.env,
            )
        except subprocess.TimeoutExpired:
            return 124, f"timed out after {timeout}s: {cmd}"
        return p.returncode, p.stdout + p.stderr

    def succeed(self, cmd, timeout=60):
        rc, out = self.execute(cmd, timeout)
        if rc != 0:
            raise AssertionError(f"{self.name}: `{cmd}` failed (rc={rc}):\n{out}")
        return out

    def fail(self, cmd, timeout=60):
        rc, out = self.execute(cmd, timeout)
        if rc == 0:
            raise AssertionError(f"{self.name}: `{cmd}` unexpectedly succeeded:\n{out}")
        return out

    def wait_until_succeeds(self, cmd, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            rc, out = self.execute(cmd, timeout=max(1, min(30, timeout)))
            if rc == 0:
                return out
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: `{cmd}` did not succeed within {timeout}s:\n{out}")
            time.sleep(0.2)

    def wait_until_fails(self, cmd, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            rc, out = self.execute(cmd, timeout=max(1, min(30, timeout)))
            if rc != 0:
                return out
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: `{cmd}` kept succeeding for {timeout}s")
            time.sleep(0.2)

    def spawn(self, cmd, log_file=None):
        """Starts a background process in the machine (killed at cleanup)."""
        out = open(log_file, "ab") if log_file else subprocess.DEVNULL
        p = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "sh", "-c", f"exec {cmd}"],
            stdout=out, stderr=subprocess.STDOUT, env=self.lab.env, start_new_session=True,
        )
        self.procs.append(p)
        return p

    def block(self):
        """Takes every link of the machine down (as VM.block())."""
        for ifname in self.links:
            self.succeed(f"ip link set {ifname} down")

    def unblock(self):
        for ifname in self.links:
            self.succeed(f"ip link set {ifname} up")

    def crash(self):
        """A crashed machine: every process killed and every link down (a
        namespace's kernel would otherwise keep forwarding)."""
        self.kill_all()
        self.block()

    def kill_all(self):
        """Kills every process running in the machine."""
        # Again until none is left: a process forked between the listing
        # and the kill (a notify script, keepalived's children) survives
        # one pass.
        for _ in range(50):
            pids = sh(f"ip netns pids {self.ns}", check=False).split()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.05)
        for p in self.procs:
            with contextlib.suppress(Exception):
                p.wait(timeout=5)


def pid_tag(pid):
    """A process's pid in base 36: at most 5 characters for any pid
    (PID_MAX_LIMIT is 2**22), so the names stay within IFNAMSIZ, and
    distinct for every live process. `pid % 100000` was not: with the
    usual pid_max of 4194304, two runs 100000 pids apart shared the
    prefix, and the second one's failed `ip netns add` and cleanup removed
    the first one's namespaces and killed its daemons."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    tag = ""
    while True:
        pid, r = divmod(pid, 36)
        tag = digits[r] + tag
        if not pid:
            return tag


class Lab:
    """Namespaces, bridges and veth pairs for one run."""

    count = 0

    def __init__(self, names):
        Lab.count += 1
        # "_" after the tag, a character no tag has (run.py finds a killed
        # scenario's namespaces by this prefix).
        self.prefix = f"cts{pid_tag(os.getpid())}_{Lab.count}"
        self.env = dict(os.environ)
        # A new directory each run, kept afterwards for its logs: one named
        # by the pid alone was reused when a pid came round again, and a
        # daemon then refused the stale lock file a crashed run had left.
        self.dir = tempfile.mkdtemp(prefix=f"{self.prefix}.", dir="/tmp")
        os.chmod(self.dir, 0o755)  # as os.makedirs made it: daemons may drop root
        self.switch = f"{self.prefix}-sw"
        self.machines = {n: Machine(self, n) for n in names}
        self.veths = 0
        atexit.register(self.cleanup)
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, self._interrupted)

    def _interrupted(self, signum, _frame):
        self.cleanup()
        sys.exit(128 + signum)

    def start_all(self):
        sh(f"ip netns add {self.switch}")
        sh(f"ip netns exec {self.switch} ip link set lo up")
        for m in self.machines.values():
            sh(f"ip netns add {m.ns}")
            m.succeed("ip link set lo up")
            m.succeed("sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1")
            m.succeed("sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0")

    def lan(self, name, members):
        """A bridge `name` in the switch namespace with one port per member;
        the member's interface is called `ifname`: members = [(m, ifname)]."""
        sh(f"ip netns exec {self.switch} ip link add {name} type bridge")
        sh(f"ip netns exec {self.switch} ip link set {name} up")
        for m, ifname in members:
            self.veths += 1
            port = f"p{self.veths}"
            tmp = f"{self.prefix}v{self.veths}"
            sh(f"ip link add {tmp} netns {m.ns} type veth peer name {port} netns {self.switch}")
            sh(f"ip netns exec {self.switch} ip link set {port} master {name} up")
            m.succeed(f"ip link set {tmp} name {ifname} && ip link set {ifname} up")
            m.links.append(ifname)

    def link(self, a, a_if, b, b_if):
        """A direct veth between two machines."""
        self.veths += 1
        tmp = f"{self.prefix}d{self.veths}"
        sh(f"ip link add {tmp}a netns {a.ns} type veth peer name {tmp}b netns {b.ns}")
        a.succeed(f"ip link set {tmp}a name {a_if} && ip link set {a_if} up")
        b.succeed(f"ip link set {tmp}b name {b_if} && ip link set {b_if} up")
        a.links.append(a_if)
        b.links.append(b_if)

    def cleanup(self):
        for m in self.machines.values():
            for p in m.procs:
                with contextlib.suppress(Exception):
                    os.killpg(p.pid, signal.SIGKILL)
            m.kill_all()
        for ns in [m.ns for m in self.machines.values()] + [self.switch]:
            sh(f"ip netns del {ns}", check=False)
        self.machines = {}


@contextlib.contextmanager
def subtest(name):
    t = time.monotonic()
    log(f"--- {name}")
    try:
        yield
    except BaseException:
        log(f"FAIL {name} ({time.monotonic() - t:.1f}s)")
        raise
    log(f"PASS {name} ({time.monotonic() - t:.1f}s)")
