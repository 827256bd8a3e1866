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

use std::fmt;
use std::path::PathBuf;

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

/// A command-line error: the message, printed after the usage text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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
    let optional = |i: usize| -> Option<&str> {
        args.get(i + 1)
            .map(AsRef::as_ref)
            .filter(|w| !w.is_empty() && !w.starts_with('-'))
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
                return Err(CliError("--genkey goes alone".into()));
            }
            return Ok(Parsed {
                invocation: Invocation::GenKey,
                warnings,
            });
        }
        let mut chars = arg.chars();
        let letter = match (chars.next(), chars.next()) {
            (Some('-'), Some(c)) => c,
            _ => return Err(CliError(format!("Unknown option: {arg}"))),
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
                None => return Err(CliError("Missing config filename".into())),
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
                _ => return Err(CliError("Invalid parameters".into())),
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
            _ => return Err(CliError(format!("Unknown option: {arg}"))),
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
                return Err(CliError(
                    "--json goes with -s, -i or -e (and not with -x)".into(),
                ));
            }
        }
    }

    if strict && !check {
        return Err(CliError("--strict goes with --check-config".into()));
    }
    let mode = match (daemon, request) {
        (true, Some(_)) => return Err(CliError("Invalid parameters".into())),
        (false, None) if check => RunMode::CheckConfig { strict },
        _ if check => {
            return Err(CliError("--check-config goes with -C only".into()));
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

// ===== helper functions =====

/// conntrackd's `strncmp(word, keyword, strlen(word)) == 0`.
fn prefix_of(word: &str, keyword: &str) -> bool {
    !word.is_empty() && keyword.starts_with(word)
}

fn unknown_param(word: &str, option: char) -> CliError {
    CliError(format!("unknown parameter `{word}' for option `-{option}'"))
}

/// `ct` or `expect` by prefix.
fn ct_or_expect(word: &str, option: char) -> Result<Option<Target>, CliError> {
    if prefix_of(word, "ct") {
        Ok(Some(Target::Ct))
    } else if prefix_of(word, "expect") {
        Ok(Some(Target::Expect))
    } else {
        Err(unknown_param(word, option))
    }
}

/// The `-s` views, tried in conntrackd's order so that `-s c` is `cache`.
fn stats_view(
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

#[cfg(test)]
mod test {
    use super::*;

    fn run(args: &[&str]) -> Result<RunMode, CliError> {
        match parse(args)?.invocation {
            Invocation::Run { mode, .. } => Ok(mode),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn client(args: &[&str]) -> Request {
        match run(args) {
            Ok(RunMode::Client(r)) => r,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    fn dump(cache: Cache, table: Table, format: Format) -> Request {
        Request::Dump {
            cache,
            table,
            format,
        }
    }

    #[test]
    fn no_command_runs_in_foreground_with_default_config() {
        assert_eq!(
            parse::<&str>(&[]).unwrap().invocation,
            Invocation::Run {
                config: PathBuf::from(CTSYNCD.config_path),
                mode: RunMode::Foreground
            }
        );
        assert_eq!(run(&["-d"]), Ok(RunMode::Daemon));
    }

    #[test]
    fn config_path() {
        let p = parse(&["-C", "/tmp/x.conf", "-d"]).unwrap();
        assert_eq!(
            p.invocation,
            Invocation::Run {
                config: PathBuf::from("/tmp/x.conf"),
                mode: RunMode::Daemon
            }
        );
        assert_eq!(
            parse(&["-C"]),
            Err(CliError("Missing config filename".into()))
        );
        assert_eq!(
            parse(&["-C", "-d"]),
            Err(CliError("Missing config filename".into()))
        );
    }

    #[test]
    fn commit_flush_resync_targets() {
        assert_eq!(client(&["-c"]), Request::Commit(Target::All));
        assert_eq!(client(&["-c", "ct"]), Request::Commit(Target::Ct));
        assert_eq!(client(&["-c", "c"]), Request::Commit(Target::Ct));
        assert_eq!(client(&["-c", "exp"]), Request::Commit(Target::Expect));
        assert_eq!(client(&["-c", "e"]), Request::Commit(Target::Expect));
        assert_eq!(client(&["-F"]), Request::FlushKernel(Target::All));
        assert_eq!(
            client(&["-F", "expect"]),
            Request::FlushKernel(Target::Expect)
        );
        assert_eq!(client(&["-R", "ct"]), Request::ResyncKernel(Target::Ct));
        assert_eq!(client(&["-R"]), Request::ResyncKernel(Target::All));
    }

    #[test]
    fn dumps_and_xml_order() {
        use Cache::*;
        use Format::*;
        assert_eq!(client(&["-i"]), dump(Internal, Table::Ct, Plain));
        assert_eq!(
            client(&["-i", "exp"]),
            dump(Internal, Table::Expect, Plain)
        );
        assert_eq!(client(&["-e", "ct"]), dump(External, Table::Ct, Plain));
        assert_eq!(client(&["-e", "-x"]), dump(External, Table::Ct, Xml));
        assert_eq!(
            client(&["-i", "expect", "-x"]),
            dump(Internal, Table::Expect, Xml)
        );
        assert_eq!(client(&["-i", "--json"]), dump(Internal, Table::Ct, Json));
        // -x must follow -i/-e.
        assert_eq!(
            run(&["-x", "-i"]),
            Err(CliError("Invalid parameters".into()))
        );
        assert_eq!(run(&["-x"]), Err(CliError("Invalid parameters".into())));
        assert_eq!(
            run(&["-s", "-x"]),
            Err(CliError("Invalid parameters".into()))
        );
        assert!(run(&["-i", "-x", "--json"]).is_err());
        assert_eq!(
            run(&["-i", "-x", "-x"]),
            Err(CliError("Invalid parameters".into()))
        );
        assert_eq!(
            client(&["-e", "-x", "-i"]),
            dump(Internal, Table::Ct, Plain)
        );
    }

    #[test]
    fn flush_cache_selection() {
        assert_eq!(client(&["-f"]), Request::FlushCache(CacheSel::All));
        assert_eq!(
            client(&["-f", "internal"]),
            Request::FlushCache(CacheSel::Internal)
        );
        assert_eq!(
            client(&["-f", "ext"]),
            Request::FlushCache(CacheSel::External)
        );
        assert_eq!(
            run(&["-f", "bogus"]),
            Err(CliError("unknown parameter `bogus' for option `-f'".into()))
        );
    }

    #[test]
    fn stats_views_by_prefix_in_conntrackd_order() {
        let view = |w: &str| match client(&["-s", w]) {
            Request::Stats { view, .. } => view,
            r => panic!("{r:?}"),
        };
        assert_eq!(view("network"), StatsView::Network);
        assert_eq!(view("n"), StatsView::Network);
        assert_eq!(view("c"), StatsView::Cache);
        assert_eq!(view("ct"), StatsView::General);
        assert_eq!(view("r"), StatsView::Runtime);
        assert_eq!(view("rs"), StatsView::RsQueue);
        assert_eq!(view("l"), StatsView::Link);
        assert_eq!(view("p"), StatsView::Process);
        assert_eq!(view("q"), StatsView::Queue);
        assert_eq!(view("e"), StatsView::Expect);
        // ctsyncd's own view, after conntrackd's: "r" stays runtime.
        assert_eq!(view("re"), StatsView::Ready);
        assert_eq!(view("ready"), StatsView::Ready);
        assert_eq!(
            client(&["-s"]),
            Request::Stats {
                view: StatsView::General,
                format: Format::Plain
            }
        );
        assert_eq!(
            client(&["-s", "cache", "--json"]),
            Request::Stats {
                view: StatsView::Cache,
                format: Format::Json
            }
        );
        let p = parse(&["-s", "m"]).unwrap();
        assert_eq!(
            p.warnings,
            vec!["use `link' instead of `multicast' as parameter."]
        );
        assert_eq!(
            run(&["-s", "zzz"]),
            Err(CliError("unknown parameter `zzz' for option `-s'".into()))
        );
    }

    #[test]
    fn simple_commands_and_last_one_wins() {
        assert_eq!(client(&["-k"]), Request::Kill);
        assert_eq!(client(&["-B"]), Request::BulkSend);
        assert_eq!(client(&["-n"]), Request::RequestResync);
        assert_eq!(client(&["-t"]), Request::ResetTimers);
        assert_eq!(client(&["-c", "-f"]), Request::FlushCache(CacheSel::All));
        assert_eq!(client(&["-s", "-k"]), Request::Kill);
        // conntrackd dispatches on the second character only.
        assert_eq!(client(&["-cfoo"]), Request::Commit(Target::All));
    }

    #[test]
    fn invalid_mixes_and_unknown_options() {
        assert_eq!(
            run(&["-d", "-c"]),
            Err(CliError("Invalid parameters".into()))
        );
        assert_eq!(
            run(&["-k", "-d"]),
            Err(CliError("Invalid parameters".into()))
        );
        assert_eq!(run(&["-z"]), Err(CliError("Unknown option: -z".into())));
        assert_eq!(run(&["-S"]), Err(CliError("Unknown option: -S".into())));
        assert_eq!(
            run(&["commit"]),
            Err(CliError("Unknown option: commit".into()))
        );
        assert_eq!(
            run(&["-c", "foo"]),
            Err(CliError("unknown parameter `foo' for option `-c'".into()))
        );
        assert_eq!(
            run(&["-i", "x"]),
            Err(CliError("unknown parameter `x' for option `-i'".into()))
        );
        assert!(run(&["--json"]).is_err());
        assert!(run(&["-c", "--json"]).is_err());
    }

    #[test]
    fn genkey_goes_alone() {
        assert_eq!(
            parse(&["--genkey"]).map(|p| p.invocation),
            Ok(Invocation::GenKey)
        );
        assert!(parse(&["--genkey", "-d"]).is_err());
        assert!(parse(&["-C", "/x.conf", "--genkey"]).is_err());
    }

    #[test]
    fn check_config_goes_alone() {
        assert_eq!(
            run(&["-C", "/x.conf", "--check-config"]),
            Ok(RunMode::CheckConfig { strict: false })
        );
        assert_eq!(
            run(&["--strict", "-C", "/x.conf", "--check-config"]),
            Ok(RunMode::CheckConfig { strict: true })
        );
        assert!(run(&["--check-config", "-d"]).is_err());
        assert!(run(&["--check-config", "-s"]).is_err());
        assert_eq!(
            run(&["-C", "/x.conf", "--strict"]),
            Err(CliError("--strict goes with --check-config".into()))
        );
    }

    #[test]
    fn the_personality_chooses_the_default_config_and_the_usage_names() {
        use crate::personality::CONNTRACKD;
        let as_conntrackd = parse_as::<&str>(&[], &CONNTRACKD).unwrap();
        assert_eq!(
            as_conntrackd.invocation,
            Invocation::Run {
                config: PathBuf::from("/etc/conntrackd/conntrackd.conf"),
                mode: RunMode::Foreground
            }
        );
        let u = usage(&CONNTRACKD);
        assert!(u.contains("Usage: conntrackd [commands]"), "{u}");
        assert!(u.contains("(default /etc/conntrackd/conntrackd.conf)"));
        assert!(u.contains("-k, kill conntrackd"));
        // The version line stays honest about what runs.
        assert!(u.starts_with(
            "Connection tracking state synchronization daemon ctsyncd v"
        ));
        let u = usage(&CTSYNCD);
        assert!(u.contains("Usage: ctsyncd [commands]"), "{u}");
        assert!(u.contains("(default /etc/ctsyncd/ctsyncd.conf)"));
    }

    #[test]
    fn help_and_version_win_immediately() {
        assert_eq!(parse(&["-h", "-z"]).unwrap().invocation, Invocation::Help);
        assert_eq!(
            parse(&["-v", "-z"]).unwrap().invocation,
            Invocation::Version
        );
        // …but only when reached: an earlier error still counts.
        assert!(parse(&["-z", "-v"]).is_err());
        assert!(usage(&CTSYNCD).contains("-c [ct|expect]"));
    }
}
