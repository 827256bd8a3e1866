//! Renderings for the control socket: the cache dumps (the plain lines,
//! [`entries`]; [`xml`]; [`json`]; a dump's parts, [`dumps`]) and the
//! statistics views ([`mod@stats`]). Pure.

mod digits;
mod dumps;
mod entries;
mod json;
mod stats;
mod stats_json;
#[cfg(test)]
mod test_conntrackd;
#[cfg(test)]
mod test_entries;
mod xml;

pub use dumps::{ct_part, exp_part, stats_part};
pub use entries::{
    ct_line, ct_line_counted, ct_line_kernel, ct_line_refused, exp_line,
    exp_line_refused,
};
pub use json::{ct_json, exp_json};
pub use stats::{LinkView, cache_extended, runtime_text, stats, uptime};
pub use stats_json::json_control;
pub use xml::{ct_xml, exp_xml};
