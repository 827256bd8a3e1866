//! Command-line parsing, compatible with conntrackd 1.4.x.
//!
//! Owns: turning `argv` into an [`Invocation`]. Pure (no I/O), so every
//! rule is unit-tested. The rules follow conntrackd (reference §2.1):
//! arguments are read left to right; the last client command wins; `-x`
//! modifies the preceding `-i`/`-e`; optional sub-arguments are consumed
//! only when the next word does not start with `-` and match by prefix
//! (`-i exp`, `-s c` = cache). Deliberate differences: an unknown option or
//! sub-argument exits 1 (conntrackd 1.4.7 exits 0), and `--json` selects
//! JSON output for `-s`, `-i` and `-e`. The default `-C` path and the
//! names in the usage text are those of the [`Personality`] the program
//! was invoked as.

mod words;

use std::fmt;
use std::path::PathBuf;

use self::words::{ct_or_expect, prefix_of, stats_view, unknown_param};
use crate::control::proto::{
    Cache, CacheSel, Format, Request, StatsView, Table, Target,
};
use crate::personality::{CTSYNCD, Personality};

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// `-h`: print the usage text.
    Help,
    /// `-v`: print the version.
    Version,
    /// `--genkey`: print a new `AuthenticationKeyFile` key.
    GenKey,
    /// Load the configuration and then run as `mode`.
    Run { config: PathBuf, mode: RunMode },
}

/// How the process runs once the configuration is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMode {
    /// No command: run the daemon in the foreground.
    Foreground,
    /// `-d`: run the daemon in the background.
    Daemon,
    /// A client command for a running daemon.
    Client(Request),
    /// `--check-config`: parse the configuration, print the warnings the
    /// daemon would log at start, and exit (for build-time checks of
    /// generated files, e.g. by the NixOS module). `strict`
    /// (`--strict`): any warning fails the check.
    CheckConfig { strict: bool },
}

/// A command-line error: the message, and whether the usage text goes
/// before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    pub message: String,
    /// conntrackd prints its usage before an unknown option, a bad mix
    /// and a missing file name, not before a word `-f` or `-s` refuses.
    pub usage: bool,
}

impl CliError {
    /// An error shown after the usage text.
    pub fn new(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            usage: true,
        }
    }

    /// An error shown alone.
    pub fn bare(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            usage: false,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// The result of parsing: what to do, plus warnings for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub invocation: Invocation,
    pub warnings: Vec<String>,
}

/// The `-h` text for ctsyncd invoked as `p`.
pub fn usage(p: &Personality) -> String {
    format!(
        "Connection tracking state synchronization daemon ctsyncd v{version}
Usage: {name} [commands] [options]

General commands:
  -d, run in daemon mode
  -C [configfile], configuration file path (default {config})
  -v, display ctsyncd version
  -h, display this help information

Client mode commands:
  -c [ct|expect], commit external cache to conntrack table
  -f [internal|external], flush internal and external cache
  -F [ct|expect], flush kernel conntrack table
  -i [ct|expect], display content of the internal cache
  -e [ct|expect], display the content of the external cache
  -k, kill {name}
  -s  [network|cache|runtime|link|rsqueue|process|queue|ct|expect], dump statistics
  -R [ct|expect], resync with kernel conntrack table
  -n, request resync with other node (only FT-FW and NOTRACK modes)
  -B, force a bulk send to other replica firewalls
  -x, dump cache in XML format (requires -i or -e)
  -t, reset the kernel timeout (see PurgeTimeout clause)
  --json, machine-readable output for -s, -i and -e
  --check-config, check the configuration file, print the warnings {name}
    would log at start, and exit
  --strict, with --check-config: any warning fails the check (exit 1)
  --genkey, print a new key for AuthenticationKeyFile (base64) and exit
",
        version = crate::VERSION,
        name = p.name,
        config = p.config_path,
    )
}

/// Parses the arguments after the program name, with ctsyncd's defaults.
pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Parsed, CliError> {
    parse_as(args, &CTSYNCD)
}

/// Parses the arguments after the program name; the default `-C` path is
/// `personality`'s.
pub fn parse_as<S: AsRef<str>>(
    args: &[S],
    personality: &Personality,
) -> Result<Parsed, CliError> {
    let mut config: Option<PathBuf> = None;
    let mut daemon = false;
    let mut request: Option<Request> = None;
    let mut json = false;
    let mut check = false;
    let mut strict = false;
    let mut warnings = Vec::new();
    let mut i = 0;

    // The optional word after an option, if it does not look like one.
    // An empty word is taken (conntrackd only looks for the `-`): it is
    // a prefix of every keyword, so it names the first.
    let optional = |i: usize| -> Option<&str> {
        args.get(i + 1)
            .map(AsRef::as_ref)
            .filter(|w| !w.starts_with('-'))
    };

    while i < args.len() {
        let arg = args[i].as_ref();
        if arg == "--json" {
            json = true;
            i += 1;
            continue;
        }
        if arg == "--check-config" {
            check = true;
            i += 1;
            continue;
        }
        if arg == "--strict" {
            strict = true;
            i += 1;
            continue;
        }
        if arg == "--help" {
            return Ok(Parsed {
                invocation: Invocation::Help,
                warnings,
            });
        }
        if arg == "--version" {
            return Ok(Parsed {
                invocation: Invocation::Version,
                warnings,
            });
        }
        if arg == "--genkey" {
            if args.len() != 1 {
                return Err(CliError::new("--genkey goes alone"));
            }
            return Ok(Parsed {
                invocation: Invocation::GenKey,
                warnings,
            });
        }
        let mut chars = arg.chars();
        let letter = match (chars.next(), chars.next()) {
            (Some('-'), Some(c)) => c,
            _ => return Err(CliError::new(format!("Unknown option: {arg}"))),
        };
        match letter {
            'h' => {
                return Ok(Parsed {
                    invocation: Invocation::Help,
                    warnings,
                });
            }
            'v' => {
                return Ok(Parsed {
                    invocation: Invocation::Version,
                    warnings,
                });
            }
            'C' => match optional(i) {
                Some(path) => {
                    config = Some(PathBuf::from(path));
                    i += 1;
                }
                None => {
                    return Err(CliError::new("Missing config filename"));
                }
            },
            'd' => daemon = true,
            'c' | 'F' | 'R' => {
                let target = match optional(i) {
                    None => Target::All,
                    Some(w) => {
                        i += 1;
                        ct_or_expect(w, letter)?.map_or(Target::Ct, |t| t)
                    }
                };
                request = Some(match letter {
                    'c' => Request::Commit(target),
                    'F' => Request::FlushKernel(target),
                    _ => Request::ResyncKernel(target),
                });
            }
            'i' | 'e' => {
                let table = match optional(i) {
                    None => Table::Ct,
                    Some(w) => {
                        i += 1;
                        match ct_or_expect(w, letter)? {
                            Some(Target::Expect) => Table::Expect,
                            _ => Table::Ct,
                        }
                    }
                };
                let cache = if letter == 'i' {
                    Cache::Internal
                } else {
                    Cache::External
                };
                request = Some(Request::Dump {
                    cache,
                    table,
                    format: Format::Plain,
                });
            }
            // Turns a plain dump into XML; anything else (an XML dump
            // too: `-i -x -x`) is refused, as conntrackd refuses it.
            'x' => match &mut request {
                Some(Request::Dump { format, .. })
                    if *format == Format::Plain =>
                {
                    *format = Format::Xml;
                }
                _ => return Err(CliError::new("Invalid parameters")),
            },
            'f' => {
                let sel = match optional(i) {
                    None => CacheSel::All,
                    Some(w) => {
                        i += 1;
                        if prefix_of(w, "internal") {
                            CacheSel::Internal
                        } else if prefix_of(w, "external") {
                            CacheSel::External
                        } else {
                            return Err(unknown_param(w, 'f'));
                        }
                    }
                };
                request = Some(Request::FlushCache(sel));
            }
            's' => {
                let view = match optional(i) {
                    None => StatsView::General,
                    Some(w) => {
                        i += 1;
                        stats_view(w, &mut warnings)?
                    }
                };
                request = Some(Request::Stats {
                    view,
                    format: Format::Plain,
                });
            }
            'k' => request = Some(Request::Kill),
            'B' => request = Some(Request::BulkSend),
            'n' => request = Some(Request::RequestResync),
            't' => request = Some(Request::ResetTimers),
            _ => return Err(CliError::new(format!("Unknown option: {arg}"))),
        }
        // conntrackd refuses the mix as soon as it reads it, so a later
        // -h or -v does not turn it into a success.
        if daemon && request.is_some() {
            return Err(CliError::new("Invalid parameters"));
        }
        i += 1;
    }

    if json {
        match &mut request {
            Some(Request::Stats { format, .. }) => *format = Format::Json,
            Some(Request::Dump { format, .. }) if *format == Format::Plain => {
                *format = Format::Json;
            }
            _ => {
                return Err(CliError::new(
                    "--json goes with -s, -i or -e (and not with -x)",
                ));
            }
        }
    }

    if strict && !check {
        return Err(CliError::new("--strict goes with --check-config"));
    }
    let mode = match (daemon, request) {
        (true, Some(_)) => {
            return Err(CliError::new("Invalid parameters"));
        }
        (false, None) if check => RunMode::CheckConfig { strict },
        _ if check => {
            return Err(CliError::new("--check-config goes with -C only"));
        }
        (true, None) => RunMode::Daemon,
        (false, Some(r)) => RunMode::Client(r),
        (false, None) => RunMode::Foreground,
    };
    Ok(Parsed {
        invocation: Invocation::Run {
            config: config
                .unwrap_or_else(|| PathBuf::from(personality.config_path)),
            mode,
        },
        warnings,
    })
}

#[cfg(test)]
mod test;
