#!/usr/bin/env python3
"""Self-test of bench.py's arithmetic (no namespaces, no root).

    python3 benches/test_bench.py
"""

import itertools
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench  # noqa: E402

NAN = float("nan")


def run(daemon, lag):
    return {"daemon": daemon, "n": 1000, "cpu_sender_s": 1.0, "cpu_receiver_s": 1.0, "lag_s": lag, "lost": 0}


class Medians(unittest.TestCase):
    def test_a_run_that_never_completed_counts_as_the_slowest_in_any_order(self):
        # Three runs: 20 ms, 10 ms and one that never completed (nan). As
        # the slowest, the median is 20 ms whatever order they ran in.
        for lags in itertools.permutations([0.02, NAN, 0.01]):
            lines = bench.pair_table([run("ctsyncd", lag) for lag in lags], [1000], 3)
            row = next(line for line in lines if "ctsyncd → ctsyncd" in line)
            lag_cell = row.split("|")[5].strip()
            self.assertEqual(lag_cell, "20.00", (lags, row))

    def test_the_median_is_nan_when_most_runs_never_completed(self):
        for xs in itertools.permutations([NAN, 0.01, NAN]):
            m = bench.median(xs)
            self.assertNotEqual(m, m, xs)
        self.assertEqual(bench.median([3, 1, 2]), 2)
        self.assertEqual(bench.median([4, 1, 3, 2]), 2.5)


class LagUnits(unittest.TestCase):
    def test_a_sub_millisecond_lag_is_readable_in_both_tables(self):
        # Lags are fractions of a millisecond: in seconds with two
        # decimals both daemons' medians printed 0.00 beside a ratio.
        for rows in (bench.ROWS, bench.PAIR_ROWS):
            label, f = next(row for row in rows if row[0].startswith("replication lag"))
            self.assertEqual((label, f"{f(run('ctsyncd', 0.00089)):.2f}"), ("replication lag (ms)", "0.89"))


class DumpDuring(unittest.TestCase):
    def dump_run(self, daemon, cpu, children, lost=0):
        return {"daemon": daemon, "n": 1000, "cpu_sender_s": 1.0, "cpu_receiver_s": cpu,
                "cpu_receiver_children_s": children, "lag_s": 0.001, "lost": lost,
                "dump_from": 500, "dump_lines": 510, "dump_s": 0.01}

    def target(self, runs):
        lines = bench.dump_table(runs, [1000], 1, 0, "test")
        return next(line for line in lines if "issue-17 target" in line).split("|")[5].strip()

    def test_a_forked_dump_childs_cpu_is_the_receivers(self):
        # conntrackd's -e runs in a child: 20 ms in the daemon and 30 ms
        # in its child is 50 µs an entry, and ctsyncd's 10 ms is a fifth
        # of it (a third, were the child left out: over the 0.25 bound).
        runs = [self.dump_run("ctsyncd", 0.010, 0.0), self.dump_run("conntrackd", 0.020, 0.030)]
        self.assertEqual(self.target(runs), "0.20 yes")

    def test_a_run_that_lost_entries_is_left_out_of_the_target(self):
        runs = [self.dump_run("ctsyncd", 0.010, 0.0), self.dump_run("ctsyncd", 0.001, 0.0, lost=5),
                self.dump_run("conntrackd", 0.050, 0.0)]
        self.assertEqual(self.target(runs), "0.20 yes")


if __name__ == "__main__":
    unittest.main(verbosity=2)
