//! The words after an option (`-c ct`, `-f internal`, `-s cache`), as
//! conntrackd matches them: by prefix (`strncmp` over the word's length),
//! tried in its order, so `-s c` is `cache`; an unknown word is refused.

use super::CliError;
use crate::control::proto::{StatsView, Target};

/// conntrackd's `strncmp(word, keyword, strlen(word)) == 0`: true for
/// an empty word too, so `-f ""` is `-f internal` in conntrackd 1.4.7.
pub(super) fn prefix_of(word: &str, keyword: &str) -> bool {
    keyword.starts_with(word)
}

/// A word an option does not know. conntrackd refuses it at once for
/// `-f` and `-s` (no usage); after `-c`, `-i`, `-e`, `-F` or `-R` it reads
/// the word as an option and refuses that, after the usage.
pub(super) fn unknown_param(word: &str, option: char) -> CliError {
    let message = format!("unknown parameter `{word}' for option `-{option}'");
    if matches!(option, 'f' | 's') {
        CliError::bare(message)
    } else {
        CliError::new(message)
    }
}

/// `ct` or `expect` by prefix.
pub(super) fn ct_or_expect(
    word: &str,
    option: char,
) -> Result<Option<Target>, CliError> {
    if prefix_of(word, "ct") {
        Ok(Some(Target::Ct))
    } else if prefix_of(word, "expect") {
        Ok(Some(Target::Expect))
    } else {
        Err(unknown_param(word, option))
    }
}

/// The `-s` views, tried in conntrackd's order so that `-s c` is `cache`.
pub(super) fn stats_view(
    word: &str,
    warnings: &mut Vec<String>,
) -> Result<StatsView, CliError> {
    const ORDER: [(&str, StatsView); 11] = [
        ("network", StatsView::Network),
        ("cache", StatsView::Cache),
        ("runtime", StatsView::Runtime),
        ("multicast", StatsView::Link),
        ("link", StatsView::Link),
        ("rsqueue", StatsView::RsQueue),
        ("process", StatsView::Process),
        ("queue", StatsView::Queue),
        ("ct", StatsView::General),
        ("expect", StatsView::Expect),
        ("ready", StatsView::Ready),
    ];
    let (name, view) = ORDER
        .iter()
        .find(|(name, _)| prefix_of(word, name))
        .ok_or_else(|| unknown_param(word, 's'))?;
    if *name == "multicast" {
        warnings.push("use `link' instead of `multicast' as parameter.".into());
    }
    Ok(*view)
}
