"""The headline: fw-1 fails in the middle of an FTP passive-mode session;
the data connection to the announced port still works through fw-2.

LAB_DAEMONS=conntrackd,conntrackd runs the same assertions with conntrackd
1.4.7 on both firewalls: the lab's own check that a mixed pair's failure
is the daemons', not the harness's."""

import os

from failover import ftp_passive_failover


def main():
    daemons = tuple(os.environ.get("LAB_DAEMONS", "ctsyncd,ctsyncd").split(","))
    assert len(daemons) == 2, daemons
    ftp_passive_failover(daemons)


if __name__ == "__main__":
    main()
