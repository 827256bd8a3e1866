//! Recursive-descent parser for conntrackd.conf (conntrack-tools 1.4.x).
//!
//! Owns: the grammar (which clause is allowed where, what value it takes),
//! conntrackd's defaults and post-parse validation. Errors stop the parse
//! with `file:line:col: found X, expected Y`; deprecated or obsolete clauses
//! produce warnings and are otherwise ignored, as conntrackd does.
//! Never panics on any input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use super::lexer::{Lexer, Pos, Tok};
use super::{
    Channel, Cidr, Config, DEFAULT_LOG_FILE, DEFAULT_STATS_LOG_FILE,
    Diagnostic, ExpectationSync, Facility, HelperName, IfName, LogTarget,
    Logic, MAX_CHANNELS, Mode, Parsed, Rule, SchedPolicy, Scheduler, Sync,
    TcpState, Transport, UNIX_PATH_MAX,
};

type Result<T> = std::result::Result<T, Diagnostic>;

/// Parses a whole configuration text. `file` is used in diagnostics only.
pub fn parse(src: &str, file: &str) -> Result<Parsed> {
    let mut p = Parser {
        lx: Lexer::new(src),
        peeked: None,
        file,
        warnings: Vec::new(),
        cfg: Config::default(),
        sync: None,
        stats_pos: None,
        modes: Vec::new(),
        channel_pos: Vec::new(),
        unix_path: None,
    };
    p.file_body()?;
    p.finish()
}

// ===== the parser state =====

struct Parser<'a> {
    lx: Lexer<'a>,
    peeked: Option<(Tok<'a>, Pos)>,
    file: &'a str,
    warnings: Vec<Diagnostic>,
    cfg: Config,
    /// The Sync section being built, and where it was first opened.
    sync: Option<(Sync, Pos)>,
    stats_pos: Option<Pos>,
    /// Every `Mode` clause seen, for conntrackd's precedence rule.
    modes: Vec<(Mode, Pos)>,
    /// Where each channel block started, parallel to `Sync::channels`.
    channel_pos: Vec<Pos>,
    unix_path: Option<(PathBuf, Pos)>,
}

const TOP: &[&str] = &["General", "Sync", "Stats", "Helper"];
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
const SYNC: &[&str] = &[
    "Mode",
    "Multicast",
    "UDP",
    "TCP",
    "Options",
    "RefreshTime",
    "CacheTimeout",
    "CommitTimeout",
    "PurgeTimeout",
];
const FTFW: &[&str] = &[
    "ResendQueueSize",
    "ACKWindowSize",
    "CommitTimeout",
    "PurgeTimeout",
    "DisableExternalCache",
    "StartupResync",
];
const NOTRACK: &[&str] = &[
    "CommitTimeout",
    "PurgeTimeout",
    "DisableInternalCache",
    "DisableExternalCache",
    "StartupResync",
];
const ALARM: &[&str] = &[
    "RefreshTime",
    "CacheTimeout",
    "CommitTimeout",
    "PurgeTimeout",
];
const MCAST: &[&str] = &[
    "IPv4_address",
    "IPv6_address",
    "IPv4_interface",
    "IPv6_interface",
    "Interface",
    "Group",
    "SndSocketBuffer",
    "RcvSocketBuffer",
    "Checksum",
];
const UDP: &[&str] = &[
    "IPv4_address",
    "IPv6_address",
    "IPv4_Destination_Address",
    "IPv6_Destination_Address",
    "Port",
    "Interface",
    "SndSocketBuffer",
    "RcvSocketBuffer",
    "Checksum",
];
const TCP: &[&str] = &[
    "IPv4_address",
    "IPv6_address",
    "IPv4_Destination_Address",
    "IPv6_Destination_Address",
    "Port",
    "Interface",
    "SndSocketBuffer",
    "RcvSocketBuffer",
    "Checksum",
    "ErrorQueueLength",
];
const OPTIONS: &[&str] = &["ExpectationSync", "TCPWindowTracking"];
const STATS: &[&str] = &["LogFile", "Syslog"];
const FILTER: &[&str] = &["Protocol", "Address", "State"];

impl<'a> Parser<'a> {
    // ===== token helpers =====

    fn next(&mut self) -> (Tok<'a>, Pos) {
        self.peeked.take().unwrap_or_else(|| self.lx.next_token())
    }

    fn peek(&mut self) -> (Tok<'a>, Pos) {
        let t = self.next();
        self.peeked = Some(t);
        t
    }

    fn err(&self, pos: Pos, msg: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.file.to_string(),
            pos,
            msg: msg.into(),
        }
    }

    fn warn(&mut self, pos: Pos, msg: impl Into<String>) {
        let d = self.err(pos, msg);
        self.warnings.push(d);
    }

    fn found(&self, tok: Tok<'_>, pos: Pos, expected: &str) -> Diagnostic {
        self.err(pos, format!("found {tok}, expected {expected}"))
    }

    fn word(&mut self, expected: &str) -> Result<(&'a str, Pos)> {
        match self.next() {
            (Tok::Word(w), p) => Ok((w, p)),
            (t, p) => Err(self.found(t, p, expected)),
        }
    }

    fn open(&mut self, what: &str) -> Result<Pos> {
        match self.next() {
            (Tok::Open, p) => Ok(p),
            (t, p) => Err(self.found(t, p, &format!("`{{' to open {what}"))),
        }
    }

    /// Parses `{ clause* }`, handing each clause keyword to `f`. `f`
    /// returns false for a keyword it does not know, which is an error
    /// listing `keywords`.
    fn block<F>(
        &mut self,
        name: &str,
        keywords: &[&str],
        mut f: F,
    ) -> Result<()>
    where
        F: FnMut(&mut Self, &'a str, Pos) -> Result<bool>,
    {
        let open = self.open(&format!("the {name} block"))?;
        loop {
            match self.next() {
                (Tok::Close, _) => return Ok(()),
                (Tok::Word(w), p) => {
                    if !f(self, w, p)? {
                        return Err(self.found(
                            Tok::Word(w),
                            p,
                            &format!(
                                "a clause of {name} ({})",
                                keywords.join(", ")
                            ),
                        ));
                    }
                }
                (Tok::Eof, p) => {
                    return Err(self.found(
                        Tok::Eof,
                        p,
                        &format!(
                            "`}}' closing the {name} block opened at {open}"
                        ),
                    ));
                }
                (t, p) => {
                    return Err(self.found(
                        t,
                        p,
                        &format!(
                            "a clause of {name} ({})",
                            keywords.join(", ")
                        ),
                    ));
                }
            }
        }
    }

    /// Skips a balanced `{ … }` (used for sections that are accepted but
    /// not implemented, such as `Helper`).
    fn skip_block(&mut self, name: &str) -> Result<()> {
        let open = self.open(&format!("the {name} block"))?;
        let mut depth = 1u32;
        while depth > 0 {
            match self.next() {
                (Tok::Open, _) => depth += 1,
                (Tok::Close, _) => depth -= 1,
                (Tok::Eof, p) => {
                    return Err(self.found(
                        Tok::Eof,
                        p,
                        &format!(
                            "`}}' closing the {name} block opened at {open}"
                        ),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    // ===== value helpers =====

    fn number(&mut self) -> Result<u32> {
        let (w, p) = self.word("a number")?;
        parse_u32(w).ok_or_else(|| {
            self.found(Tok::Word(w), p, "a number (0 to 4294967295)")
        })
    }

    fn port(&mut self) -> Result<u16> {
        let (w, p) = self.word("a port number")?;
        parse_u32(w)
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| {
                self.found(Tok::Word(w), p, "a port number (0 to 65535)")
            })
    }

    fn boolean(&mut self) -> Result<bool> {
        let (w, p) = self.word("On or Off")?;
        parse_bool(w).ok_or_else(|| self.found(Tok::Word(w), p, "On or Off"))
    }

    fn path(&mut self) -> Result<(PathBuf, Pos)> {
        let (w, p) = self.word("an absolute path")?;
        if !w.starts_with('/') {
            return Err(self.found(Tok::Word(w), p, "an absolute path"));
        }
        Ok((PathBuf::from(w), p))
    }

    fn log_target(&mut self, default: &str) -> Result<(LogTarget, Pos)> {
        let (w, p) = self.word("On, Off or an absolute path")?;
        let target = match parse_bool(w) {
            Some(true) => LogTarget::File(PathBuf::from(default)),
            Some(false) => LogTarget::Off,
            None if w.starts_with('/') => LogTarget::File(PathBuf::from(w)),
            None => {
                return Err(self.found(
                    Tok::Word(w),
                    p,
                    "On, Off or an absolute path",
                ));
            }
        };
        Ok((target, p))
    }

    fn syslog(
        &mut self,
        current: Option<Facility>,
    ) -> Result<Option<Facility>> {
        let (w, p) = self.word("On, Off or a syslog facility")?;
        Ok(match parse_bool(w) {
            Some(true) => Some(Facility::Daemon),
            Some(false) => None,
            None => match Facility::parse(w) {
                Some(f) => Some(f),
                None => {
                    self.warn(
                        p,
                        format!(
                            "'{w}' is not a known syslog facility, ignoring"
                        ),
                    );
                    current
                }
            },
        })
    }

    fn ipv4(&mut self) -> Result<Ipv4Addr> {
        let (w, p) = self.word("an IPv4 address")?;
        w.parse()
            .map_err(|_| self.found(Tok::Word(w), p, "an IPv4 address"))
    }

    fn ipv6(&mut self) -> Result<Ipv6Addr> {
        let (w, p) = self.word("an IPv6 address")?;
        w.parse()
            .map_err(|_| self.found(Tok::Word(w), p, "an IPv6 address"))
    }

    fn ifname(&mut self) -> Result<IfName> {
        let (w, p) = self.word("an interface name")?;
        let mut name = IfName::new();
        if w.is_empty() || name.push_str(w).is_err() {
            return Err(self.found(
                Tok::Word(w),
                p,
                "an interface name of at most 15 characters",
            ));
        }
        Ok(name)
    }

    /// `Accept` or `Ignore`.
    fn logic(&mut self) -> Result<Logic> {
        match self.word("Accept or Ignore")? {
            ("Accept", _) => Ok(Logic::Accept),
            ("Ignore", _) => Ok(Logic::Ignore),
            (w, p) => Err(self.found(Tok::Word(w), p, "Accept or Ignore")),
        }
    }

    /// Consumes the optional value of an obsolete clause.
    fn skip_obsolete_value(&mut self) {
        if let (Tok::Word(w), _) = self.peek()
            && (parse_bool(w).is_some()
                || parse_u32(w).is_some()
                || w.parse::<IpAddr>().is_ok())
        {
            self.next();
        }
    }

    // ===== sections =====

    fn file_body(&mut self) -> Result<()> {
        loop {
            match self.next() {
                (Tok::Eof, _) => return Ok(()),
                (Tok::Word("General"), _) => self.general()?,
                (Tok::Word("Sync"), p) => self.sync(p)?,
                (Tok::Word("Stats"), p) => self.stats(p)?,
                (Tok::Word("Helper"), _) => {
                    self.skip_block("Helper")?;
                    self.cfg.helper_section = true;
                }
                (Tok::Word("IgnoreProtocol"), p) => {
                    self.warn(p, "the clause `IgnoreProtocol' is obsolete. Use `Filter' instead");
                    let items = self.protocol_list("IgnoreProtocol")?;
                    add_rule(
                        &mut self.cfg.general.filter.protocol,
                        Logic::Ignore,
                        items,
                    );
                }
                (Tok::Word("IgnoreTrafficFor"), p) => {
                    self.warn(p, "the clause `IgnoreTrafficFor' is obsolete. Use `Filter' instead");
                    let items = self.address_list("IgnoreTrafficFor")?;
                    add_rule(
                        &mut self.cfg.general.filter.address,
                        Logic::Ignore,
                        items,
                    );
                }
                (Tok::Word("StripNAT"), p) => {
                    self.warn(p, "`StripNAT' clause is obsolete, ignoring");
                    self.skip_obsolete_value();
                }
                (t, p) => {
                    return Err(self.found(
                        t,
                        p,
                        &format!("a section ({})", TOP.join(", ")),
                    ));
                }
            }
        }
    }

    fn general(&mut self) -> Result<()> {
        self.block("General", GENERAL, |p, kw, pos| {
            match kw {
                "HashSize" => p.cfg.general.hash_size = p.number()?,
                "HashLimit" => p.cfg.general.hash_limit = p.number()?,
                "LogFile" => p.cfg.general.log_file = p.log_target(DEFAULT_LOG_FILE)?.0,
                "Syslog" => {
                    let cur = p.cfg.general.syslog;
                    p.cfg.general.syslog = p.syslog(cur)?;
                }
                "LockFile" => p.cfg.general.lock_file = p.path()?.0,
                "UNIX" => p.unix()?,
                "NetlinkBufferSize" | "SocketBufferSize" => {
                    p.cfg.general.netlink_buffer_size = p.number()?;
                }
                "NetlinkBufferSizeMaxGrowth"
                | "SocketBufferSizeMaxGrown"
                | "SocketBufferSizeMaxGrowth" => {
                    p.cfg.general.netlink_buffer_size_max_growth = p.number()?;
                }
                "NetlinkOverrunResync" => {
                    let (w, wp) = p.word("On, Off or a number of seconds")?;
                    p.cfg.general.netlink_overrun_resync = match (parse_bool(w), parse_u32(w)) {
                        (Some(true), _) => Some(30),
                        (Some(false), _) => None,
                        // conntrackd treats 0 as "unset", i.e. the default.
                        (None, Some(0)) => Some(30),
                        (None, Some(n)) => Some(n),
                        (None, None) => {
                            return Err(p.found(Tok::Word(w), wp, "On, Off or a number of seconds"));
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
                    p.cfg.general.event_iteration_limit = if n == 0 { 100 } else { n };
                }
                "Nice" => {
                    // conntrackd's grammar demands a sign (`Nice -5`), but
                    // `Nice 5` is in the wild; accept both.
                    let (w, wp) = p.word("a nice value such as -5")?;
                    let digits = w.strip_prefix(['+', '-']).unwrap_or(w);
                    if parse_u32(digits).is_none() {
                        return Err(p.found(Tok::Word(w), wp, "a nice value such as -5"));
                    }
                    p.warn(
                        pos,
                        "deprecated nice configuration, ignoring. The nice value \
                         can be set externally with nice(1) and renice(1).",
                    );
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
        self.cfg.general.scheduler = Some(Scheduler {
            policy: policy.unwrap_or(SchedPolicy::Rr),
            priority: priority.unwrap_or(99),
        });
        Ok(())
    }

    fn filter(&mut self) -> Result<()> {
        if let (Tok::Word("From"), _) = self.peek() {
            self.next();
            self.cfg.general.filter.from_kernelspace =
                match self.word("Userspace or Kernelspace")? {
                    ("Userspace", _) => false,
                    ("Kernelspace", _) => true,
                    (w, p) => {
                        return Err(self.found(
                            Tok::Word(w),
                            p,
                            "Userspace or Kernelspace",
                        ));
                    }
                };
        }
        self.block("Filter", FILTER, |p, kw, _| {
            match kw {
                "Protocol" => {
                    let logic = p.logic()?;
                    let items = p.protocol_list("Protocol")?;
                    add_rule(&mut p.cfg.general.filter.protocol, logic, items);
                }
                "Address" => {
                    let logic = p.logic()?;
                    let items = p.address_list("Address")?;
                    add_rule(&mut p.cfg.general.filter.address, logic, items);
                }
                "State" => {
                    let logic = p.logic()?;
                    let items = p.state_list()?;
                    add_rule(&mut p.cfg.general.filter.state, logic, items);
                }
                _ => return Ok(false),
            }
            Ok(true)
        })
    }

    /// `{ tcp udp 132 … }`: names from a built-in /etc/protocols subset, or
    /// numbers. Unknown names warn and are ignored, as in conntrackd.
    fn protocol_list(&mut self, name: &str) -> Result<Vec<u8>> {
        let open = self.open(&format!("the {name} list"))?;
        let mut out = Vec::new();
        loop {
            match self.next() {
                (Tok::Close, _) => return Ok(out),
                (Tok::Word(w), p) => {
                    let w = w.trim_end_matches(',');
                    match protocol_number(w) {
                        Some(n) if !out.contains(&n) => out.push(n),
                        Some(_) => {}
                        None => self.warn(
                            p,
                            format!("unknown protocol `{w}', ignoring"),
                        ),
                    }
                }
                (t, p) => {
                    return Err(self.found(t, p, &format!("a protocol name or `}}' closing the list opened at {open}")));
                }
            }
        }
    }

    /// `{ IPv4_address 10.0.0.0/8 IPv6_address ::1 … }`.
    fn address_list(&mut self, name: &str) -> Result<Vec<Cidr>> {
        let mut out = Vec::new();
        self.block(name, &["IPv4_address", "IPv6_address"], |p, kw, _| {
            let v6 = match kw {
                "IPv4_address" => false,
                "IPv6_address" => true,
                _ => return Ok(false),
            };
            let (w, wp) = p.word(if v6 {
                "an IPv6 address"
            } else {
                "an IPv4 address"
            })?;
            let w = w.trim_end_matches(',');
            match parse_cidr(w, v6) {
                Ok(c) if out.contains(&c) => {
                    p.warn(
                        wp,
                        format!("IP {w} is repeated in the ignore pool"),
                    );
                }
                Ok(c) => out.push(c),
                Err(msg) => p.warn(wp, msg),
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// `{ ESTABLISHED CLOSED … for TCP … }`.
    fn state_list(&mut self) -> Result<Vec<TcpState>> {
        let open = self.open("the State list")?;
        let mut out = Vec::new();
        let mut pending = false;
        loop {
            match self.next() {
                (Tok::Close, p) => {
                    if pending {
                        return Err(self.found(
                            Tok::Close,
                            p,
                            "`for TCP' after the states",
                        ));
                    }
                    return Ok(out);
                }
                (Tok::Word("for"), _) => {
                    match self.word("TCP")? {
                        (w, _) if w.eq_ignore_ascii_case("tcp") => {}
                        (w, p) => {
                            return Err(self.found(
                                Tok::Word(w),
                                p,
                                "TCP (states exist for TCP only)",
                            ));
                        }
                    }
                    pending = false;
                }
                (Tok::Word(w), p) => {
                    let w = w.trim_end_matches(',');
                    let s = tcp_state(w).ok_or_else(|| {
                        self.found(Tok::Word(w), p, "a TCP state (SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSED, LISTEN) or `for'")
                    })?;
                    if !out.contains(&s) {
                        out.push(s);
                    }
                    pending = true;
                }
                (t, p) => {
                    return Err(self.found(t, p, &format!("a TCP state or `}}' closing the list opened at {open}")));
                }
            }
        }
    }

    fn sync(&mut self, pos: Pos) -> Result<()> {
        if self.sync.is_none() {
            self.sync = Some((Sync::default(), pos));
        }
        self.block("Sync", SYNC, |p, kw, pos| {
            match kw {
                "Mode" => p.mode()?,
                "Multicast" => p.channel("Multicast", pos)?,
                "UDP" => p.channel("UDP", pos)?,
                "TCP" => p.channel("TCP", pos)?,
                "Options" => p.options()?,
                "RefreshTime" | "CacheTimeout" | "CommitTimeout" | "PurgeTimeout" => {
                    p.timer_clause(kw)?;
                }
                "Checksum" => {
                    p.boolean()?;
                    p.warn(pos, "the use of `Checksum' outside the `Multicast' clause is ambiguous; ignoring it (set Checksum inside the link block)");
                }
                "RelaxTransitions" | "DelayDestroyMessages" | "CacheWriteThrough"
                | "DestroyTimeout" | "ListenTo" => {
                    p.warn(pos, format!("the clause `{kw}' is obsolete, ignoring"));
                    p.skip_obsolete_value();
                }
                "Replicate" => {
                    p.warn(pos, "the clause `Replicate' is obsolete. Use `Filter' instead");
                    loop {
                        let (w, _) = p.word("`for <protocol>' ending Replicate")?;
                        if w == "for" {
                            p.word("a protocol")?;
                            break;
                        }
                    }
                }
                _ => return Ok(false),
            }
            Ok(true)
        })
    }

    fn sync_mut(&mut self) -> &mut Sync {
        // `sync()` creates the section before any of its clauses is parsed.
        &mut self
            .sync
            .get_or_insert_with(|| (Sync::default(), Pos::default()))
            .0
    }

    /// Timer clauses allowed both in `Sync` and in the mode blocks.
    fn timer_clause(&mut self, kw: &str) -> Result<()> {
        let n = self.number()?;
        let s = self.sync_mut();
        match kw {
            "RefreshTime" => s.refresh_time = if n == 0 { 60 } else { n },
            "CacheTimeout" => s.cache_timeout = if n == 0 { 180 } else { n },
            "CommitTimeout" => s.commit_timeout = (n > 0).then_some(n),
            _ => s.purge_timeout = if n == 0 { 60 } else { n },
        }
        Ok(())
    }

    fn mode(&mut self) -> Result<()> {
        let (w, pos) = self.word("a sync mode (FTFW, NOTRACK or ALARM)")?;
        let mode = match w.to_ascii_lowercase().as_str() {
            "ftfw" => Mode::FtFw,
            "notrack" => Mode::NoTrack,
            "alarm" => Mode::Alarm,
            "nack" => {
                self.warn(pos, "Now `nack' mode is called `ftfw'. Please, update your conntrackd.conf file.");
                Mode::FtFw
            }
            "persistent" => {
                self.warn(pos, "Now `persistent' mode is called `alarm'. Please, update your conntrackd.conf file.");
                Mode::Alarm
            }
            _ => {
                return Err(self.found(
                    Tok::Word(w),
                    pos,
                    "a sync mode (FTFW, NOTRACK or ALARM)",
                ));
            }
        };
        self.modes.push((mode, pos));
        let (name, keywords) = match mode {
            Mode::FtFw => ("Mode FTFW", FTFW),
            Mode::NoTrack => ("Mode NOTRACK", NOTRACK),
            Mode::Alarm => ("Mode ALARM", ALARM),
        };
        self.block(name, keywords, |p, kw, pos| {
            let allowed = keywords.contains(&kw);
            match kw {
                _ if !allowed => match (mode, kw) {
                    (Mode::FtFw, "ResendBufferSize") => {
                        p.number()?;
                        p.warn(pos, "`ResendBufferSize' is deprecated. Use `ResendQueueSize' instead");
                    }
                    (Mode::Alarm, "RelaxTransitions" | "DelayDestroyMessages") => {
                        p.warn(pos, format!("the clause `{kw}' is obsolete, ignoring"));
                        p.skip_obsolete_value();
                    }
                    _ => return Ok(false),
                },
                "ResendQueueSize" => {
                    let n = p.number()?;
                    p.sync_mut().resend_queue_size = if n == 0 { 131072 } else { n };
                }
                "ACKWindowSize" => {
                    let n = p.number()?;
                    p.sync_mut().ack_window_size = if n == 0 { 300 } else { n };
                }
                "DisableExternalCache" => {
                    let b = p.boolean()?;
                    p.sync_mut().disable_external_cache = b;
                }
                "DisableInternalCache" => {
                    let b = p.boolean()?;
                    p.sync_mut().disable_internal_cache = b;
                }
                "StartupResync" => {
                    let b = p.boolean()?;
                    p.sync_mut().startup_resync = b;
                }
                _ => p.timer_clause(kw)?,
            }
            Ok(true)
        })
    }

    fn options(&mut self) -> Result<()> {
        self.block("Options", OPTIONS, |p, kw, _| {
            match kw {
                "TCPWindowTracking" => {
                    let b = p.boolean()?;
                    p.sync_mut().tcp_window_tracking = b;
                }
                "ExpectationSync" => p.expectation_sync()?,
                _ => return Ok(false),
            }
            Ok(true)
        })
    }

    fn expectation_sync(&mut self) -> Result<()> {
        match self.next() {
            (Tok::Word(w), p) => match parse_bool(w) {
                Some(true) => {
                    self.sync_mut().expectation_sync = ExpectationSync::All
                }
                // As in conntrackd, `Off` does not undo an earlier `On`.
                Some(false) => {}
                None => {
                    return Err(self.found(
                        Tok::Word(w),
                        p,
                        "On, Off or `{' with helper names",
                    ));
                }
            },
            (Tok::Open, open) => {
                let mut names: Vec<HelperName> = Vec::new();
                loop {
                    match self.next() {
                        (Tok::Close, _) => break,
                        (Tok::Word(w), p) => {
                            let mut name = HelperName::new();
                            if name.push_str(w).is_err() {
                                return Err(self.found(
                                    Tok::Word(w),
                                    p,
                                    "a helper name of at most 15 characters",
                                ));
                            }
                            if !names.iter().any(|n| n.eq_ignore_ascii_case(w))
                            {
                                names.push(name);
                            }
                        }
                        (t, p) => {
                            return Err(self.found(t, p, &format!("a helper name or `}}' closing the list opened at {open}")));
                        }
                    }
                }
                let s = self.sync_mut();
                match &mut s.expectation_sync {
                    ExpectationSync::All => {}
                    ExpectationSync::Helpers(list) => {
                        for n in names {
                            if !list.iter().any(|m| m.eq_ignore_ascii_case(&n))
                            {
                                list.push(n);
                            }
                        }
                    }
                    e @ ExpectationSync::Off => {
                        *e = ExpectationSync::Helpers(names)
                    }
                }
            }
            (t, p) => {
                return Err(self.found(
                    t,
                    p,
                    "On, Off or `{' with helper names",
                ));
            }
        }
        Ok(())
    }

    fn channel(&mut self, kind: &'static str, pos: Pos) -> Result<()> {
        let mut default = false;
        if let (Tok::Word("Default"), _) = self.peek() {
            self.next();
            default = true;
        }
        let keywords = match kind {
            "Multicast" => MCAST,
            "UDP" => UDP,
            _ => TCP,
        };
        let mut interface: Option<IfName> = None;
        let mut addr: Option<IpAddr> = None;
        let mut dest: Option<IpAddr> = None;
        let mut mcast_if: Option<Ipv4Addr> = None;
        let mut port: Option<u16> = None;
        let mut snd = 0;
        let mut rcv = 0;
        let mut checksum = true;
        let mut error_queue = None;
        self.block(kind, keywords, |p, kw, kpos| {
            match (kind, kw) {
                (_, "IPv4_address") => addr = Some(IpAddr::V4(p.ipv4()?)),
                (_, "IPv6_address") => addr = Some(IpAddr::V6(p.ipv6()?)),
                ("Multicast", "IPv4_interface") => mcast_if = Some(p.ipv4()?),
                ("Multicast", "IPv6_interface") => {
                    p.ipv6()?;
                    p.warn(kpos, "`IPv6_interface' not required, ignoring");
                }
                ("Multicast", "Group") => port = Some(p.port()?),
                ("Multicast", "Backlog") => {
                    p.number()?;
                    p.warn(kpos, "`Backlog' option inside Multicast clause is obsolete. Please, remove it from conntrackd.conf");
                }
                ("Multicast", "McastSndSocketBuffer") => snd = p.number()?,
                ("Multicast", "McastRcvSocketBuffer") => rcv = p.number()?,
                ("UDP" | "TCP", "IPv4_Destination_Address") => {
                    dest = Some(IpAddr::V4(p.ipv4()?));
                }
                ("UDP" | "TCP", "IPv6_Destination_Address") => {
                    dest = Some(IpAddr::V6(p.ipv6()?));
                }
                ("UDP" | "TCP", "Port") => port = Some(p.port()?),
                ("TCP", "ErrorQueueLength") => error_queue = Some(p.number()?),
                (_, "Interface") => interface = Some(p.ifname()?),
                (_, "SndSocketBuffer") => snd = p.number()?,
                (_, "RcvSocketBuffer") => rcv = p.number()?,
                (_, "Checksum") => checksum = p.boolean()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;

        let need = |p: &Self, what: &str| {
            p.err(pos, format!("the {kind} block needs `{what}'"))
        };
        let interface = interface.ok_or_else(|| need(self, "Interface"))?;
        let port = match port {
            Some(n) if n > 0 => n,
            _ => {
                return Err(need(
                    self,
                    if kind == "Multicast" { "Group" } else { "Port" },
                ));
            }
        };
        let transport = if kind == "Multicast" {
            let group =
                addr.ok_or_else(|| need(self, "IPv4_address or IPv6_address"))?;
            if !group.is_multicast() {
                return Err(self.err(pos, format!("the Multicast block's address {group} is not a multicast group")));
            }
            if group.is_ipv6() && mcast_if.is_some() {
                self.warn(pos, "your multicast address is IPv6 but is binded to an IPv4 interface? Surely this is not what you want");
            }
            Transport::Multicast {
                group,
                ipv4_interface: mcast_if,
                port,
            }
        } else {
            let dest = dest.ok_or_else(|| {
                need(
                    self,
                    "IPv4_Destination_Address or IPv6_Destination_Address",
                )
            })?;
            if let Some(local) = addr
                && local.is_ipv4() != dest.is_ipv4()
            {
                return Err(self.err(pos, format!("the {kind} block mixes an IPv4 and an IPv6 address ({local}, {dest})")));
            }
            if kind == "UDP" {
                Transport::Udp {
                    local: addr,
                    dest,
                    port,
                }
            } else {
                Transport::Tcp {
                    local: addr,
                    dest,
                    port,
                }
            }
        };
        let s = self.sync_mut();
        if let Some(n) = error_queue {
            s.error_queue_length = if n == 0 { 128 } else { n };
        }
        s.channels.push(Channel {
            transport,
            default,
            interface,
            snd_buffer: snd,
            rcv_buffer: rcv,
            checksum,
        });
        self.channel_pos.push(pos);
        Ok(())
    }

    fn stats(&mut self, pos: Pos) -> Result<()> {
        self.stats_pos.get_or_insert(pos);
        let mut stats = self.cfg.stats.take().unwrap_or_default();
        self.block("Stats", STATS, |p, kw, kpos| {
            match kw {
                "LogFile" => {
                    stats.log_file = p.log_target(DEFAULT_STATS_LOG_FILE)?.0
                }
                "Syslog" => stats.syslog = p.syslog(stats.syslog)?,
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

    // ===== validation after the whole file was read =====

    fn finish(mut self) -> Result<Parsed> {
        let (path, _) = match self.unix_path.take() {
            Some(u) => u,
            None => {
                let end = self.lx.next_token().1;
                return Err(self.err(end, "missing `UNIX { Path … }' in General: the control socket path is required"));
            }
        };
        self.cfg.general.unix_path = path;

        if let (Some((_, sp)), Some(tp)) = (&self.sync, self.stats_pos) {
            let later = if (sp.line, sp.col) > (tp.line, tp.col) {
                *sp
            } else {
                tp
            };
            return Err(self.err(
                later,
                "cannot use both `Stats' and `Sync' clauses in conntrackd.conf",
            ));
        }
        if let (Some(g), Some(s)) = (
            self.cfg.general.syslog,
            self.cfg.stats.as_ref().and_then(|s| s.syslog),
        ) && g != s
        {
            let pos = self.stats_pos.unwrap_or_default();
            self.warn(
                pos,
                "conflicting Syslog facility values, defaulting to General",
            );
        }

        if let Some((mut sync, spos)) = self.sync.take() {
            self.finish_sync(&mut sync, spos)?;
            self.cfg.sync = Some(sync);
        }
        Ok(Parsed {
            config: self.cfg,
            warnings: self.warnings,
        })
    }

    fn finish_sync(&mut self, sync: &mut Sync, spos: Pos) -> Result<()> {
        // conntrackd's precedence when several modes are given.
        let modes: Vec<Mode> = self.modes.iter().map(|m| m.0).collect();
        sync.mode = [Mode::FtFw, Mode::Alarm, Mode::NoTrack]
            .into_iter()
            .find(|m| modes.contains(m))
            .unwrap_or_else(|| {
                self.warnings.push(Diagnostic {
                    file: self.file.to_string(),
                    pos: spos,
                    msg: "No synchronization mode specified. Defaulting to FT-FW mode.".into(),
                });
                Mode::FtFw
            });
        if self.modes.len() > 1 {
            let pos = self.modes[1].1;
            let used = sync.mode;
            self.warn(
                pos,
                format!("several `Mode' clauses given; using {used}"),
            );
        }

        if sync.channels.is_empty() {
            return Err(self.err(
                spos,
                "Sync needs a dedicated link: a Multicast, UDP or TCP block",
            ));
        }
        if sync.channels.len() > MAX_CHANNELS {
            let pos = self.channel_pos[MAX_CHANNELS];
            return Err(self.err(pos, format!("too many dedicated links in the configuration file (Maximum: {MAX_CHANNELS})")));
        }
        let first = sync.channels[0].transport.kind();
        if let Some(i) = sync
            .channels
            .iter()
            .position(|c| c.transport.kind() != first)
        {
            let kind = sync.channels[i].transport.kind();
            return Err(self.err(
                self.channel_pos[i],
                format!(
                    "cannot use `{kind}' with other dedicated link protocols!"
                ),
            ));
        }
        let defaults: Vec<usize> = (0..sync.channels.len())
            .filter(|&i| sync.channels[i].default)
            .collect();
        if defaults.len() > 1 {
            let pos = self.channel_pos[defaults[1]];
            self.warn(
                pos,
                "several links are marked `Default'; the first one is used",
            );
            for &i in &defaults[1..] {
                sync.channels[i].default = false;
            }
        }

        match sync.mode {
            Mode::FtFw | Mode::Alarm if sync.disable_internal_cache => {
                return Err(self.err(spos, format!("`DisableInternalCache' is only supported in NOTRACK mode, not {}", sync.mode)));
            }
            Mode::Alarm if sync.disable_external_cache => {
                return Err(self.err(
                    spos,
                    "`DisableExternalCache' is not supported in ALARM mode",
                ));
            }
            _ => {}
        }
        if sync.disable_external_cache && sync.commit_timeout.is_some() {
            self.warn(spos, "`CommitTimeout' can't be combined with `DisableExternalCache', ignoring this option. Fix your configuration file.");
            sync.commit_timeout = None;
        }
        Ok(())
    }
}

// ===== helper functions =====

fn parse_u32(w: &str) -> Option<u32> {
    if w.is_empty() || !w.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    w.parse().ok()
}

/// conntrackd accepts on/off in any case, and (1.4.7) yes/no.
fn parse_bool(w: &str) -> Option<bool> {
    match w.to_ascii_lowercase().as_str() {
        "on" | "yes" => Some(true),
        "off" | "no" => Some(false),
        _ => None,
    }
}

fn add_rule<T: PartialEq>(
    slot: &mut Option<Rule<T>>,
    logic: Logic,
    items: Vec<T>,
) {
    let rule = slot.get_or_insert(Rule {
        logic,
        items: Vec::new(),
    });
    rule.logic = logic;
    for i in items {
        if !rule.items.contains(&i) {
            rule.items.push(i);
        }
    }
}

fn parse_cidr(w: &str, v6: bool) -> std::result::Result<Cidr, String> {
    let (a, prefix) = match w.split_once('/') {
        Some((a, n)) => (a, Some(n)),
        None => (w, None),
    };
    let family = if v6 { "IPv6" } else { "IPv4" };
    let addr: IpAddr = if v6 {
        a.parse::<Ipv6Addr>().map(IpAddr::V6)
    } else {
        a.parse::<Ipv4Addr>().map(IpAddr::V4)
    }
    .map_err(|_| format!("{a} is not a valid {family}, ignoring"))?;
    let max = if v6 { 128 } else { 32 };
    let prefix = match prefix {
        None => max,
        Some(n) => match parse_u32(n) {
            Some(n) if n <= max as u32 => n as u8,
            _ => {
                return Err(format!(
                    "{a}/{n} is not a valid network, ignoring"
                ));
            }
        },
    };
    Ok(Cidr { addr, prefix })
}

/// The protocol names conntrackd users write (resolved by conntrackd through
/// /etc/protocols, whose names and aliases these are), or a number.
fn protocol_number(w: &str) -> Option<u8> {
    if let Some(n) = parse_u32(w) {
        return u8::try_from(n).ok();
    }
    Some(match w.to_ascii_lowercase().as_str() {
        "icmp" => 1,
        "igmp" => 2,
        "tcp" => 6,
        "udp" => 17,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "ipv6-icmp" | "icmpv6" | "icmp6" => 58,
        "dccp" => 33,
        "sctp" => 132,
        "udplite" => 136,
        _ => return None,
    })
}

fn tcp_state(w: &str) -> Option<TcpState> {
    Some(match w {
        "SYN_SENT" => TcpState::SynSent,
        "SYN_RECV" => TcpState::SynRecv,
        "ESTABLISHED" => TcpState::Established,
        "FIN_WAIT" => TcpState::FinWait,
        "CLOSE_WAIT" => TcpState::CloseWait,
        "LAST_ACK" => TcpState::LastAck,
        "TIME_WAIT" => TcpState::TimeWait,
        "CLOSED" | "CLOSE" => TcpState::Close,
        "LISTEN" => TcpState::Listen,
        _ => return None,
    })
}
