//! Reading the `AuthenticationKeyFile`s: at start, and for
//! `--check-config`.
//!
//! A key file that group or others may read (or write) is refused, as ssh
//! refuses such private keys: a key readable by anyone but root is a key
//! to the firewall's state table. The messages name the file and the
//! clause (`file:line:col`), never the key.

use std::fmt;
use std::io::{ErrorKind, Read as _};
use std::os::unix::fs::PermissionsExt as _;

use crate::config::KeyFile;
use crate::wire::seal::{KEY_LEN, Key, KeyError};

/// Why a key file was refused.
#[derive(Debug)]
pub enum KeyFileError {
    Missing(KeyFile),
    Read(KeyFile, std::io::Error),
    /// Group or others have some permission (the mode is carried).
    Permissions(KeyFile, u32),
    Content(KeyFile, KeyError),
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name =
            |k: &KeyFile| format!("{}: key file `{}'", k.at, k.path.display());
        match self {
            KeyFileError::Missing(k) => write!(f, "{}: no such file", name(k)),
            KeyFileError::Read(k, e) => write!(f, "{}: {e}", name(k)),
            KeyFileError::Permissions(k, mode) => write!(
                f,
                "{} is accessible by group or others (mode {:04o}); refusing it \
                 (chmod 600 it)",
                name(k),
                mode & 0o7777
            ),
            KeyFileError::Content(k, e) => write!(f, "{}: {e}", name(k)),
        }
    }
}

impl std::error::Error for KeyFileError {}

/// The rule, on its own: only the owner may have any access.
pub fn mode_is_private(mode: u32) -> bool {
    mode & 0o077 == 0
}

/// Reads one key file.
///
/// # Errors
/// [`KeyFileError`]: missing, unreadable, too open, or not a key.
pub fn read(k: &KeyFile) -> Result<Key, KeyFileError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    // Opened once, then checked as opened: a path checked first and
    // opened after could be swapped between the two (a FIFO put in its
    // place would block the start). Non-blocking, so opening a FIFO
    // returns at once, to be refused below.
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(&k.path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(KeyFileError::Missing(k.clone()));
        }
        Err(e) => return Err(KeyFileError::Read(k.clone(), e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| KeyFileError::Read(k.clone(), e))?;
    let mode = meta.permissions().mode();
    if !mode_is_private(mode) {
        return Err(KeyFileError::Permissions(k.clone(), mode));
    }
    // A FIFO (or a device) would block the read, and the start with it.
    if !meta.is_file() {
        let e =
            std::io::Error::new(ErrorKind::InvalidInput, "not a regular file");
        return Err(KeyFileError::Read(k.clone(), e));
    }
    // A key file is one short line; more is not a key (and not read: a
    // large file named by mistake would be taken into memory whole).
    let mut text = Vec::new();
    file.take(4 * KEY_LEN as u64 + 1)
        .read_to_end(&mut text)
        .map_err(|e| KeyFileError::Read(k.clone(), e))?;
    if text.len() > 4 * KEY_LEN {
        return Err(KeyFileError::Content(k.clone(), KeyError::NotBase64));
    }
    let text = std::str::from_utf8(&text)
        .map_err(|_| KeyFileError::Content(k.clone(), KeyError::NotBase64))?;
    Key::from_base64(text).map_err(|e| KeyFileError::Content(k.clone(), e))
}

/// Reads every key file, in the configuration's order (the first seals).
///
/// # Errors
/// The first file refused.
pub fn read_all(files: &[KeyFile]) -> Result<Vec<Key>, KeyFileError> {
    files.iter().map(read).collect()
}

/// `--check-config`: the key files that exist here must be good; one that
/// does not exist (a systemd credential, present only in the running
/// unit) is named in the returned notes and checked again at start.
///
/// # Errors
/// The first key file present but refused.
pub fn check(files: &[KeyFile]) -> Result<Vec<String>, KeyFileError> {
    let mut notes = Vec::new();
    for k in files {
        match read(k) {
            Ok(_) => {}
            Err(KeyFileError::Missing(k)) => notes.push(format!(
                "{}: key file `{}' is not present here; it is read at start",
                k.at,
                k.path.display()
            )),
            Err(e) => return Err(e),
        }
    }
    Ok(notes)
}

/// A fresh key as `--genkey` prints it (base64 of 32 random bytes).
///
/// # Errors
/// The system's random source failed.
pub fn generate() -> std::io::Result<String> {
    let mut bytes = [0u8; KEY_LEN];
    fill_random(&mut bytes)?;
    Ok(Key::from_bytes(bytes).to_base64())
}

/// Fills `buf` from the kernel's random source, or fails: a key or a
/// nonce epoch must never be left partly zero.
///
/// # Errors
/// getrandom(2) failed.
pub fn fill_random(buf: &mut [u8]) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(
            &mut buf[filled..],
            rustix::rand::GetRandomFlags::empty(),
        ) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn only_owner_access_is_private() {
        for (mode, private) in [
            (0o100600, true),
            (0o100400, true),
            (0o100700, true),
            (0o100640, false),
            (0o100604, false),
            (0o100620, false),
            (0o100602, false),
            (0o100644, false),
        ] {
            assert_eq!(mode_is_private(mode), private, "{mode:o}");
        }
    }

    fn key_file(name: &str) -> KeyFile {
        let path = std::env::temp_dir()
            .join(format!("ctsyncd-key-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        KeyFile {
            path,
            at: "c.conf:3:24".to_string(),
        }
    }

    /// A key file is one short line: a large file named by mistake (a
    /// log, a disk image) is refused for its size, not read into memory
    /// first. A sparse 1 TiB file costs no disk; reading it whole failed
    /// to allocate (or took the memory and minutes).
    #[test]
    fn a_large_file_is_refused_without_being_read() {
        use std::os::unix::fs::OpenOptionsExt as _;
        let k = key_file("large");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&k.path)
            .unwrap();
        f.set_len(1 << 40).unwrap();
        drop(f);
        let t0 = std::time::Instant::now();
        let r = read(&k);
        let _ = std::fs::remove_file(&k.path);
        assert!(
            matches!(r, Err(KeyFileError::Content(_, KeyError::NotBase64))),
            "{r:?}"
        );
        assert!(t0.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn generated_keys_read_back_and_differ() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert!(Key::from_base64(&a).is_ok());
    }
}
