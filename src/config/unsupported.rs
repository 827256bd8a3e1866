//! Which parts of a valid configuration this build accepts but does not
//! act on yet (user-space helpers, the flow logger, polling mode, …), so
//! the daemon can warn about each at start instead of ignoring it silently.

use super::Config;

/// Features the configuration asks for that this build does not provide
/// yet. The daemon logs one warning per entry at start, so nothing the
/// user wrote is silently ignored.
pub fn not_implemented(cfg: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    if cfg.helper_section {
        out.push("Helper: user-space conntrack helpers are not implemented");
    }
    if cfg
        .sync
        .as_ref()
        .is_some_and(|s| s.channels.iter().any(|c| !c.checksum))
    {
        out.push("Checksum off: UDP checksums stay on");
    }
    out
}
