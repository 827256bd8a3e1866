//! What the conntrackd-protocol engine refused of a peer's datagrams, by
//! why (`-s link`, `--json`).

use crate::wire::ctd;

/// conntrackd messages refused, by why (`-s link`, `--json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refused {
    /// Shorter than its header says, or than a header.
    pub truncated: u64,
    /// A length of 0, or past the datagram.
    pub bad_size: u64,
    /// Another protocol version.
    pub version: u64,
    /// A message type conntrackd does not define.
    pub bad_type: u64,
    /// Flags that make no message (e.g. a control message without its
    /// kind, an ACK ending before it starts).
    pub bad_header: u64,
    /// An attribute that does not decode.
    pub malformed: u64,
    /// Datagrams read before the switch to conntrackd's protocol (its
    /// first two seconds, or while a ctsyncd peer talks on the link).
    pub before_switch: u64,
}

impl Refused {
    pub fn total(&self) -> u64 {
        self.truncated
            + self.bad_size
            + self.version
            + self.bad_type
            + self.bad_header
            + self.malformed
            + self.before_switch
    }

    pub(crate) fn count(&mut self, e: ctd::Error) {
        match e {
            ctd::Error::Truncated => self.truncated += 1,
            ctd::Error::BadSize | ctd::Error::TooBig => self.bad_size += 1,
            ctd::Error::Version(_) => self.version += 1,
            ctd::Error::BadType(_) => self.bad_type += 1,
            ctd::Error::BadHeader => self.bad_header += 1,
            ctd::Error::Malformed => self.malformed += 1,
        }
    }

    pub fn add(&mut self, o: &Refused) {
        self.truncated += o.truncated;
        self.bad_size += o.bad_size;
        self.version += o.version;
        self.bad_type += o.bad_type;
        self.bad_header += o.bad_header;
        self.malformed += o.malformed;
        self.before_switch += o.before_switch;
    }
}
