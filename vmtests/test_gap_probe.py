#!/usr/bin/env python3
"""Self-test of gap_probe.py's progress files, on 127.0.0.1 (no root, no
namespaces).

    python3 vmtests/test_gap_probe.py
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


class Progress(unittest.TestCase):
    def test_a_reader_never_finds_the_progress_file_empty(self):
        # gap.py reads OUT.progress once before the crash; an empty read
        # (the file truncated, not yet rewritten) counted as 0, and the
        # check that the stream then passes fw-2 held at once.
        d = tempfile.mkdtemp(prefix="gap-probe-test.")
        out, stop = f"{d}/usink.json", f"{d}/stop"
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        sink = subprocess.Popen([sys.executable, f"{HERE}/gap_probe.py", "usink", "127.0.0.1", str(port), out, stop])
        try:
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            deadline = time.monotonic() + 10
            while not os.path.exists(out + ".progress") and time.monotonic() < deadline:
                tx.sendto(b"x", ("127.0.0.1", port))
                time.sleep(0.01)
            self.assertTrue(os.path.exists(out + ".progress"))
            empty = reads = 0
            end = time.monotonic() + 3
            while time.monotonic() < end:
                tx.sendto(b"x", ("127.0.0.1", port))
                for _ in range(50):
                    with open(out + ".progress") as f:
                        if not f.read().strip():
                            empty += 1
                    reads += 1
            self.assertEqual(empty, 0, f"{empty} of {reads} reads found it empty")
        finally:
            open(stop, "w").close()
            try:
                sink.wait(timeout=10)
            except subprocess.TimeoutExpired:
                sink.kill()
                sink.wait()
            shutil.rmtree(d)


if __name__ == "__main__":
    unittest.main(verbosity=2)
