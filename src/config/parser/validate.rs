//! Validation after the whole file was read: the mandatory control
//! socket, Sync/Stats exclusion, conntrackd's mode precedence, the
//! dedicated-link limits and the cache options each mode allows.

use super::{Parser, Result};
use crate::config::lexer::Pos;
use crate::config::{
    Diagnostic, MAX_CHANNELS, Mode, Parsed, PeerProtocol, Sync,
};

impl<'a> Parser<'a> {
    pub(super) fn finish(mut self) -> Result<Parsed> {
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
        if let (Some(g), Some(s)) =
            (self.cfg.general.syslog, self.stats_facility)
            && g != s
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
        let clauses = self.clauses();
        Ok(Parsed {
            config: self.cfg,
            warnings: self.warnings,
            clauses,
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
        // conntrackd makes each `Default' link current as it opens them,
        // so the last one marked is the one that sends.
        if let [first, .., last] = defaults[..] {
            let at = self.channel_pos[first];
            self.warn(
                self.channel_pos[last],
                format!("several links are marked `Default' (the first at {at}); the last one is used, as by conntrackd"),
            );
            for &i in &defaults[..defaults.len() - 1] {
                sync.channels[i].default = false;
            }
        }

        // Only another Mode block can have set these: the message points
        // at the clause, not at the Sync section.
        match sync.mode {
            Mode::FtFw | Mode::Alarm if sync.disable_internal_cache => {
                let at = self.internal_cache_off.unwrap_or(spos);
                return Err(self.err(at, format!("`DisableInternalCache' is only supported in NOTRACK mode, not {}", sync.mode)));
            }
            Mode::Alarm if sync.disable_external_cache => {
                return Err(self.err(
                    self.external_cache_off.unwrap_or(spos),
                    "`DisableExternalCache' is not supported in ALARM mode",
                ));
            }
            _ => {}
        }
        if sync.peer_protocol == PeerProtocol::Conntrackd
            && !sync.authentication_keys.is_empty()
        {
            let pos = self.peer_protocol_pos.unwrap_or(spos);
            return Err(self.err(
                pos,
                "`PeerProtocol conntrackd' cannot be combined with `AuthenticationKeyFile': conntrackd's protocol carries no authentication",
            ));
        }
        if sync.disable_external_cache && sync.commit_timeout.is_some() {
            self.warn(spos, "`CommitTimeout' can't be combined with `DisableExternalCache', ignoring this option. Fix your configuration file.");
            sync.commit_timeout = None;
        }
        Ok(())
    }
}

#[cfg(test)]
mod test {
    /// conntrackd 1.4.7 compares General's facility with the one Stats
    /// names; Stats' `Syslog on`/`off` name none and leave it as it was
    /// (observed: no warning for General `local1` with Stats `on`, one
    /// for Stats `local1` then `off` against General `local0`).
    #[test]
    fn only_a_facility_stats_names_conflicts_with_generals() {
        let warnings = |general: &str, stats: &str| {
            let text = format!(
                "General {{ UNIX {{ Path /run/s.ctl }} {general} }}\n\
                 Stats {{ {stats} }}\n"
            );
            let p = crate::config::parse(&text, "f.conf").unwrap();
            p.warnings.iter().map(|d| d.msg.clone()).collect::<Vec<_>>()
        };
        let conflict =
            ["conflicting Syslog facility values, defaulting to General"];
        assert_eq!(warnings("Syslog local1", "Syslog on"), [""; 0]);
        assert_eq!(warnings("Syslog local0", "Syslog daemon"), conflict);
        assert_eq!(warnings("Syslog on", "Syslog local1"), conflict);
        assert_eq!(
            warnings("Syslog local0", "Syslog local1 Syslog off"),
            conflict
        );
        assert_eq!(
            warnings("Syslog local0", "Syslog local1 Syslog on"),
            conflict
        );
        assert_eq!(
            warnings("Syslog local1 Syslog off", "Syslog local2"),
            [""; 0]
        );
        assert_eq!(
            warnings("Syslog local2 Syslog on", "Syslog local2"),
            conflict
        );
        assert_eq!(warnings("", "Syslog local2"), [""; 0]);
    }
}
