//! What a valid configuration asks for that this build does not act on,
//! and the start-up warnings as a pure function of the parsed file.
//!
//! Owns: [`NOT_IMPLEMENTED`], the one table of clauses that are parsed but
//! not acted on (edit it when a clause gets implemented: the daemon's
//! start-up warnings, `--check-config`, `--strict` and the tests all read
//! it), and [`startup_warnings`], the exact list the daemon logs at start
//! and `--check-config` prints, so the two cannot disagree.

use super::{Clauses, Config, Parsed};

/// A clause that is parsed but not acted on.
#[derive(Debug, Clone, Copy)]
pub struct NotImplemented {
    /// How the warning names it (`Filter From Kernelspace`).
    pub name: &'static str,
    /// The clause keyword whose first occurrence the warning points at.
    pub keyword: &'static str,
    /// What ctsyncd does instead.
    pub effect: &'static str,
    /// Whether this configuration uses it.
    pub used: fn(&Config, &Clauses) -> bool,
}

/// Every clause this build parses but does not act on.
pub const NOT_IMPLEMENTED: &[NotImplemented] = &[
    NotImplemented {
        name: "Helper",
        keyword: "Helper",
        effect: "user-space conntrack helpers are not implemented, the \
                 section is ignored",
        used: |cfg, _| cfg.helper_section,
    },
    // conntrackd's HashSize is the bucket count of its fixed hash tables;
    // ctsyncd's tables grow with their content (no memory is taken before
    // entries arrive), so there is nothing for the number to size.
    NotImplemented {
        name: "HashSize",
        keyword: "HashSize",
        effect: "ignored: the caches grow as entries arrive, up to HashLimit",
        used: |_, clauses| clauses.written("HashSize"),
    },
];

/// `Name: effect` for each clause of [`NOT_IMPLEMENTED`] the parsed file
/// uses, in table order.
pub fn not_implemented(parsed: &Parsed) -> Vec<String> {
    used(parsed)
        .map(|n| format!("{}: {}", n.name, n.effect))
        .collect()
}

/// Every warning the daemon logs at start for this configuration, in the
/// order it logs them: the parser's (each with `file:line:col`), then one
/// per clause that is parsed but not acted on (with the place of its first
/// occurrence when the clause was written). `--check-config` prints the
/// same list and `--strict` fails on any.
pub fn startup_warnings(parsed: &Parsed) -> Vec<String> {
    let mut out: Vec<String> =
        parsed.warnings.iter().map(ToString::to_string).collect();
    for n in used(parsed) {
        out.push(match parsed.clauses.place(n.keyword) {
            Some(at) => format!("{at}: {}: {}", n.name, n.effect),
            None => format!("{}: {}", n.name, n.effect),
        });
    }
    out
}

fn used(parsed: &Parsed) -> impl Iterator<Item = &'static NotImplemented> {
    NOT_IMPLEMENTED
        .iter()
        .filter(|n| (n.used)(&parsed.config, &parsed.clauses))
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::config::parse;

    const UNIX: &str = "General { UNIX { Path /run/t.ctl } }\n";

    #[test]
    fn a_plain_file_has_no_startup_warning() {
        let p = parse(UNIX, "t.conf").unwrap();
        assert!(startup_warnings(&p).is_empty());
        assert!(not_implemented(&p).is_empty());
    }

    #[test]
    fn every_entry_names_its_keyword_and_an_effect() {
        for n in NOT_IMPLEMENTED {
            assert!(n.name.starts_with(n.keyword), "{n:?}");
            assert!(!n.effect.is_empty(), "{n:?}");
        }
    }

    #[test]
    fn parser_warnings_first_then_unimplemented_clauses_with_their_place() {
        let text = "General {\n\tHashSize 8192\n\tUNIX { Path /run/t.ctl Backlog 20 }\n}\nHelper {\n}\n";
        let p = parse(text, "h.conf").unwrap();
        assert_eq!(
            startup_warnings(&p),
            [
                "h.conf:3:25: deprecated unix backlog configuration, ignoring.",
                "h.conf:5:1: Helper: user-space conntrack helpers are not implemented, the section is ignored",
                "h.conf:2:2: HashSize: ignored: the caches grow as entries arrive, up to HashLimit",
            ]
        );
    }
}
