"""The FTP passive-mode failover with the cache options conntrackd users
combine with expectation sync: DisableExternalCache (FT-FW), and NOTRACK
with DisableInternalCache (where conntrackd 1.4.7 never replicates
expectations)."""

from driver import subtest
from failover import ftp_manual_failover
from topology import dump_logs, file_text


def main():
    verdict, lab, fw1, fw2 = ftp_manual_failover(
        "DisableExternalCache", options="ExpectationSync { ftp }", mode="FTFW", mode_body="DisableExternalCache On")
    with subtest("DisableExternalCache: data connection through fw-2"):
        if not verdict.startswith("LISTED"):
            dump_logs(lab, (fw2,))
        assert verdict.startswith("LISTED") and "hello.txt" in verdict, verdict
        # -c returned at once: nothing to commit.
        assert "committing all external caches" in file_text(f"{lab.dir}/fw2/ctsyncd.log")
        assert "Committed" not in file_text(f"{lab.dir}/fw2/ctsyncd.log")
        lab.cleanup()

    verdict, lab, fw1, fw2 = ftp_manual_failover(
        "NOTRACK DisableInternalCache", options="ExpectationSync On", mode="NOTRACK", mode_body="DisableInternalCache On")
    with subtest("DisableInternalCache: data connection through fw-2"):
        if not verdict.startswith("LISTED"):
            dump_logs(lab, (fw1, fw2))
        assert verdict.startswith("LISTED") and "hello.txt" in verdict, verdict
        log = file_text(f"{lab.dir}/fw2/ctsyncd.log")
        assert "Committed 1 new expectations" in log, log
        lab.cleanup()


if __name__ == "__main__":
    main()
