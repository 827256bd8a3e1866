//! A `-i`/`-e` dump's parts: cached entries rendered in the asked format
//! with what the cache adds to each (`[expires in]`, `[active since]`),
//! a part at a time so that a large cache is written in slices. Pure.

use std::time::Duration;

use super::digits::push_u64;
use super::entries::{ct_line_into, exp_line};
use super::json::{ct_json, exp_json};
use super::xml::{ct_xml, ct_xml_with, exp_xml};
use crate::cache::Entry;
use crate::control::proto::Format;
use crate::model::{Conntrack, Expect};
use crate::time::Instant;

/// A plain IPv4 TCP line with its times is about this long; XML and JSON
/// are longer and grow the buffer once or twice.
const LINE_GUESS: usize = 160;

/// How one cached value renders in each format.
struct Renderers<'a, V> {
    /// Appends the line (without its newline).
    plain: &'a dyn Fn(&mut String, &V),
    xml: &'a dyn Fn(&V) -> String,
    json: &'a dyn Fn(&V, u64) -> String,
}

/// Entries in one format: plain lines with `[expires in]` (ALARM) and
/// `[active since]`, one XML element per line, or JSON objects separated
/// by commas (`first`: no comma before the first; the caller writes the
/// array's brackets).
fn render_part<V>(
    entries: impl Iterator<Item = Entry<V>>,
    first: bool,
    now: Instant,
    f: Format,
    expiry: Option<Duration>,
    r: &Renderers<'_, V>,
) -> String {
    // About a line's length per entry, so that a part's text is not
    // copied each time it doubles.
    let mut out = String::with_capacity(
        entries
            .size_hint()
            .1
            .unwrap_or(0)
            .saturating_mul(LINE_GUESS),
    );
    for (i, e) in entries.enumerate() {
        let since = now.since(e.since).as_secs();
        match f {
            Format::Plain => {
                (r.plain)(&mut out, &e.value);
                if let Some(life) = expiry {
                    let left =
                        life.saturating_sub(now.since(e.updated)).as_secs();
                    out.push_str(" [expires in ");
                    push_u64(&mut out, left);
                    out.push_str("s]");
                }
                out.push_str(" [active since ");
                push_u64(&mut out, since);
                out.push_str("s]\n");
            }
            Format::Xml => {
                out.push_str(&(r.xml)(&e.value));
                out.push('\n');
            }
            Format::Json => {
                if i > 0 || !first {
                    out.push(',');
                }
                out.push_str(&(r.json)(&e.value, since));
            }
        }
    }
    out
}

/// A part of a `-i` / `-e` dump of conntracks (see [`render_part`]).
pub fn ct_part(
    entries: impl Iterator<Item = Entry<Conntrack>>,
    first: bool,
    now: Instant,
    f: Format,
    external: bool,
    expiry: Option<Duration>,
) -> String {
    let plain = |s: &mut String, ct: &Conntrack| {
        ct_line_into(s, ct, external, false, false, false)
    };
    let xml = |ct: &Conntrack| ct_xml(ct, external);
    let r = Renderers {
        plain: &plain,
        xml: &xml,
        json: &ct_json,
    };
    render_part(entries, first, now, f, expiry, &r)
}

/// A Stats-mode daemon's `-i` (see [`render_part`]): each flow, with
/// whether the kernel reported its mark, as [`super::ct_line`] prints it
/// but with a reported mark even when it is 0 (conntrackd keeps what the
/// kernel's events and dumps carry, and libnetfilter_conntrack prints a
/// mark that is set).
pub fn stats_part(
    entries: impl Iterator<Item = Entry<(Conntrack, bool)>>,
    now: Instant,
    f: Format,
) -> String {
    let xml = |(ct, told): &(Conntrack, bool)| ct_xml_with(ct, false, *told);
    let plain = |s: &mut String, (ct, told): &(Conntrack, bool)| {
        ct_line_into(s, ct, false, false, *told, false)
    };
    let json = |(ct, _): &(Conntrack, bool), since| ct_json(ct, since);
    let r = Renderers {
        plain: &plain,
        xml: &xml,
        json: &json,
    };
    render_part(entries, true, now, f, None, &r)
}

/// A part of a `-i expect` / `-e expect` dump (see [`render_part`]).
pub fn exp_part(
    entries: impl Iterator<Item = Entry<Expect>>,
    first: bool,
    now: Instant,
    f: Format,
    expiry: Option<Duration>,
) -> String {
    let plain = |s: &mut String, x: &Expect| s.push_str(&exp_line(x));
    let r = Renderers {
        plain: &plain,
        xml: &exp_xml,
        json: &exp_json,
    };
    render_part(entries, first, now, f, expiry, &r)
}
