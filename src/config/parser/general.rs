//! The `General { }` section (with its `UNIX` and `Scheduler` blocks) and
//! the `Stats { }` section, including their deprecated clauses.

use super::values::{parse_bool, parse_u32};
use super::{Parser, Result};
use crate::config::lexer::{Pos, Tok};
use crate::config::{
    Facility, OverrunResync, SchedPolicy, Scheduler, UNIX_PATH_MAX,
};

const GENERAL: &[&str] = &[
    "HashSize",
    "HashLimit",
    "LogFile",
    "Syslog",
    "LockFile",
    "UNIX",
    "NetlinkBufferSize",
    "NetlinkBufferSizeMaxGrowth",
    "NetlinkOverrunResync",
    "NetlinkEventsReliable",
    "PollSecs",
    "EventIterationLimit",
    "Nice",
    "Scheduler",
    "Filter",
    "Systemd",
];
const STATS: &[&str] = &["LogFile", "Syslog"];

impl<'a> Parser<'a> {
    pub(super) fn general(&mut self) -> Result<()> {
        self.block("General", GENERAL, |p, kw, pos| {
            match kw {
                "HashSize" => p.cfg.general.hash_size = p.number()?,
                // Zero is unset, as in conntrackd: its default.
                "HashLimit" => {
                    p.cfg.general.hash_limit = match p.number()? {
                        0 => crate::config::General::default().hash_limit,
                        n => n,
                    }
                }
                "LogFile" => {
                    p.cfg.general.log_file =
                        p.log_target(p.personality.log_file)?.0
                }
                "Syslog" => {
                    let cur = p.cfg.general.syslog;
                    p.cfg.general.syslog = p.syslog(cur, false)?;
                }
                "LockFile" => p.cfg.general.lock_file = p.path()?.0,
                "UNIX" => p.unix()?,
                "NetlinkBufferSize" | "SocketBufferSize" => {
                    p.cfg.general.netlink_buffer_size = p.number()?;
                }
                "NetlinkBufferSizeMaxGrowth"
                | "SocketBufferSizeMaxGrown"
                | "SocketBufferSizeMaxGrowth" => {
                    p.cfg.general.netlink_buffer_size_max_growth =
                        p.number()?;
                }
                "NetlinkOverrunResync" => {
                    let (w, wp) = p.word("On, Off or a number of seconds")?;
                    p.cfg.general.netlink_overrun_resync =
                        match (parse_bool(w), parse_u32(w)) {
                            (Some(true), _) => OverrunResync::AfterBurst,
                            (Some(false), _) => OverrunResync::Off,
                            // conntrackd treats 0 as "unset", i.e. the default.
                            (None, Some(0)) => OverrunResync::AfterBurst,
                            (None, Some(n)) => OverrunResync::After(n),
                            (None, None) => {
                                return Err(p.found(
                                    Tok::Word(w),
                                    wp,
                                    "On, Off or a number of seconds",
                                ));
                            }
                        };
                }
                "NetlinkEventsReliable" => {
                    p.cfg.general.netlink_events_reliable = p.boolean()?;
                }
                "PollSecs" => {
                    let n = p.number()?;
                    if n == 0 {
                        return Err(p.err(pos, "`PollSecs' clause must be > 0"));
                    }
                    p.cfg.general.poll_secs = Some(n);
                }
                "EventIterationLimit" => {
                    let n = p.number()?;
                    p.cfg.general.event_iteration_limit =
                        if n == 0 { 100 } else { n };
                }
                "Nice" => {
                    // conntrackd's grammar demands a sign (`Nice -5`), but
                    // `Nice 5` is in the wild; accept both.
                    let (w, wp) = p.word("a nice value such as -5")?;
                    // Applied as conntrackd 1.4.2 did (1.4.5+ ignore it with
                    // a warning): the kernel clamps it to [-20, 19].
                    let digits = w.strip_prefix(['+', '-']).unwrap_or(w);
                    let Some(n) = parse_u32(digits) else {
                        return Err(p.found(
                            Tok::Word(w),
                            wp,
                            "a nice value such as -5",
                        ));
                    };
                    let n = n.min(40) as i32;
                    p.cfg.general.nice =
                        if w.starts_with('-') { -n } else { n };
                }
                "Scheduler" => p.scheduler()?,
                "Filter" => p.filter()?,
                "Systemd" => p.cfg.general.systemd = p.boolean()?,
                "Family" => {
                    p.warn(pos, "`Family' is deprecated, ignoring");
                    p.word("an address family")?;
                }
                _ => return Ok(false),
            }
            Ok(true)
        })
    }

    fn unix(&mut self) -> Result<()> {
        self.block("UNIX", &["Path", "Backlog"], |p, kw, pos| {
            match kw {
                "Path" => {
                    let (path, pp) = p.path()?;
                    if path.as_os_str().len() > UNIX_PATH_MAX {
                        return Err(p.err(
                            pp,
                            format!(
                                "Path is longer than {UNIX_PATH_MAX} characters"
                            ),
                        ));
                    }
                    p.unix_path = Some((path, pp));
                }
                "Backlog" => {
                    p.number()?;
                    p.warn(
                        pos,
                        "deprecated unix backlog configuration, ignoring.",
                    );
                }
                _ => return Ok(false),
            }
            Ok(true)
        })
    }

    fn scheduler(&mut self) -> Result<()> {
        let mut policy = None;
        let mut priority = None;
        self.block("Scheduler", &["Type", "Priority"], |p, kw, _| {
            match kw {
                "Type" => {
                    let (w, wp) = p.word("RR or FIFO")?;
                    policy = Some(match w.to_ascii_uppercase().as_str() {
                        "RR" => SchedPolicy::Rr,
                        "FIFO" => SchedPolicy::Fifo,
                        _ => {
                            return Err(
                                p.err(wp, format!("unknown scheduler `{w}'"))
                            );
                        }
                    });
                }
                "Priority" => {
                    let (w, wp) = p.word("a priority from 0 to 99")?;
                    match parse_u32(w) {
                        Some(n) if n <= 99 => priority = Some(n as u8),
                        _ => {
                            return Err(p.err(wp, "`Priority' must be [0, 99]"));
                        }
                    }
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        // A value a block leaves out is the one an earlier block set, as
        // conntrackd keeps one type and one priority for all of them;
        // RR and 99 when none did.
        let before = self.cfg.general.scheduler;
        self.cfg.general.scheduler = Some(Scheduler {
            policy: policy
                .or(before.map(|s| s.policy))
                .unwrap_or(SchedPolicy::Rr),
            priority: priority.or(before.map(|s| s.priority)).unwrap_or(99),
        });
        Ok(())
    }

    pub(super) fn stats(&mut self, pos: Pos) -> Result<()> {
        self.stats_pos.get_or_insert(pos);
        let mut stats = self.cfg.stats.take().unwrap_or_default();
        self.block("Stats", STATS, |p, kw, kpos| {
            match kw {
                "LogFile" => {
                    stats.log_file =
                        p.log_target(p.personality.stats_log_file)?.0
                }
                "Syslog" => {
                    // Only a facility named here counts against General's
                    // (conntrackd's `on' and `off' leave Stats' unset).
                    if let (Tok::Word(w), _) = p.peek()
                        && let Some(f) = Facility::parse(w)
                    {
                        p.stats_facility = Some(f);
                    }
                    stats.syslog = p.syslog(stats.syslog, true)?;
                }
                "LogFileBufferSize" => {
                    p.number()?;
                    p.warn(kpos, "`LogFileBufferSize' is deprecated");
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        self.cfg.stats = Some(stats);
        Ok(())
    }
}
