//! Recursive-descent parser for conntrackd.conf (conntrack-tools 1.4.x).
//!
//! Owns: the grammar driver: the parser state, the token and block helpers
//! every section uses, and the top level of the file (sections, and the
//! obsolete top-level clauses conntrackd still accepts with a warning).
//! The clauses of each section live in the submodules below. Errors stop
//! the parse with `file:line:col: found X, expected Y`; deprecated or
//! obsolete clauses produce warnings and are otherwise ignored, as
//! conntrackd does. Never panics on any input.

mod channel;
mod filter;
mod general;
mod sync;
#[cfg(test)]
mod test_paths;
mod validate;
mod values;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::lexer::{Lexer, Pos, Tok};
use crate::config::{
    Clauses, Config, Diagnostic, Facility, Logic, Mode, Parsed, Sync,
};
use crate::personality::{self, Personality};
use filter::{add_addresses, add_rule};

type Result<T> = std::result::Result<T, Diagnostic>;

/// Parses a whole configuration text with ctsyncd's own defaults. `file`
/// is used in diagnostics only.
pub fn parse(src: &str, file: &str) -> Result<Parsed> {
    parse_as(src, file, &personality::CTSYNCD)
}

/// Parses a whole configuration text; the default paths (`LockFile`,
/// `LogFile on`) are those of `personality`.
pub fn parse_as(
    src: &str,
    file: &str,
    personality: &'static Personality,
) -> Result<Parsed> {
    let mut cfg = Config::default();
    cfg.general.lock_file = PathBuf::from(personality.lock_file);
    let mut p = Parser {
        lx: Lexer::new(src),
        peeked: None,
        file,
        personality,
        warnings: Vec::new(),
        cfg,
        first_seen: BTreeMap::new(),
        sync: None,
        stats_pos: None,
        stats_facility: None,
        modes: Vec::new(),
        channel_pos: Vec::new(),
        unix_path: None,
        peer_protocol_pos: None,
        internal_cache_off: None,
        external_cache_off: None,
    };
    p.file_body()?;
    p.finish()
}

// ===== the parser state =====

struct Parser<'a> {
    lx: Lexer<'a>,
    peeked: Option<(Tok<'a>, Pos)>,
    file: &'a str,
    personality: &'static Personality,
    warnings: Vec<Diagnostic>,
    cfg: Config,
    /// Where each clause keyword first appears (for the start-up warnings
    /// about clauses that are parsed but not acted on).
    first_seen: BTreeMap<String, Pos>,
    /// The Sync section being built, and where it was first opened.
    sync: Option<(Sync, Pos)>,
    stats_pos: Option<Pos>,
    /// The last facility a Stats `Syslog` clause named, which alone is
    /// compared with General's (as conntrackd compares them).
    stats_facility: Option<Facility>,
    /// Every `Mode` clause seen, for conntrackd's precedence rule.
    modes: Vec<(Mode, Pos)>,
    /// Where each channel block started, parallel to `Sync::channels`.
    channel_pos: Vec<Pos>,
    unix_path: Option<(PathBuf, Pos)>,
    /// Where `PeerProtocol` was given (it may contradict a key).
    peer_protocol_pos: Option<Pos>,
    /// The clauses that turned the internal and the external cache off,
    /// for the message when the mode used cannot run without them.
    internal_cache_off: Option<Pos>,
    external_cache_off: Option<Pos>,
}

const TOP: &[&str] = &["General", "Sync", "Stats", "Helper"];

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
        // conntrackd refuses a comma wherever it stands, so a list
        // written with commas (`{ TCP, UDP }`) is the usual cause.
        let hint = if tok == Tok::Comma {
            " (items are separated by spaces: conntrackd refuses commas)"
        } else {
            ""
        };
        self.err(pos, format!("found {tok}, expected {expected}{hint}"))
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
                    self.seen(w, p);
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
                // Skipped unread, but a comma is refused here too, as
                // conntrackd's grammar refuses it inside these sections.
                (Tok::Comma, p) => {
                    return Err(self.found(
                        Tok::Comma,
                        p,
                        &format!("a clause or `}}' of the {name} section"),
                    ));
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
                _ => {}
            }
        }
        Ok(())
    }

    // ===== sections =====

    /// Records the first place of a clause keyword.
    fn seen(&mut self, keyword: &str, pos: Pos) {
        if !self.first_seen.contains_key(keyword) {
            self.first_seen.insert(keyword.to_string(), pos);
        }
    }

    /// Hands the clause positions to the result.
    fn clauses(&mut self) -> Clauses {
        Clauses {
            file: self.file.to_string(),
            first_seen: std::mem::take(&mut self.first_seen),
        }
    }

    fn file_body(&mut self) -> Result<()> {
        loop {
            if let (Tok::Word(w), p) = self.peek() {
                self.seen(w, p);
            }
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
                    add_addresses(
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
}
