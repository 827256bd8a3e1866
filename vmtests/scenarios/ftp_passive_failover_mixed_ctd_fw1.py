"""The headline FTP passive-mode failover with conntrackd 1.4.7 on fw-1
(the failing primary) and ctsyncd on fw-2: ctsyncd must notice that its
peer speaks conntrackd's protocol, learn the connection and the
expectation from it, and commit them when it takes over."""

from failover import ftp_passive_failover, protocol_switch_logged


def main():
    lab, fw2 = ftp_passive_failover(("conntrackd", "ctsyncd"))
    protocol_switch_logged(lab, fw2)


if __name__ == "__main__":
    main()
