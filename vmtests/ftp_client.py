"""FTP client for the failover scenarios: log in, PASV, write the announced
port to OUT, wait until GO exists, then open the data connection and LIST.
Writes `LISTED <names>` or `FAILED <reason>` to OUT.done. With ROUNDS > 1
it then waits for GO2, GO3, … and does PASV + LIST again on the same
control connection, writing OUT.done2, OUT.done3, …
With EARLY (the word `early`), round k's PASV comes right after round
k-1's LIST, its port goes to OUTk, and only the data connection waits for
GOk: each expectation then lives across whatever the scenario does before
the go.

    ftp_client.py SERVER OUT GO [TIMEOUT [ROUNDS [early]]]
"""

import ftplib
import os
import socket
import sys
import time

server, out, go = sys.argv[1:4]
timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 60
rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 1
early = len(sys.argv) > 6 and sys.argv[6] == "early"
suffix = ""


def done(text):
    with open(out + ".done" + suffix, "w") as f:
        f.write(text + "\n")


def wait_for(path):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            done("FAILED never told to go")
            sys.exit(1)
        time.sleep(0.05)


def pasv(f):
    resp = f.sendcmd("PASV")
    nums = resp[resp.index("(") + 1:resp.index(")")].split(",")
    return ".".join(nums[:4]), int(nums[4]) * 256 + int(nums[5])


def listing(f, host, port):
    data = socket.create_connection((host, port), timeout=8)
    f.sendcmd("LIST")
    raw = b""
    while chunk := data.recv(4096):
        raw += chunk
    data.close()
    f.voidresp()
    return " ".join(line.split()[-1] for line in raw.decode().splitlines() if line.strip())


try:
    f = ftplib.FTP()
    f.connect(server, 21, timeout=10)
    f.login()
    host, port = pasv(f)
    with open(out, "w") as o:
        o.write(f"{port}\n")
    wait_for(go)
    done(f"LISTED {listing(f, host, port)}")
    for k in range(2, rounds + 1):
        suffix = str(k)
        if early:
            host, port = pasv(f)
            with open(f"{out}{k}", "w") as o:
                o.write(f"{port}\n")
        wait_for(f"{go}{k}")
        if not early:
            host, port = pasv(f)
        done(f"LISTED {listing(f, host, port)}")
except Exception as e:  # noqa: BLE001 - the scenario reads the reason
    done(f"FAILED {type(e).__name__}: {e}")
    sys.exit(1)
