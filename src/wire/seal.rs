//! Sealed datagrams (`AuthenticationKeyFile`): the body encrypted and the
//! whole datagram authenticated with XChaCha20-Poly1305.
//!
//! ```text
//!  0            14               14+n             14+n+24          14+n+40
//! +-------------+----------------+----------------+----------------+
//! | header      | body           | nonce          | tag            |
//! | (clear,     | (encrypted,    | epoch (16) ‖   | Poly1305 (16)  |
//! | version 2)  | n = body len)  | counter (8, BE)|                |
//! +-------------+----------------+----------------+----------------+
//! ```
//!
//! * The clear header is the associated data: nobody can change a flag, a
//!   session or a sequence number without the tag failing. Its body
//!   length is the plaintext's (= ciphertext's) length and its version is
//!   [`SEALED_VERSION`], so the total length (and the TCP framing) still
//!   follows from the header alone.
//! * Nonce: a random 16-byte epoch per daemon start (the daemon draws it;
//!   this module never does) and a 64-bit counter that starts at 0 and
//!   only grows. 2^128 epochs make a collision across restarts
//!   negligible, so no nonce is ever used twice under one key. The counter
//!   is also what the receiver's anti-replay window tracks
//!   ([`super::replay`]).
//! * Keys: the first seals, every key opens (a key rotation needs two).
//!
//! Pure: no clock, no randomness, no I/O; opening never panics.

use std::fmt;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

use super::header::{HEADER_LEN, Packet};
use super::{Error, MAGIC, SEALED_VERSION, TAG_LEN, VERSION};

/// Key size in bytes.
pub const KEY_LEN: usize = 32;
/// Random per daemon start: the high part of every nonce.
pub const EPOCH_LEN: usize = 16;
/// Epoch and counter.
pub const NONCE_LEN: usize = EPOCH_LEN + 8;
/// What sealing adds to a datagram.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// At most this many keys open datagrams (the current and the next).
pub const MAX_KEYS: usize = 2;

// ===== keys =====

/// A 32-byte secret key. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_LEN]);

/// Why a key text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// Not base64 (a character outside the alphabet, or bad padding).
    NotBase64,
    /// Decodes, but not to 32 bytes.
    Length(usize),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::NotBase64 => f.write_str(
                "not a base64 key (make one with `ctsyncd --genkey')",
            ),
            KeyError::Length(n) => write!(
                f,
                "the key decodes to {n} bytes, it must be {KEY_LEN} \
                 (make one with `ctsyncd --genkey')"
            ),
        }
    }
}

impl std::error::Error for KeyError {}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(…)")
    }
}

impl Key {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Key {
        Key(bytes)
    }

    /// Reads a key file's text: standard base64 of 32 bytes (`wg genkey`
    /// writes the same), surrounding white space ignored.
    ///
    /// # Errors
    /// [`KeyError`] names what is wrong (never the key).
    pub fn from_base64(text: &str) -> Result<Key, KeyError> {
        let bytes = base64_decode(text.trim()).ok_or(KeyError::NotBase64)?;
        let key: [u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Length(bytes.len()))?;
        Ok(Key(key))
    }

    /// The key as a key file holds it (without the newline).
    pub fn to_base64(&self) -> String {
        base64_encode(&self.0)
    }
}

const ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Strict standard base64 (padding required, as `wg genkey` writes it).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let t = text.as_bytes();
    if t.len() % 4 != 0 {
        return None;
    }
    let value = |c: u8| ALPHABET.iter().position(|&a| a == c).map(|v| v as u32);
    let mut out = Vec::with_capacity(t.len() / 4 * 3);
    for (i, quad) in t.chunks(4).enumerate() {
        let last = i + 1 == t.len() / 4;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = n << 6 | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        // Bits under the padding must be zero (one text per key).
        if bytes[3 - pad..].iter().any(|&b| b != 0) {
            return None;
        }
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

// ===== sealing and opening =====

/// Where an opened datagram came from in its sender's numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The sender's epoch (one per daemon start).
    pub epoch: [u8; EPOCH_LEN],
    /// The datagram's number within that epoch.
    pub counter: u64,
}

/// Seals outgoing and opens incoming datagrams with the configured keys.
pub struct Sealer {
    ciphers: Vec<XChaCha20Poly1305>,
    epoch: [u8; EPOCH_LEN],
    counter: u64,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("keys", &self.ciphers.len())
            .field("counter", &self.counter)
            .finish()
    }
}

impl Sealer {
    /// A sealer for `keys` (the first seals, each opens; at most
    /// [`MAX_KEYS`] are used) and this start's random `epoch`. None
    /// without a key.
    pub fn new(keys: &[Key], epoch: [u8; EPOCH_LEN]) -> Option<Sealer> {
        if keys.is_empty() {
            return None;
        }
        let ciphers = keys
            .iter()
            .take(MAX_KEYS)
            .map(|k| XChaCha20Poly1305::new((&k.0).into()))
            .collect();
        Some(Sealer {
            ciphers,
            epoch,
            counter: 0,
        })
    }

    /// This start's epoch: the high part of every nonce it seals.
    pub fn epoch(&self) -> [u8; EPOCH_LEN] {
        self.epoch
    }

    /// Seals the plain datagram `buf[..len]` (as [`super::Writer`] left
    /// it) in place and returns the sealed length, `len` +
    /// [`SEAL_OVERHEAD`].
    ///
    /// # Errors
    /// [`Error::TooBig`] when `buf` has no room for the nonce and tag, or
    /// `buf[..len]` is not a plain datagram; [`Error::Auth`] once the
    /// counter is spent (2^64 datagrams: never reused, so never sent).
    pub fn seal(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        let sealed_len = len + SEAL_OVERHEAD;
        if len < HEADER_LEN || buf.len() < sealed_len {
            return Err(Error::TooBig);
        }
        if Packet::new_checked(&buf[..len]).is_err() {
            return Err(Error::TooBig);
        }
        if self.counter == u64::MAX {
            return Err(Error::Auth);
        }
        let counter = self.counter;
        self.counter += 1;
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..EPOCH_LEN].copy_from_slice(&self.epoch);
        nonce[EPOCH_LEN..].copy_from_slice(&counter.to_be_bytes());
        Packet::new_unchecked(&mut buf[..]).set_version(SEALED_VERSION);
        let (header, rest) = buf.split_at_mut(HEADER_LEN);
        let (body, trailer) = rest.split_at_mut(len - HEADER_LEN);
        let tag = self.ciphers[0]
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), header, body)
            .map_err(|_| Error::TooBig)?;
        trailer[..NONCE_LEN].copy_from_slice(&nonce);
        trailer[NONCE_LEN..SEAL_OVERHEAD].copy_from_slice(&tag);
        Ok(sealed_len)
    }

    /// Opens a sealed datagram into `out` (resized to fit) as the plain
    /// datagram it was made from ([`super::read`] reads it), and says
    /// where in its sender's numbering it stands.
    ///
    /// # Errors
    /// [`Error::Unsealed`]: a plain ctsyncd datagram (or anything else of
    /// another protocol); [`Error::Version`], [`Error::Truncated`],
    /// [`Error::TrailingBytes`]: not a whole sealed datagram;
    /// [`Error::Auth`]: no key opens it (wrong key, or altered).
    pub fn open(
        &self,
        datagram: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Origin, Error> {
        let packet = Packet::new_unchecked(datagram);
        if packet.check_header_len().is_err() || packet.magic() != MAGIC {
            return Err(Error::Unsealed);
        }
        match packet.version() {
            SEALED_VERSION => {}
            VERSION => return Err(Error::Unsealed),
            v => return Err(Error::Version(v)),
        }
        packet.check_len()?;
        let plain_len = HEADER_LEN + packet.body_len();
        let trailer = &datagram[plain_len..];
        let nonce = XNonce::from_slice(&trailer[..NONCE_LEN]);
        let tag = Tag::from_slice(&trailer[NONCE_LEN..]);
        let header = &datagram[..HEADER_LEN];
        for cipher in &self.ciphers {
            out.clear();
            out.extend_from_slice(&datagram[..plain_len]);
            let ok = cipher
                .decrypt_in_place_detached(
                    nonce,
                    header,
                    &mut out[HEADER_LEN..],
                    tag,
                )
                .is_ok();
            if ok {
                Packet::new_unchecked(&mut out[..]).set_version(VERSION);
                let mut epoch = [0u8; EPOCH_LEN];
                epoch.copy_from_slice(&trailer[..EPOCH_LEN]);
                let mut counter = [0u8; 8];
                counter.copy_from_slice(&trailer[EPOCH_LEN..NONCE_LEN]);
                return Ok(Origin {
                    epoch,
                    counter: u64::from_be_bytes(counter),
                });
            }
        }
        out.clear();
        Err(Error::Auth)
    }
}

#[cfg(test)]
mod test;
