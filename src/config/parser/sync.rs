//! The `Sync { }` section: its own clauses, the `Mode FTFW|NOTRACK|ALARM`
//! blocks (with the old `nack`/`persistent` names), `Options`, and the
//! timers allowed in both. Dedicated links are in `channel`.

use super::values::parse_bool;
use super::{Parser, Result};
use crate::config::lexer::{Pos, Tok};
use crate::config::{
    ExpectationSync, HelperName, KeyFile, Mode, NatByteOrder, PeerProtocol,
    RESEND_QUEUE_MAX, Sync,
};

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
const OPTIONS: &[&str] = &[
    "ExpectationSync",
    "TCPWindowTracking",
    "AntiEntropyPeriod",
    "ActivityScan",
    "AuthenticationKeyFile",
    "PeerProtocol",
    "PeerNATByteOrder",
];

impl<'a> Parser<'a> {
    pub(super) fn sync(&mut self, pos: Pos) -> Result<()> {
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

    pub(super) fn sync_mut(&mut self) -> &mut Sync {
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
                    let mut n = p.number()?;
                    if n > RESEND_QUEUE_MAX {
                        // More unacknowledged than a receiver tracks could
                        // never be resent in order (see RESEND_QUEUE_MAX).
                        p.warn(
                            pos,
                            format!(
                                "ResendQueueSize {n} is more than the {RESEND_QUEUE_MAX} messages a receiver tracks, using {RESEND_QUEUE_MAX}"
                            ),
                        );
                        n = RESEND_QUEUE_MAX;
                    }
                    p.sync_mut().resend_queue_size = if n == 0 { 131072 } else { n };
                }
                "ACKWindowSize" => {
                    let n = p.number()?;
                    p.sync_mut().ack_window_size = if n == 0 { 300 } else { n };
                }
                "DisableExternalCache" => {
                    let b = p.boolean()?;
                    p.sync_mut().disable_external_cache = b;
                    p.external_cache_off = b.then_some(pos);
                }
                "DisableInternalCache" => {
                    let b = p.boolean()?;
                    p.sync_mut().disable_internal_cache = b;
                    p.internal_cache_off = b.then_some(pos);
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
                // ctsyncd's own: seconds between digest comparisons with
                // the peer; 0 turns anti-entropy off.
                "AntiEntropyPeriod" => {
                    let n = p.number()?;
                    p.sync_mut().anti_entropy_period = n;
                }
                // ctsyncd's own: seconds between scans of the kernel
                // table for active flows (node::activity); 0: off.
                "ActivityScan" => {
                    let n = p.number()?;
                    p.sync_mut().activity_scan = n;
                }
                "AuthenticationKeyFile" => p.authentication_key_file()?,
                "PeerProtocol" => p.peer_protocol()?,
                "PeerNATByteOrder" => p.peer_nat_byte_order()?,
                _ => return Ok(false),
            }
            Ok(true)
        })
    }

    /// ctsyncd's own clause: the first seals, a second opens too (a key
    /// rotation); a third has no use and is an error. The file itself is
    /// read at start (and by `--check-config`), not here.
    fn authentication_key_file(&mut self) -> Result<()> {
        let (path, pos) = self.path()?;
        let at = format!("{}:{pos}", self.file);
        let keys = &mut self.sync_mut().authentication_keys;
        if keys.len() >= 2 {
            return Err(self.err(
                pos,
                "at most two `AuthenticationKeyFile' clauses (the key that \
                 seals, and the next one during a rotation)",
            ));
        }
        keys.push(KeyFile { path, at });
        Ok(())
    }

    /// ctsyncd's own: `PeerProtocol auto|ctsyncd|conntrackd`.
    fn peer_protocol(&mut self) -> Result<()> {
        let (w, pos) = self.word("auto, ctsyncd or conntrackd")?;
        let proto = match w.to_ascii_lowercase().as_str() {
            "auto" => PeerProtocol::Auto,
            "ctsyncd" => PeerProtocol::Ctsyncd,
            "conntrackd" => PeerProtocol::Conntrackd,
            _ => {
                return Err(self.found(
                    Tok::Word(w),
                    pos,
                    "auto, ctsyncd or conntrackd",
                ));
            }
        };
        self.sync_mut().peer_protocol = proto;
        self.peer_protocol_pos = Some(pos);
        Ok(())
    }

    /// ctsyncd's own: `PeerNATByteOrder 1.4.7|1.4.2`.
    fn peer_nat_byte_order(&mut self) -> Result<()> {
        let (w, pos) = self.word("1.4.7 or 1.4.2")?;
        let order = match w {
            "1.4.7" => NatByteOrder::V147,
            "1.4.2" => NatByteOrder::V142,
            _ => return Err(self.found(Tok::Word(w), pos, "1.4.7 or 1.4.2")),
        };
        self.sync_mut().peer_nat_byte_order = order;
        Ok(())
    }

    fn expectation_sync(&mut self) -> Result<()> {
        match self.next() {
            (Tok::Word(w), p) => match parse_bool(w) {
                // A helper list given before stays (conntrackd's list
                // is apart from its switch).
                Some(true) => {
                    let e = &mut self.sync_mut().expectation_sync;
                    if !matches!(e, ExpectationSync::Helpers(_)) {
                        *e = ExpectationSync::All;
                    }
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
                // As conntrackd: names make a list that filters, even
                // after an `On`; an empty `{ }` only turns replication on
                // (no list: every helper).
                let e = &mut self.sync_mut().expectation_sync;
                match e {
                    ExpectationSync::Helpers(list) => {
                        for n in names {
                            if !list.iter().any(|m| m.eq_ignore_ascii_case(&n))
                            {
                                list.push(n);
                            }
                        }
                    }
                    _ if names.is_empty() => *e = ExpectationSync::All,
                    _ => *e = ExpectationSync::Helpers(names),
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
}
