"""The headline: fw-1 fails in the middle of an FTP passive-mode session;
the data connection to the announced port still works through fw-2."""

from driver import subtest
from failover import ftp_failover
from topology import dump_logs, file_text


def main():
    verdict, lab, fw2 = ftp_failover(expectation_sync=True, failure="block")
    with subtest("LIST returned the listing through fw-2"):
        if not verdict.startswith("LISTED"):
            dump_logs(lab, [fw2])
        assert verdict == "LISTED failover.txt hello.txt" or verdict.startswith("LISTED") and "hello.txt" in verdict, verdict
        log = file_text(f"{lab.dir}/fw2/ctsyncd.log")
        for line in ("committing all external caches", "Committed 1 new expectations", "commit has taken"):
            assert line in log, line
        assert "Committed" in log and "new entries" in log


if __name__ == "__main__":
    main()
