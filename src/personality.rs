//! Which program ctsyncd presents itself as: itself, or conntrackd.
//!
//! Owns: the table of names and default paths for each personality, and
//! choosing one from `argv[0]`. Installed under the name `conntrackd` (a
//! symlink, as packagers install alternatives), ctsyncd uses conntrackd
//! 1.4.7's defaults so that logrotate rules, monitoring and scripts keyed
//! on conntrackd keep working; under any other name nothing changes.
//! Pure values: `main` derives the personality once and passes it down.

use std::path::Path;

/// The names and default paths of one personality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Personality {
    /// The program's name in messages ("is conntrackd running?").
    pub name: &'static str,
    /// `-C` when not given.
    pub config_path: &'static str,
    /// `LockFile` when not given.
    pub lock_file: &'static str,
    /// `General { LogFile on }`.
    pub log_file: &'static str,
    /// `Stats { LogFile on }`.
    pub stats_log_file: &'static str,
    /// The syslog ident (the tag before `[pid]:`).
    pub syslog_ident: &'static str,
}

/// ctsyncd under its own name.
pub const CTSYNCD: Personality = Personality {
    name: "ctsyncd",
    config_path: "/etc/ctsyncd/ctsyncd.conf",
    lock_file: "/var/lock/ctsyncd.lock",
    log_file: "/var/log/ctsyncd.log",
    stats_log_file: "/var/log/ctsyncd-stats.log",
    syslog_ident: "ctsyncd",
};

/// conntrackd 1.4.7's defaults, each observed on Debian's build (README:
/// "Installed as conntrackd"): the lock file is `conntrackd.lock` (the
/// example configs and `primary-backup.sh` name `conntrack.lock`
/// explicitly), and syslog lines carry the ident `conntrack-tools`.
pub const CONNTRACKD: Personality = Personality {
    name: "conntrackd",
    config_path: "/etc/conntrackd/conntrackd.conf",
    lock_file: "/var/lock/conntrackd.lock",
    log_file: "/var/log/conntrackd.log",
    stats_log_file: "/var/log/conntrackd-stats.log",
    syslog_ident: "conntrack-tools",
};

impl Personality {
    /// The personality for a program invoked as `argv0`: conntrackd's
    /// when the file name is exactly `conntrackd`, ours otherwise
    /// (including when `argv[0]` is missing).
    pub fn from_argv0(argv0: Option<&str>) -> &'static Personality {
        let base = argv0
            .and_then(|a| Path::new(a).file_name())
            .and_then(|n| n.to_str());
        match base {
            Some("conntrackd") => &CONNTRACKD,
            _ => &CTSYNCD,
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn conntrackd_only_by_exact_base_name() {
        let p = |a| Personality::from_argv0(a).name;
        assert_eq!(p(Some("conntrackd")), "conntrackd");
        assert_eq!(p(Some("/usr/sbin/conntrackd")), "conntrackd");
        assert_eq!(p(Some("./conntrackd")), "conntrackd");
        assert_eq!(p(Some("ctsyncd")), "ctsyncd");
        assert_eq!(p(Some("/usr/local/sbin/ctsyncd")), "ctsyncd");
        assert_eq!(p(Some("conntrackd.old")), "ctsyncd");
        assert_eq!(p(Some("/usr/sbin/conntrackd/")), "conntrackd");
        assert_eq!(p(Some("/conntrackd/ctsyncd")), "ctsyncd");
        assert_eq!(p(Some("")), "ctsyncd");
        assert_eq!(p(None), "ctsyncd");
    }

    #[test]
    fn conntrackd_table_is_conntrackd_1_4_7() {
        // Observed on Debian's conntrackd 1.4.7 (README).
        assert_eq!(CONNTRACKD.config_path, "/etc/conntrackd/conntrackd.conf");
        assert_eq!(CONNTRACKD.lock_file, "/var/lock/conntrackd.lock");
        assert_eq!(CONNTRACKD.log_file, "/var/log/conntrackd.log");
        assert_eq!(CONNTRACKD.stats_log_file, "/var/log/conntrackd-stats.log");
        assert_eq!(CONNTRACKD.syslog_ident, "conntrack-tools");
    }

    #[test]
    fn the_two_personalities_share_no_path() {
        let a = [
            CTSYNCD.config_path,
            CTSYNCD.lock_file,
            CTSYNCD.log_file,
            CTSYNCD.stats_log_file,
        ];
        let b = [
            CONNTRACKD.config_path,
            CONNTRACKD.lock_file,
            CONNTRACKD.log_file,
            CONNTRACKD.stats_log_file,
        ];
        for p in a {
            assert!(p.contains("ctsyncd") && !b.contains(&p), "{p}");
        }
        assert_eq!(CTSYNCD.syslog_ident, "ctsyncd");
    }
}
