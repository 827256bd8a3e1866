//! Renderings for the control socket: the cache dumps ([`entries`]) and
//! the statistics views ([`mod@stats`]). Pure.

mod digits;
mod entries;
mod stats;
#[cfg(test)]
mod test_entries;

pub use entries::{
    ct_json, ct_line, ct_line_counted, ct_line_kernel, ct_part, ct_xml,
    exp_json, exp_line, exp_part, exp_xml, stats_part,
};
pub use stats::{LinkView, cache_extended, runtime_text, stats, uptime};
