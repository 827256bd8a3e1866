//! The `log` backend: LogFile, syslog and the console.
//!
//! Owns: conntrackd's line format `[Fri Nov 27 08:34:07 2026] (pid=N)
//! [notice] message`, with the level words conntrackd uses (`log::Level`
//! Error → `ERROR`, Warn → `warning`, Info → `notice`, Debug → `info`).
//! Syslog gets the bare message at the matching priority through the
//! `syslog` crate's socket (ident `ctsyncd`, or conntrackd's
//! `conntrack-tools` when installed as conntrackd; LOG_PID), in the line
//! shape glibc's syslog(3) gives conntrackd: `<pri>Dec  2 08:34:07
//! ident[pid]: msg`. The crate's own Formatter3164 zero-pads the day
//! (`Dec 02`) and reads the local offset on every line, which the `time`
//! crate refuses once the daemon has threads; stamps come from
//! `local_time`, which applies the zone's rules to each instant.
//!
//! Records of target [`ENTRY`] are an entry's line as conntrackd writes
//! the entry a commit could not create (its `dlog_ct`): in the LogFile
//! `<ctime>\t<entry>` (no `[…]`, no pid, no level), to syslog the entry
//! at the record's priority (with a newline at its end when a LogFile is
//! open too), nothing on the console (observed: conntrackd 1.4.7).
//!
//! A failing log sink never stops the daemon: write errors are counted and
//! otherwise ignored; a syslog connection that failed is made again
//! (`syslog_sink`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};
use syslog::{LogFormat, LoggerBackend, Severity};
use time::OffsetDateTime;

use crate::config::Facility;

pub mod local_time;
mod syslog_sink;

use syslog_sink::SyslogSink;

type Syslog = syslog::Logger<LoggerBackend, GlibcLine>;

/// The syslog line format of glibc's syslog(3), which conntrackd uses.
#[derive(Clone)]
struct GlibcLine {
    facility: syslog::Facility,
    ident: String,
    pid: u32,
}

impl<T: std::fmt::Display> LogFormat<T> for GlibcLine {
    fn format<W: Write>(
        &self,
        w: &mut W,
        severity: Severity,
        message: T,
    ) -> syslog::Result<()> {
        let now = local_time::now();
        let pri = self.facility as u8 | severity as u8;
        let line = syslog_line(now, pri, &self.ident, self.pid, &message);
        w.write_all(line.as_bytes()).map_err(syslog::Error::Write)
    }
}

/// One syslog datagram as glibc's syslog(3) builds it (`%h %e %T`: the
/// day of the month space-padded, as RFC 3164 asks).
fn syslog_line(
    t: OffsetDateTime,
    pri: u8,
    ident: &str,
    pid: u32,
    msg: &dyn std::fmt::Display,
) -> String {
    format!(
        "<{pri}>{} {:2} {:02}:{:02}:{:02} {ident}[{pid}]: {msg}",
        MONTHS[u8::from(t.month()) as usize - 1],
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    )
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
    "Nov", "Dec",
];

struct Sinks {
    file: Option<File>,
    syslog: Option<SyslogSink>,
    /// Foreground and client runs also print to stdout/stderr.
    console: bool,
    /// Lines that some sink failed to take. A plain counter under the
    /// sinks' lock rather than an `AtomicU64`: the lock is held anyway when
    /// a write fails, and 32-bit MIPS and PowerPC have no 64-bit atomics.
    write_errors: u64,
}

struct Logger {
    sinks: Mutex<Sinks>,
}

static LOGGER: Logger = Logger {
    sinks: Mutex::new(Sinks {
        file: None,
        syslog: None,
        console: true,
        write_errors: 0,
    }),
};

/// Installs the console logger and reads the local time zone (`TZ` once;
/// `/etc/localtime` again whenever it changed, as glibc's localtime(3)).
/// Call first thing in `main`.
pub fn install(verbose: bool) {
    local_time::init();
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(if verbose {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    });
}

/// Opens the daemon's LogFile (append, mode 0600).
///
/// # Errors
/// conntrackd's message when the file cannot be opened; the daemon must not
/// start then.
pub fn open_file(path: &Path) -> Result<(), String> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| cannot_open(path, &e))?;
    if let Ok(mut s) = LOGGER.sinks.lock() {
        s.file = Some(file);
    }
    Ok(())
}

/// Checks that the flow logger's `Stats { LogFile }` opens (append, as
/// the flow logger opens it later): conntrackd opens both log files
/// before anything else and refuses to start, with the same message,
/// when either fails.
///
/// # Errors
/// conntrackd's message.
pub fn check_stats_file(path: &Path) -> Result<(), String> {
    // Created here, before the daemon's umask (0177) is set: 0600 as
    // the flow logger's own open would have made it.
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|e| cannot_open(path, &e))
}

/// conntrackd's words when a log file does not open, its reason as
/// `strerror` gives it.
fn cannot_open(path: &Path, e: &std::io::Error) -> String {
    let reason = crate::strerror::strerror(e);
    format!("can't open logfile `{}'.Reason: {reason}", path.display())
}

/// Connects to the local syslog, tagging lines with `ident`. A missing
/// syslog daemon is reported on the other sinks, and connected to at a
/// later line once it is there (`syslog_sink`).
pub fn open_syslog(facility: Facility, ident: &str) {
    let logger = connect_syslog(Some(facility), ident);
    if let Ok(mut s) = LOGGER.sinks.lock() {
        s.syslog = Some(logger);
    }
}

/// The stats log's syslog sink (`Stats { Syslog }`): destroyed flows at
/// LOG_INFO, bare, in the same line shape as the daemon's messages.
pub struct StatsSyslog(SyslogSink);

impl StatsSyslog {
    /// Connects under `ident` with General's facility: conntrackd opens
    /// one syslog connection with General's `Syslog` facility and sends
    /// the flows through it, so Stats' own facility is never used, and
    /// with General's `Syslog` off the lines go out as glibc's default,
    /// LOG_USER.
    pub fn open(general: Option<Facility>, ident: &str) -> StatsSyslog {
        StatsSyslog(connect_syslog(general, ident))
    }

    /// Sends one line at LOG_INFO; a failure is counted in the log's write
    /// errors.
    pub fn info(&mut self, line: &str) {
        if !self.0.send(|l| l.info(line)) {
            count_write_error();
        }
    }
}

/// A syslog connection in glibc's line shape; `None` facility is LOG_USER.
fn connect_syslog(facility: Option<Facility>, ident: &str) -> SyslogSink {
    let facility = match facility {
        None => syslog::Facility::LOG_USER,
        Some(Facility::Daemon) => syslog::Facility::LOG_DAEMON,
        Some(Facility::Local(n)) => match n {
            0 => syslog::Facility::LOG_LOCAL0,
            1 => syslog::Facility::LOG_LOCAL1,
            2 => syslog::Facility::LOG_LOCAL2,
            3 => syslog::Facility::LOG_LOCAL3,
            4 => syslog::Facility::LOG_LOCAL4,
            5 => syslog::Facility::LOG_LOCAL5,
            6 => syslog::Facility::LOG_LOCAL6,
            _ => syslog::Facility::LOG_LOCAL7,
        },
    };
    let formatter = GlibcLine {
        facility,
        ident: ident.into(),
        pid: std::process::id(),
    };
    let (sink, why) = SyslogSink::connect(formatter, None);
    if let Some(e) = why {
        log::warn!("cannot connect to syslog: {e}");
    }
    sink
}

/// Stops printing to the console (the daemon went to the background).
pub fn detach_console() {
    if let Ok(mut s) = LOGGER.sinks.lock() {
        s.console = false;
    }
}

/// Closes the file and syslog sinks (at shutdown).
pub fn close() {
    if let Ok(mut s) = LOGGER.sinks.lock() {
        s.file = None;
        s.syslog = None;
    }
}

/// Counts a line that a sink outside the logger refused (the flow
/// logger's `Stats { LogFile }`).
pub fn count_write_error() {
    if let Ok(mut s) = LOGGER.sinks.lock() {
        s.write_errors = s.write_errors.saturating_add(1);
    }
}

/// How many log lines could not be written to some sink.
pub fn write_errors() -> u64 {
    match LOGGER.sinks.lock() {
        Ok(s) => s.write_errors,
        Err(poisoned) => poisoned.into_inner().write_errors,
    }
}

/// The target of a record that is an entry's line (see the module's
/// documentation).
pub const ENTRY: &str = "ctsyncd::entry";

/// An entry's line in the LogFile, as conntrackd's `dlog_ct` writes it.
fn entry_line(t: OffsetDateTime, entry: &str) -> String {
    format!("{}\t{entry}", ctime(t))
}

/// Appends one stats-log line (`<ctime>\t<flow>\n`, as conntrackd's
/// flow logger writes it) to `w`, in one write: `writeln!` on the
/// unbuffered file made four (stamp, tab, flow, newline), so a full disk
/// could keep a stamp without its flow, and the next line continued it.
///
/// # Errors
/// The sink's, when it refuses the line (a full disk).
pub fn write_stats_line<W: Write>(
    w: &mut W,
    t: OffsetDateTime,
    flow: &str,
) -> std::io::Result<()> {
    let mut line = entry_line(t, flow);
    line.push('\n');
    w.write_all(line.as_bytes())
}

/// What syslog gets of an entry's line: conntrackd sends the text it
/// wrote to its LogFile, newline included, or without one when it has no
/// LogFile (observed).
fn entry_syslog_text(entry: &str, file: bool) -> String {
    if file {
        format!("{entry}\n")
    } else {
        entry.to_string()
    }
}

/// conntrackd's level words.
fn level_word(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR",
        Level::Warn => "warning",
        Level::Info => "notice",
        Level::Debug => "info",
        Level::Trace => "debug",
    }
}

/// `ctime(3)` without the newline: `Fri Nov 27 08:34:07 2026`.
pub fn ctime(t: OffsetDateTime) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    format!(
        "{} {}{:3} {:02}:{:02}:{:02} {}",
        DAYS[t.weekday().number_days_from_monday() as usize],
        MONTHS[u8::from(t.month()) as usize - 1],
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.year()
    )
}

/// One log line in conntrackd's format (without the newline).
pub fn format_line(
    t: OffsetDateTime,
    pid: u32,
    level: Level,
    msg: &str,
) -> String {
    format!("[{}] (pid={pid}) [{}] {msg}", ctime(t), level_word(level))
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let Ok(mut s) = self.sinks.lock() else {
            return;
        };
        let mut msg = record.args().to_string();
        let now = local_time::now();
        let entry = record.target() == ENTRY;
        // One write per line keeps lines whole in an O_APPEND file shared
        // with the background child and the clients.
        let mut line = if entry {
            entry_line(now, &msg)
        } else {
            format_line(now, std::process::id(), record.level(), &msg)
        };
        line.push('\n');
        if entry {
            msg = entry_syslog_text(&msg, s.file.is_some());
        }
        let mut failed = false;
        if let Some(f) = s.file.as_mut() {
            failed |= f.write_all(line.as_bytes()).is_err();
        }
        if let Some(sys) = s.syslog.as_mut() {
            let level = record.level();
            failed |= !sys.send(|l| match level {
                Level::Error => l.err(&msg),
                Level::Warn => l.warning(&msg),
                Level::Info => l.notice(&msg),
                Level::Debug | Level::Trace => l.info(&msg),
            });
        }
        if s.console && !entry {
            // Errors and warnings to stderr, the rest to stdout, as
            // conntrackd does in console mode.
            let r = if record.level() <= Level::Warn {
                std::io::stderr().write_all(line.as_bytes())
            } else {
                std::io::stdout().write_all(line.as_bytes())
            };
            failed |= r.is_err();
        }
        if failed {
            s.write_errors = s.write_errors.saturating_add(1);
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod test {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn conntrackd_line_format() {
        let t = datetime!(2026-11-27 08:34:07 UTC);
        assert_eq!(ctime(t), "Fri Nov 27 08:34:07 2026");
        assert_eq!(
            format_line(t, 42, Level::Info, "initialization completed"),
            "[Fri Nov 27 08:34:07 2026] (pid=42) [notice] initialization completed"
        );
        assert_eq!(
            format_line(t, 1, Level::Error, "x"),
            "[Fri Nov 27 08:34:07 2026] (pid=1) [ERROR] x"
        );
        assert_eq!(
            format_line(t, 1, Level::Warn, "x"),
            "[Fri Nov 27 08:34:07 2026] (pid=1) [warning] x"
        );
        // ctime pads single-digit days with a space.
        assert_eq!(
            ctime(datetime!(2026-03-01 00:00:00 UTC)),
            "Sun Mar  1 00:00:00 2026"
        );
    }

    /// conntrackd 1.4.7's lines for an entry a commit could not create
    /// (observed: LogFile `Mon Dec  7 19:29:22 2026\ttcp      6 600 …`;
    /// syslog `<27>Dec  7 19:29:48 conntrack-tools[1451]: tcp      6 600
    /// …\n`, without the newline under `LogFile off`).
    #[test]
    fn an_entrys_line_is_conntrackds() {
        let t = datetime!(2026-12-07 19:29:22 UTC);
        assert_eq!(
            entry_line(t, "tcp      6 600 ESTABLISHED src=10.72.1.2"),
            "Mon Dec  7 19:29:22 2026\ttcp      6 600 ESTABLISHED src=10.72.1.2"
        );
        assert_eq!(
            entry_syslog_text("udp      17 30", true),
            "udp      17 30\n"
        );
        assert_eq!(
            entry_syslog_text("udp      17 30", false),
            "udp      17 30"
        );
    }

    /// Counts the write calls a line takes.
    struct Calls {
        writes: usize,
        out: Vec<u8>,
    }

    impl Write for Calls {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.writes += 1;
            self.out.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A stats-log line goes out in one write: in four (stamp, tab, flow,
    /// newline), a full disk could keep the stamp and refuse the rest, and
    /// the next line then continued the torn one.
    #[test]
    fn a_stats_line_is_one_write() {
        let mut sink = Calls {
            writes: 0,
            out: Vec::new(),
        };
        let t = datetime!(2026-12-07 19:29:22 UTC);
        write_stats_line(&mut sink, t, "tcp      6 ESTABLISHED src=10.0.0.1")
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&sink.out),
            "Mon Dec  7 19:29:22 2026\ttcp      6 ESTABLISHED src=10.0.0.1\n"
        );
        assert_eq!(sink.writes, 1, "write calls for one line");
    }

    #[test]
    fn syslog_line_is_glibcs() {
        let daemon_notice = 3 << 3 | 5;
        assert_eq!(
            syslog_line(
                datetime!(2026-12-02 08:04:07 UTC),
                daemon_notice,
                "conntrack-tools",
                42,
                &"starting in daemon mode"
            ),
            "<29>Dec  2 08:04:07 conntrack-tools[42]: starting in daemon mode"
        );
        assert_eq!(
            syslog_line(
                datetime!(2026-11-27 18:34:07 UTC),
                3,
                "ctsyncd",
                7,
                &"x"
            ),
            "<3>Nov 27 18:34:07 ctsyncd[7]: x"
        );
    }
}
