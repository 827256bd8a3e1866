"""Negative control: the same failover with expectation sync disabled must
fail to open the data connection (proves the headline tests something)."""

from driver import subtest
from failover import ftp_failover


def main():
    verdict, _lab, _fw2 = ftp_failover(expectation_sync=False, failure="block")
    with subtest("without the expectation fw-2 drops the data connection"):
        assert verdict.startswith("FAILED"), verdict
        assert "timed out" in verdict or "TimeoutError" in verdict or "refused" in verdict, verdict


if __name__ == "__main__":
    main()
