"""The headline FTP passive-mode failover with ctsyncd on fw-1 (the
failing primary) and conntrackd 1.4.7 on fw-2: ctsyncd must speak
conntrackd's protocol to it so that conntrackd learns the connection and
the expectation and commits them when it takes over."""

from failover import ftp_passive_failover, protocol_switch_logged


def main():
    lab, _fw2 = ftp_passive_failover(("ctsyncd", "conntrackd"))
    protocol_switch_logged(lab, lab.machines["fw1"])


if __name__ == "__main__":
    main()
