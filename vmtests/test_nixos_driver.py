#!/usr/bin/env python3
"""Self-test of the netns driver against nixpkgs' test driver: the same
signatures and defaults, and the same verdicts, on one namespace.

    vmtests/test_nixos_driver.py        (root; `make vmtests` runs it first)

Owns: the expectations read from nixpkgs'
nixos/lib/test-driver/src/test_driver/machine/__init__.py (commit
019697db058b6738eda0cb2cdcc9f5c014c914cb). The headline case is issue 15's
finding 1: `wait_for_open_port(21)` on a server that listens on one
address only must fail here, as it fails on a VM, not wait forever or pass.
"""

import inspect
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from driver import Lab  # noqa: E402
from nixos_driver import NixosMachine, NotInNamespace, RequestedAssertionFailed, Unit  # noqa: E402

# name -> (parameter, default) after `self`, as in nixpkgs.
NIXPKGS_SIGNATURES = {
    "execute": [("command", None), ("check_return", True), ("check_output", True), ("timeout", 900)],
    "succeed": [("commands", None), ("timeout", None)],
    "fail": [("commands", None), ("timeout", None)],
    "wait_until_succeeds": [("command", None), ("timeout", 900)],
    "wait_until_fails": [("command", None), ("timeout", 900)],
    "wait_for_open_port": [("port", None), ("addr", "localhost"), ("timeout", 900)],
    "wait_for_closed_port": [("port", None), ("addr", "localhost"), ("timeout", 900)],
    "wait_for_file": [("filename", None), ("timeout", 900)],
    "wait_for_unit": [("unit", None), ("user", None), ("timeout", 900)],
    "systemctl": [("q", None), ("user", None)],
    "start_job": [("jobname", None), ("user", None)],
    "stop_job": [("jobname", None), ("user", None)],
    "get_unit_property": [("unit", None), ("property", None), ("user", None)],
    "require_unit_state": [("unit", None), ("require_state", "active")],
    "crash": [],
    "block": [],
    "unblock": [],
    "sleep": [("secs", None)],
}

LISTENER = ("/usr/bin/python3 -c 'import socket, time; s = socket.socket(); "
            "s.bind((\"10.0.0.1\", 2121)); s.listen(); time.sleep(600)'")


class Signatures(unittest.TestCase):
    def test_same_parameters_and_defaults_as_nixpkgs(self):
        for name, expected in NIXPKGS_SIGNATURES.items():
            params = list(inspect.signature(getattr(NixosMachine, name)).parameters.values())[1:]
            got = [(p.name, None if p.default is inspect.Parameter.empty else p.default) for p in params]
            self.assertEqual(got, expected, name)


class Behaviour(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = Lab(["m"])
        cls.lab.start_all()
        host = cls.lab.machines["m"]
        host.succeed("ip link add d0 type veth peer name d1 && ip link set d0 up && ip link set d1 up"
                     " && ip addr add 10.0.0.1/24 dev d0")
        cls.m = NixosMachine(cls.lab, host, units=[
            Unit("listener.service", LISTENER),
            Unit("broken.service", "false", kind="oneshot"),
            # Past its start timeout (TimeoutStartSec): failed, and the boot
            # goes on with the next unit.
            Unit("hangs.service", "sleep 600", kind="oneshot", start_timeout=1),
            Unit("after.service", LISTENER.replace("2121", "2123")),
            Unit("late.service", LISTENER.replace("2121", "2122"), timer=5),
        ])
        cls.m.start()
        cls.m.wait_for_unit("listener.service", timeout=10)

    @classmethod
    def tearDownClass(cls):
        cls.lab.cleanup()

    def test_execute_is_bash_with_set_euo_pipefail_and_returns_stdout(self):
        self.assertEqual(self.m.execute("echo out; echo err >&2"), (0, "out\n"))
        self.assertNotEqual(self.m.execute("false | true")[0], 0)
        self.assertNotEqual(self.m.execute("echo $UNSET_VARIABLE")[0], 0)
        self.assertEqual(self.m.execute("sleep 5", timeout=1)[0], 124)

    def test_succeed_and_fail(self):
        self.assertEqual(self.m.succeed("echo a", "echo b"), "a\nb\n")
        with self.assertRaises(RequestedAssertionFailed):
            self.m.succeed("true", "exit 3")
        with self.assertRaises(RequestedAssertionFailed):
            self.m.fail("true")
        self.m.fail("false")

    def test_wait_for_open_port_on_the_address_that_listens(self):
        self.m.wait_for_open_port(2121, "10.0.0.1", timeout=10)

    def test_wait_for_open_port_fails_where_nothing_listens(self):
        # The default address is localhost, where nothing listens: a VM
        # would wait its 900 s and fail (issue 15, finding 1).
        for addr in ("localhost", "10.0.0.2"):
            t = time.monotonic()
            with self.assertRaises(RequestedAssertionFailed):
                if addr == "localhost":
                    self.m.wait_for_open_port(2121, timeout=2)
                else:
                    self.m.wait_for_open_port(2121, addr, timeout=2)
            self.assertGreaterEqual(time.monotonic() - t, 2)

    def test_wait_until_succeeds_times_out(self):
        with self.assertRaises(RequestedAssertionFailed):
            self.m.wait_until_succeeds("false", timeout=1)
        self.assertEqual(self.m.wait_until_fails("echo gone; false", timeout=5), "gone\n")

    def test_wait_for_unit_fails_at_once_on_failed_and_unknown_units(self):
        for unit in ("broken.service", "absent.service"):
            t = time.monotonic()
            with self.assertRaises(RequestedAssertionFailed):
                self.m.wait_for_unit(unit, timeout=30)
            self.assertLess(time.monotonic() - t, 10, unit)
        self.assertEqual(self.m.get_unit_property("listener.service", "ActiveState"), "active")
        self.m.require_unit_state("listener.service")

    def test_oneshot_past_its_start_timeout_fails_and_the_boot_goes_on(self):
        t = time.monotonic()
        with self.assertRaises(RequestedAssertionFailed):
            self.m.wait_for_unit("hangs.service", timeout=30)
        self.assertLess(time.monotonic() - t, 10)
        self.m.wait_for_unit("after.service", timeout=10)
        self.assertEqual(self.m.systemctl("start hangs.service"), (1, ""))
        self.assertEqual(self.m.get_unit_property("hangs.service", "ActiveState"), "failed")
        # Its process is gone with it.
        self.assertNotEqual(self.m.execute("pgrep -x sleep -a | grep -q 'sleep 600'")[0], 0)

    def test_a_timer_started_unit_has_no_job_before_its_timer(self):
        # As nixpkgs' keepalived (keepalived-boot-delay.timer): waiting for
        # the unit right after boot fails at once, as on a VM.
        with self.assertRaises(RequestedAssertionFailed):
            self.m.wait_for_unit("late.service", timeout=30)
        self.m.wait_for_open_port(2122, "10.0.0.1", timeout=10)
        self.m.wait_for_unit("late.service", timeout=1)

    def test_what_a_namespace_cannot_do_fails(self):
        for call in (self.m.block, self.m.unblock, lambda: self.m.systemctl("list-units"),
                     lambda: self.m.wait_for_unit("x.service", user="alice")):
            with self.assertRaises(NotInNamespace):
                call()

    def test_zz_crash_then_no_reboot(self):
        self.m.crash()
        with self.assertRaises(NotInNamespace):
            self.m.execute("true")


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("test_nixos_driver: needs root (network namespaces)")
    unittest.main(verbosity=2)
