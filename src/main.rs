//! `ctsyncd`: argument handling only; the work is in the library.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use ctsyncd::cli::{self, Invocation, RunMode};
use ctsyncd::control::client;
use ctsyncd::{config, daemon, logging};

fn main() -> ExitCode {
    logging::install(false);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match cli::parse(&args) {
        Ok(p) => p,
        Err(e) => {
            let _ = write!(std::io::stderr(), "{}", cli::usage());
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    for w in &parsed.warnings {
        log::warn!("{w}");
    }
    let (config_path, mode) = match parsed.invocation {
        Invocation::Help => {
            print!("{}", cli::usage());
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
        return daemon::spawn_and_wait(&args);
    }
    if daemon::is_child() {
        daemon::new_session();
    }

    let Some(config::Parsed {
        config: cfg,
        warnings,
    }) = load_config(&config_path)
    else {
        return ExitCode::FAILURE;
    };
    match mode {
        RunMode::Client(req) => {
            for w in &warnings {
                log::warn!("{w}");
            }
            let mut out = std::io::stdout().lock();
            match client::request(&cfg.general.unix_path, &req, &mut out) {
                Ok(status) if status.is_ok() => ExitCode::SUCCESS,
                Ok(status) => {
                    let _ = out.flush();
                    log::error!("{status}");
                    // Not 1: conntrackd's notify script reads exit status
                    // 1 as "failed to invoke" (no daemon), which is all
                    // conntrackd's client ever reports (README).
                    ExitCode::from(client::DAEMON_SAID_NO)
                }
                Err(e) => {
                    log::error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        RunMode::CheckConfig => {
            for w in &warnings {
                log::warn!("{w}");
            }
            let keys = cfg
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
            println!("{}: configuration is valid", config_path.display());
            ExitCode::SUCCESS
        }
        RunMode::Foreground => daemon::run(cfg, &warnings, false),
        RunMode::Daemon => daemon::run(cfg, &warnings, true),
    }
}

/// Reads and parses the configuration, logging errors.
fn load_config(path: &Path) -> Option<config::Parsed> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            log::error!("can't open config file `{}': {e}", path.display());
            return None;
        }
    };
    match config::parse(&text, &path.display().to_string()) {
        Ok(parsed) => Some(parsed),
        Err(e) => {
            log::error!("{e}");
            None
        }
    }
}
