"""FTP client for the failover scenarios: log in, PASV, write the announced
port to OUT, wait until GO exists, then open the data connection and LIST.
Writes `LISTED <names>` or `FAILED <reason>` to OUT.done.

    ftp_client.py SERVER OUT GO [TIMEOUT]
"""

import ftplib
import os
import socket
import sys
import time

server, out, go = sys.argv[1:4]
timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 60


def done(text):
    with open(out + ".done", "w") as f:
        f.write(text + "\n")


try:
    f = ftplib.FTP()
    f.connect(server, 21, timeout=10)
    f.login()
    resp = f.sendcmd("PASV")
    nums = resp[resp.index("(") + 1:resp.index(")")].split(",")
    host, port = ".".join(nums[:4]), int(nums[4]) * 256 + int(nums[5])
    with open(out, "w") as o:
        o.write(f"{port}\n")
    deadline = time.monotonic() + timeout
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            done("FAILED never told to go")
            sys.exit(1)
        time.sleep(0.05)
    data = socket.create_connection((host, port), timeout=8)
    f.sendcmd("LIST")
    listing = b""
    while chunk := data.recv(4096):
        listing += chunk
    data.close()
    f.voidresp()
    names = " ".join(line.split()[-1] for line in listing.decode().splitlines() if line.strip())
    done(f"LISTED {names}")
except Exception as e:  # noqa: BLE001 - the scenario reads the reason
    done(f"FAILED {type(e).__name__}: {e}")
    sys.exit(1)
