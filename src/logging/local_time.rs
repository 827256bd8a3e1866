//! Local time for the stamps of the log, syslog and the stats log.
//!
//! Owns: the time zone's rules, read once at start the way localtime(3)
//! finds them (`TZ` when set: empty is UTC, else a zone name or a POSIX
//! rule; `/etc/localtime` otherwise; UTC when neither can be read), and
//! the offset those rules give at each instant. The `time` crate reads the
//! offset only while the process has a single thread, so the daemon read
//! it once at start, and its stamps stayed an hour off from the next DST
//! change until a restart. Applying the rules per line, as conntrackd's
//! localtime(3) does, needs no libc call and works from any thread.

use std::sync::OnceLock;

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

static ZONE: OnceLock<Zone> = OnceLock::new();

/// Reads the process's zone; later calls keep the first one's.
pub fn init() {
    let _ = ZONE.get_or_init(Zone::from_env);
}

/// The local time now.
pub fn now() -> OffsetDateTime {
    ZONE.get_or_init(Zone::from_env)
        .local(OffsetDateTime::now_utc())
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
