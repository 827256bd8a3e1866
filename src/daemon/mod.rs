//! The daemon: lifecycle and the one smol event loop.
//!
//! ```text
//!            ┌──────────── LocalExecutor (one thread) ─────────────┐
//! UNIX ──────┤ accept task ──► per-connection reader (5 s, 1 KiB;  │
//! listener   │    the oldest idle one closed when 32 wait)         │
//!            │                        │ Event::Request/Malformed   │
//! SIGTERM ───┤ signal task ───────────┤ Event::Signal              │
//! SIGINT     │                        ▼                            │
//!            │        main loop: owns all state, handles events,   │
//!            │        spawns reply writers (16 MiB in all, 5 s     │
//!            │        without progress, 30 s per frame)            │
//!            └─────────────────────────────────────────────────────┘
//! ```
//!
//! Owns: start-up order (log sinks, umask, signals, lock file, control
//! socket, kernel sockets and the start-up dump, dedicated links, then
//! "ready"), clean shutdown (socket and lock file removed,
//! `---- shutdown received ----` logged), and the clock: the sans-IO node
//! gets the time as a parameter from here.
//!
//! With a `Sync` section the main loop also waits on the kernel event
//! socket, the dedicated links and the node's next deadline; see
//! [`replicator`].

// The event loop is the one place allowed to read the clock (clippy.toml).
#![allow(clippy::disallowed_methods)]

mod accept;
mod background;
mod deadline;
mod error;
mod inject;
mod kernel;
pub mod keyfile;
pub mod link_watch;
mod lock;
mod replicator;
mod reply_budget;
mod reply_writer;
mod runtime;
mod sched;
mod sd_notify;
mod stats_mode;
mod throttle;
mod trim;
mod woken;
mod worker;

use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

use async_signal::{Signal, Signals};
use log::{error, info, warn};
use smol::channel::{self, Receiver, Sender};
use smol::stream::StreamExt;
use smol::{Async, LocalExecutor};

use accept::{MAX_PENDING_CLIENTS, accept_loop};
pub use background::{is_child, new_session, spawn_and_wait};
pub use error::Error;
use lock::LockFile;
use reply_budget::{REPLY_BUDGET, ReplyBudget};
pub use runtime::{Runtime, uptime};

use crate::config::{self, Config, LogTarget};
use crate::control::proto::{Reply, Request, Status};
use crate::control::server;
use crate::logging;
use crate::personality::Personality;

/// Runs the daemon until SIGTERM, SIGINT or `-k`. `background` is true in
/// the `-d` child. The configuration's start-up warnings
/// ([`config::startup_warnings`], what `--check-config` prints) are logged
/// once the log sinks are open; `personality` names the program in syslog
/// and in messages.
pub fn run(
    parsed: config::Parsed,
    personality: &'static Personality,
    background: bool,
) -> ExitCode {
    let warnings = config::startup_warnings(&parsed);
    let cfg = parsed.config;
    // As conntrackd: both log files first, and a bare line on stderr.
    let stats_file = cfg.stats.as_ref().and_then(|s| match &s.log_file {
        LogTarget::File(p) => Some(p),
        _ => None,
    });
    let opened = match &cfg.general.log_file {
        LogTarget::File(path) => logging::open_file(path),
        _ => Ok(()),
    }
    .and_then(|()| stats_file.map_or(Ok(()), |p| logging::check_stats_file(p)));
    if let Err(e) = opened {
        eprintln!("ERROR: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(facility) = cfg.general.syslog {
        logging::open_syslog(facility, personality.syslog_ident);
    }
    for w in &warnings {
        warn!("{w}");
    }
    // Before any thread exists: Linux keeps a nice value per thread, and
    // threads inherit their creator's.
    if let Err(w) = sched::nice(cfg.general.nice) {
        warn!("{w}");
    }
    // Before the runtime's I/O thread exists (the signal handlers below
    // start it): it inherits the policy. The kernel worker, started
    // later, puts itself back to the normal one (see `sched`).
    if let Err(w) = sched::apply(cfg.general.scheduler) {
        warn!("{w}");
    }
    // Control socket and lock file end up 0600: root-only control.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));

    // Handlers first: from the moment the lock file exists, SIGTERM must
    // take the clean path that removes it.
    let signals = match Signals::new([Signal::Term, Signal::Int]) {
        Ok(s) => s,
        Err(e) => {
            error!("{}", Error::Signals(e));
            return ExitCode::FAILURE;
        }
    };
    let lock = match LockFile::acquire(&cfg.general.lock_file, personality.name)
    {
        Ok(l) => l,
        Err(msg) => {
            error!("{msg}");
            return ExitCode::FAILURE;
        }
    };
    // The control socket is unlinked by `serve` once it bound it (never
    // here: a start refused because another daemon answers on that path
    // must leave that daemon's socket alone).
    let result = smol::block_on(serve(
        &cfg,
        signals,
        background,
        personality.syslog_ident,
    ));
    lock.release();
    match result {
        Ok(()) => {
            info!("---- shutdown received ----");
            logging::close();
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!("{e}");
            if e.in_mode_init() {
                error!("initialization failed");
            }
            error!(
                "{} cannot start, please review your configuration",
                personality.name
            );
            logging::close();
            ExitCode::FAILURE
        }
    }
}

/// What the reader tasks hand to the main loop.
pub(crate) enum Event {
    Request(Request, Async<UnixStream>),
    Malformed(String, Async<UnixStream>),
    /// A connection closed before its request came, to make room
    /// (`accept`): counted as a failed read, as one that timed out.
    Evicted,
    Signal,
}

/// Milliseconds since the daemon started: the node's time.
#[derive(Clone, Copy)]
pub(crate) struct Clock(Instant);

impl Clock {
    pub(crate) fn now(&self) -> crate::time::Instant {
        crate::time::Instant::from_micros(
            u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX),
        )
    }

    pub(crate) fn at(&self, t: crate::time::Instant) -> Instant {
        self.0 + std::time::Duration::from_micros(t.micros())
    }
}

async fn serve(
    cfg: &Config,
    mut signals: Signals,
    background: bool,
    syslog_ident: &'static str,
) -> Result<(), Error> {
    let path = &cfg.general.unix_path;
    let listener = server::bind(path).map_err(|source| Error::UnixSocket {
        path: path.clone(),
        source,
    })?;
    // Ours from here: unlinked on every way out (a start that fails
    // later, shutdown).
    let _bound = UnlinkOnDrop(path);
    let clock = Clock(Instant::now());
    // One budget for every reply the daemon holds, and for what the relay
    // to conntrackd's client holds of them (`control::conntrackd`).
    let budget = ReplyBudget::new(REPLY_BUDGET);
    let mut rep = match &cfg.sync {
        Some(_) => {
            let started = replicator::Replicator::start(
                cfg,
                clock,
                budget.clone(),
                &mut signals,
            );
            match started.await? {
                Some(r) => Some(r),
                // Stopped while loading the kernel table: never ready.
                None => return Ok(()),
            }
        }
        None => None,
    };
    let mut flow_logger = match (&cfg.sync, &cfg.stats) {
        (None, Some(_)) => {
            let opened = stats_mode::StatsMode::open(
                cfg,
                syslog_ident,
                clock,
                &mut signals,
            );
            match opened.await? {
                Some(sm) => Some(sm),
                // Stopped while loading the kernel table: never ready.
                None => return Ok(()),
            }
        }
        _ => None,
    };

    // As conntrackd, once initialised: a daemon must not keep the
    // directory it was started from busy (a script's working directory
    // on a medium that is then to be unmounted). The paths it still
    // needs (lock file, control socket) are absolute: the configuration
    // refuses relative ones.
    if let Err(e) = std::env::set_current_dir("/") {
        warn!("Cannot change current directory to /: {e}");
    }
    info!("initialization completed");
    // Foreground only: that is how a Type=notify unit runs the daemon. A
    // `-d` daemon started by a notify script may have inherited another
    // unit's NOTIFY_SOCKET (keepalived's) and must not speak for it.
    let notifier = if cfg.general.systemd && !background {
        sd_notify::Notifier::from_env()
    } else {
        None
    };
    if let Some(n) = &notifier {
        n.ready();
    }
    if background {
        // Logged before the parent is told, so that whoever waits for `-d`
        // finds the line in the log when it returns.
        logging::detach_console();
        info!("-- starting in daemon mode --");
        if let Err(e) = background::notify_ready() {
            warn!("could not detach from the terminal: {e}");
        }
    } else {
        info!("-- starting in console mode --");
    }

    let ex = LocalExecutor::new();
    let (tx, rx) = channel::bounded::<Event>(MAX_PENDING_CLIENTS);
    // The main loop ends the run; the accept and signal loops never end on
    // their own and are dropped with it (closing the listener).
    // Polled only when woken (see `woken`): not on every turn of the
    // main loop, which would retry their reads each time.
    // Each wrapped on its own: a connection must not make the signal
    // loop try its pipe, nor a signal the listener.
    let background_loops = smol::future::or(
        smol::future::or(
            woken::only_when_woken(accept_loop(
                &ex,
                listener,
                tx.clone(),
                budget.clone(),
            )),
            woken::only_when_woken(forward_signals(signals, tx)),
        ),
        woken::only_when_woken(watchdog(notifier.as_ref())),
    );
    let main = async {
        match (rep.as_mut(), flow_logger.take()) {
            (Some(r), _) => r.run(&ex, &rx, clock).await,
            (None, Some(sm)) => {
                stats_mode::run(sm, &ex, &rx, clock, &budget).await
            }
            (None, None) => control_only(&ex, &rx, clock, &budget).await,
        }
    };
    ex.run(smol::future::or(main, background_loops)).await;
    if let Some(n) = &notifier {
        n.stopping();
    }
    Ok(())
}

/// Unlinks the control socket this process bound when dropped.
struct UnlinkOnDrop<'a>(&'a std::path::Path);

impl Drop for UnlinkOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// `WATCHDOG=1` at half the unit's `WatchdogSec`, from the same executor
/// as the main loop: a stalled loop stops the pings.
async fn watchdog(notifier: Option<&sd_notify::Notifier>) {
    let (Some(n), Some(every)) =
        (notifier, sd_notify::Notifier::watchdog_interval())
    else {
        return smol::future::pending().await;
    };
    loop {
        n.send("WATCHDOG=1");
        smol::Timer::after(every).await;
    }
}

async fn forward_signals(mut signals: Signals, tx: Sender<Event>) {
    while let Some(sig) = signals.next().await {
        if sig.is_ok() {
            let _ = tx.send(Event::Signal).await;
        }
    }
    smol::future::pending().await
}

/// Writes the replies in the background (a slow client never stalls the
/// loop), within the reply budget: what does not fit ends in a refusal.
/// A client that reads slowly is waited for unless the budget is pressed
/// (`reply_writer`: a flow logger's `-i | less`).
fn reply_later(
    ex: &LocalExecutor<'_>,
    budget: &Rc<ReplyBudget>,
    mut stream: Async<UnixStream>,
    replies: Vec<Reply>,
) {
    let mut held = Vec::with_capacity(replies.len());
    let mut admitted = Vec::with_capacity(replies.len());
    for r in replies {
        match budget.hold(&r) {
            Some(h) => {
                held.push(h);
                admitted.push(r);
            }
            None => {
                admitted.push(budget.refusal());
                break;
            }
        }
    }
    let budget = budget.clone();
    ex.spawn(async move {
        let patient = || !budget.pressed();
        let wrote = server::write_replies_unless(
            &mut stream,
            &admitted,
            Some(&patient),
        )
        .await;
        if let Err(e) = wrote {
            budget.count_dropped(&e);
        }
        drop(held);
    })
    .detach();
}

/// The loop of a daemon without a `Sync` section.
async fn control_only(
    ex: &LocalExecutor<'_>,
    rx: &Receiver<Event>,
    clock: Clock,
    budget: &Rc<ReplyBudget>,
) {
    let mut rt = Runtime::new(Instant::now());
    let _ = clock;
    while let Ok(ev) = rx.recv().await {
        match ev {
            Event::Signal => break,
            Event::Evicted => rt.local_read_failed += 1,
            Event::Malformed(why, stream) => {
                rt.local_read_failed += 1;
                log::debug!("bad control request: {why}");
                reply_later(
                    ex,
                    budget,
                    stream,
                    vec![Reply::Done(Status::BadRequest(why))],
                );
            }
            Event::Request(req, mut stream) => {
                rt.log_write_errors = crate::logging::write_errors();
                let (replies, shutdown) = rt.handle(req, Instant::now());
                if shutdown {
                    let _ = server::write_replies(&mut stream, &replies).await;
                    break;
                }
                reply_later(ex, budget, stream, replies);
            }
        }
    }
}
