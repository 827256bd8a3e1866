//! `ctsyncd`: argument handling only; the work is in the library.
//!
//! The program's personality (its name in messages and its default paths)
//! comes from `argv[0]` once, here, and is passed down: installed as
//! `conntrackd`, ctsyncd uses conntrackd's defaults.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use ctsyncd::cli::{self, Invocation, RunMode};
use ctsyncd::control::client::{self, ClientError};
use ctsyncd::personality::Personality;
use ctsyncd::{config, daemon, logging};

fn main() -> ExitCode {
    logging::install(false);
    // Not `env::args`, which panics on an argument that is not UTF-8.
    let mut argv = std::env::args_os();
    let argv0 = argv
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let personality = Personality::from_argv0(Some(&argv0));
    let mut args = Vec::new();
    for a in argv {
        match a.into_string() {
            Ok(a) => args.push(a),
            Err(a) => {
                log::error!(
                    "argument is not valid UTF-8: `{}'",
                    a.to_string_lossy()
                );
                return ExitCode::FAILURE;
            }
        }
    }
    let parsed = match cli::parse_as(&args, personality) {
        Ok(p) => p,
        Err(e) => {
            if e.usage {
                let _ =
                    write!(std::io::stderr(), "{}", cli::usage(personality));
            }
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    for w in &parsed.warnings {
        log::warn!("{w}");
    }
    let (config_path, mode) = match parsed.invocation {
        Invocation::Help => {
            print!("{}", cli::usage(personality));
            return ExitCode::SUCCESS;
        }
        Invocation::Version => {
            println!(
                "Connection tracking state synchronization daemon ctsyncd v{}",
                ctsyncd::VERSION
            );
            return ExitCode::SUCCESS;
        }
        Invocation::GenKey => {
            return match daemon::keyfile::generate() {
                Ok(key) => {
                    println!("{key}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    log::error!("can't get random bytes: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Invocation::Run { config, mode } => (config, mode),
    };

    // `-d`: the parent only starts the real daemon and waits for its word.
    if mode == RunMode::Daemon && !daemon::is_child() {
        return daemon::spawn_and_wait(&argv0, &args);
    }
    if daemon::is_child() {
        daemon::new_session();
    }

    let Some(parsed) = load_config(&config_path, personality) else {
        return ExitCode::FAILURE;
    };
    match mode {
        RunMode::Client(req) => {
            // As conntrackd: the parser's warnings on every client call.
            for w in &parsed.warnings {
                log::warn!("{w}");
            }
            let mut out = std::io::stdout().lock();
            let unix_path = &parsed.config.general.unix_path;
            match client::request(unix_path, &req, &mut out) {
                Ok(status) if status.is_ok() => ExitCode::SUCCESS,
                Ok(status) => {
                    let _ = out.flush();
                    log::error!("{status}");
                    // Not 1: conntrackd's notify script reads exit status
                    // 1 as "failed to invoke" (no daemon), which is all
                    // conntrackd's client ever reports (README).
                    ExitCode::from(client::DAEMON_SAID_NO)
                }
                // `ctsyncd -i | head`: the reader has what it wanted
                // (conntrackd dies of SIGPIPE there, without a word).
                Err(ClientError::Output(e))
                    if e.kind() == std::io::ErrorKind::BrokenPipe =>
                {
                    ExitCode::FAILURE
                }
                Err(ClientError::Connect(_)) => {
                    log::error!(
                        "can't connect: is {} running? appropriate permissions?",
                        personality.name
                    );
                    ExitCode::FAILURE
                }
                Err(e) => {
                    log::error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        RunMode::CheckConfig { strict } => {
            check_config(&config_path, &parsed, strict)
        }
        RunMode::Foreground => daemon::run(parsed, personality, false),
        RunMode::Daemon => daemon::run(parsed, personality, true),
    }
}

/// `--check-config [--strict]`: the start-up warnings (the same list the
/// daemon logs), the key files' notes, and the verdict.
fn check_config(
    path: &Path,
    parsed: &config::Parsed,
    strict: bool,
) -> ExitCode {
    let warnings = config::startup_warnings(parsed);
    for w in &warnings {
        log::warn!("{w}");
    }
    let keys = parsed
        .config
        .sync
        .as_ref()
        .map_or(&[][..], |s| &s.authentication_keys[..]);
    match daemon::keyfile::check(keys) {
        Ok(notes) => {
            // Not warnings: a credential exists only in the unit.
            for n in notes {
                println!("{n}");
            }
        }
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    }
    match warnings.len() {
        0 => println!("{}: configuration is valid", path.display()),
        n if strict => {
            log::error!(
                "{}: {n} warning{}, refused by --strict",
                path.display(),
                if n == 1 { "" } else { "s" }
            );
            return ExitCode::FAILURE;
        }
        n => println!(
            "{}: configuration is valid, with {n} warning{}",
            path.display(),
            if n == 1 { "" } else { "s" }
        ),
    }
    ExitCode::SUCCESS
}

/// Reads and parses the configuration, logging errors.
fn load_config(
    path: &Path,
    personality: &'static Personality,
) -> Option<config::Parsed> {
    // Bytes, as conntrackd's lexer reads them: a Latin-1 comment is no
    // error (a byte that is not UTF-8 reads as U+FFFD).
    let text = match std::fs::read(path) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) => {
            log::error!("can't open config file `{}': {e}", path.display());
            return None;
        }
    };
    match config::parse_as(&text, &path.display().to_string(), personality) {
        Ok(parsed) => Some(parsed),
        Err(e) => {
            log::error!("{e}");
            None
        }
    }
}
