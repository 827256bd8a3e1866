//! Local time for the stamps of the log, syslog and the stats log.
//!
//! Owns: the time zone's rules, found the way localtime(3) finds them
//! (`TZ` when set: empty is UTC, else a zone name or a POSIX rule;
//! `/etc/localtime` otherwise; UTC when neither can be read), and the
//! offset those rules give at each instant. The `time` crate reads the
//! offset only while the process has a single thread, so the daemon read
//! it once at start, and its stamps stayed an hour off from the next DST
//! change until a restart. Applying the rules per line, as conntrackd's
//! localtime(3) does, needs no libc call and works from any thread.
//!
//! With `TZ` unset, glibc's localtime(3) (conntrackd's `ctime`) looks at
//! `/etc/localtime` at every call and reads it again when it changed
//! (`timedatectl set-timezone`); so does [`now`]. Read once, the stamps
//! kept the old zone until a restart.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use time::{OffsetDateTime, UtcOffset};

/// A time zone's rules; `None` is UTC.
pub struct Zone(Option<tz::TimeZone>);

impl Zone {
    /// The process's zone, from `TZ` or `/etc/localtime`.
    pub fn from_env() -> Zone {
        match std::env::var("TZ") {
            Ok(rule) => Zone::from_tz(&rule),
            Err(std::env::VarError::NotUnicode(_)) => Zone(None),
            Err(std::env::VarError::NotPresent) => {
                Zone(tz::TimeZone::from_posix_tz("localtime").ok())
            }
        }
    }

    /// A `TZ` value: empty is UTC (glibc), anything unreadable too.
    pub fn from_tz(rule: &str) -> Zone {
        if rule.is_empty() {
            return Zone(None);
        }
        Zone(tz::TimeZone::from_posix_tz(rule).ok())
    }

    /// The offset from UTC at `t`.
    pub fn offset_at(&self, t: OffsetDateTime) -> UtcOffset {
        let Some(zone) = &self.0 else {
            return UtcOffset::UTC;
        };
        zone.find_local_time_type(t.unix_timestamp())
            .ok()
            .and_then(|ty| UtcOffset::from_whole_seconds(ty.ut_offset()).ok())
            .unwrap_or(UtcOffset::UTC)
    }

    /// `t` in this zone.
    pub fn local(&self, t: OffsetDateTime) -> OffsetDateTime {
        t.to_offset(self.offset_at(t))
    }
}

/// What `stat` says of a zone file: a change means it is read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
    })
}

/// The process's zone, and the file it came from when `TZ` is unset.
struct Local {
    zone: Zone,
    file: Option<(PathBuf, Option<Stamp>)>,
}

impl Local {
    fn from_env() -> Local {
        if std::env::var_os("TZ").is_some() {
            Local {
                zone: Zone::from_env(),
                file: None,
            }
        } else {
            Local::from_file(Path::new(LOCALTIME))
        }
    }

    /// A zone file followed as glibc follows `/etc/localtime`.
    fn from_file(path: &Path) -> Local {
        let stamp = stamp(path);
        Local {
            zone: Zone::from_file(path),
            file: Some((path.into(), stamp)),
        }
    }

    /// Reads the zone file again if it changed.
    fn refresh(&mut self) {
        if let Some((path, old)) = &mut self.file {
            let new = stamp(path);
            if new != *old {
                *old = new;
                self.zone = Zone::from_file(path);
            }
        }
    }
}

impl Zone {
    /// A TZif file's zone; UTC when it cannot be read.
    fn from_file(path: &Path) -> Zone {
        let zone = path
            .to_str()
            .and_then(|p| tz::TimeZone::from_posix_tz(&format!(":{p}")).ok());
        Zone(zone)
    }
}

const LOCALTIME: &str = "/etc/localtime";

static LOCAL: OnceLock<Mutex<Local>> = OnceLock::new();

fn local() -> &'static Mutex<Local> {
    LOCAL.get_or_init(|| Mutex::new(Local::from_env()))
}

/// Reads the process's zone; later calls keep its source (`TZ`, or the
/// file, read again when it changes).
pub fn init() {
    let _ = local();
}

/// The local time now.
pub fn now() -> OffsetDateTime {
    let mut l = local().lock().unwrap_or_else(|e| e.into_inner());
    l.refresh();
    l.zone.local(OffsetDateTime::now_utc())
}

#[cfg(test)]
mod test {
    use super::*;
    use time::macros::datetime;

    const BERLIN: &str = "CET-1CEST,M3.5.0,M10.5.0/3";

    #[test]
    fn offset_follows_daylight_saving_changes() {
        let zone = Zone::from_tz(BERLIN);
        // 2026's change to summer time: 29 March, 01:00 UTC.
        let before = datetime!(2026-03-29 00:59:59 UTC);
        let after = datetime!(2026-03-29 01:00:00 UTC);
        assert_eq!(zone.offset_at(before).whole_hours(), 1);
        assert_eq!(zone.offset_at(after).whole_hours(), 2);
        assert_eq!(zone.local(after).hour(), 3);
        // And back: 25 October, 01:00 UTC.
        let october = datetime!(2026-10-25 01:00:00 UTC);
        assert_eq!(
            zone.offset_at(october - time::Duration::SECOND)
                .whole_hours(),
            2
        );
        assert_eq!(zone.offset_at(october).whole_hours(), 1);
    }

    #[test]
    fn empty_or_unreadable_tz_is_utc() {
        let t = datetime!(2026-07-01 12:00:00 UTC);
        assert_eq!(Zone::from_tz("").offset_at(t), UtcOffset::UTC);
        assert_eq!(
            Zone::from_tz("No/Such_Zone+-").offset_at(t),
            UtcOffset::UTC
        );
        assert_eq!(Zone::from_tz("UTC0").local(t), t);
    }

    #[test]
    fn a_zone_file_that_changed_is_read_again() {
        let (utc, ny) = (
            Path::new("/usr/share/zoneinfo/UTC"),
            Path::new("/usr/share/zoneinfo/America/New_York"),
        );
        if !utc.exists() || !ny.exists() {
            eprintln!("skipped: no tzdata");
            return;
        }
        let path = std::env::temp_dir()
            .join(format!("ctsyncd-zone-{}", std::process::id()));
        std::fs::copy(utc, &path).unwrap();
        let mut l = Local::from_file(&path);
        let t = datetime!(2026-07-01 12:00:00 UTC);
        assert_eq!(l.zone.offset_at(t), UtcOffset::UTC);
        std::fs::write(&path, std::fs::read(ny).unwrap()).unwrap();
        l.refresh();
        assert_eq!(l.zone.offset_at(t).whole_hours(), -4);
        // Gone: UTC, as glibc without a zone file.
        std::fs::remove_file(&path).unwrap();
        l.refresh();
        assert_eq!(l.zone.offset_at(t), UtcOffset::UTC);
    }

    #[test]
    fn zone_files_are_read_by_name() {
        // Debian's tzdata; without it the zone is UTC and the check is moot.
        if !std::path::Path::new("/usr/share/zoneinfo/America/New_York")
            .exists()
        {
            eprintln!("skipped: no /usr/share/zoneinfo/America/New_York");
            return;
        }
        let t = datetime!(2026-07-01 12:00:00 UTC);
        assert_eq!(
            Zone::from_tz("America/New_York").offset_at(t).whole_hours(),
            -4
        );
        assert_eq!(
            Zone::from_tz(":America/New_York")
                .offset_at(t)
                .whole_hours(),
            -4
        );
    }
}
