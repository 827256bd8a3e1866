//! The lock file: one daemon per configuration.
//!
//! Owns: creating the lock file exclusively (O_CREAT|O_EXCL, mode 0600) as
//! conntrackd does, with our pid in it so that a lock left behind by a
//! crashed daemon can be told apart from a running one, and removing it at
//! a clean shutdown.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::process::{Pid, test_kill_process};

use super::Error;

/// A held lock file; removed by [`LockFile::release`].
#[derive(Debug)]
pub struct LockFile {
    path: PathBuf,
}

impl LockFile {
    /// Creates the lock file, or explains why another daemon holds it.
    ///
    /// # Errors
    /// The message to log: conntrackd's text when the file exists and its
    /// owner runs (or cannot be identified), a clear "stale" report when
    /// the recorded pid is gone. `program` names the daemon in the text.
    pub fn acquire(
        path: &Path,
        program: &'static str,
    ) -> Result<LockFile, Error> {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut f) => {
                // The pid is informational; a lock without it still locks.
                let _ = writeln!(f, "{}", std::process::id());
                Ok(LockFile {
                    path: path.to_path_buf(),
                })
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                Err(describe_existing(path, program))
            }
            Err(source) => Err(Error::Lock {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Removes the lock file (clean shutdown).
    pub fn release(self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn describe_existing(path: &Path, program: &'static str) -> Error {
    let owner = fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .and_then(Pid::from_raw);
    // Only "no such process" is gone: EPERM is a live process of another
    // user (a daemon not run as root could not signal it).
    let stale_pid = owner
        .filter(|&pid| test_kill_process(pid) == Err(Errno::SRCH))
        .map(|pid| pid.as_raw_nonzero().get());
    Error::LockHeld {
        path: path.to_path_buf(),
        stale_pid,
        program,
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir()
            .join(format!("ctsyncd-lock-{}-{name}", std::process::id()));
        let _ = fs::remove_file(&dir);
        dir
    }

    #[test]
    fn second_acquire_is_refused_until_release() {
        let p = tmp("a");
        let lock = LockFile::acquire(&p, "ctsyncd").unwrap();
        let err = LockFile::acquire(&p, "ctsyncd").unwrap_err().to_string();
        assert!(
            err.contains("exists, perhaps ctsyncd already running?"),
            "{err}"
        );
        lock.release();
        assert!(!p.exists());
        LockFile::acquire(&p, "ctsyncd").unwrap().release();
    }

    /// A lock whose owner is alive but not ours to signal (EPERM: a
    /// daemon not run as root, the owner another user's) is held, not
    /// stale. The check runs on a thread that is not root (credentials
    /// are per thread), against init.
    #[test]
    fn a_lock_of_a_live_process_of_another_user_is_not_stale() {
        std::thread::spawn(|| {
            if rustix::process::geteuid().is_root() {
                let nobody = rustix::process::Uid::from_raw(65534);
                rustix::thread::set_thread_res_uid(nobody, nobody, nobody)
                    .unwrap();
            }
            let p = tmp("c");
            fs::write(&p, "1\n").unwrap();
            let err = LockFile::acquire(&p, "ctsyncd").unwrap_err().to_string();
            let _ = fs::remove_file(&p);
            assert!(
                err.contains("exists, perhaps ctsyncd already running?"),
                "{err}"
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn stale_lock_is_reported_as_such() {
        let p = tmp("b");
        // pid_max is at most 2^22 on Linux, so this pid cannot exist.
        fs::write(&p, "2147483000\n").unwrap();
        let err = LockFile::acquire(&p, "ctsyncd").unwrap_err().to_string();
        assert!(err.contains("is stale"), "{err}");
        assert!(err.contains("pid=2147483000"), "{err}");
        let _ = fs::remove_file(&p);
    }
}
