//! Origin tracking: which of our own sockets caused a kernel event.
//!
//! Every event carries the netlink port id of the socket whose request
//! caused it (0 for the kernel itself, e.g. a packet creating a flow). The
//! daemon registers the port of each socket that modifies the kernel; an
//! event from the commit or flush socket updates the internal cache but is
//! not sent to the peer, one from the inject socket is ignored entirely
//! (reference §1). Pure.

/// Who caused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Traffic, an administrator, or another program.
    NotMe,
    /// Our commit of the external cache (`-c`).
    Commit,
    /// Our kernel flushes (`-F`, `-t`).
    Flush,
    /// Our direct injection (DisableExternalCache).
    Inject,
}

/// The ports of our kernel-modifying sockets (a handful at most).
#[derive(Debug, Default)]
pub struct Origins {
    ports: heapless::Vec<(u32, Origin), 8>,
}

impl Origins {
    /// Remembers that events from `port` are ours. Port 0 (the kernel) is
    /// never ours; beyond eight sockets registration is refused (false).
    pub fn register(&mut self, port: u32, origin: Origin) -> bool {
        port != 0 && self.ports.push((port, origin)).is_ok()
    }

    pub fn classify(&self, port: u32) -> Origin {
        self.ports
            .iter()
            .find(|(p, _)| *p == port)
            .map_or(Origin::NotMe, |(_, o)| *o)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn classify_registered_ports() {
        let mut o = Origins::default();
        assert!(o.register(100, Origin::Commit));
        assert!(o.register(200, Origin::Flush));
        assert!(!o.register(0, Origin::Inject));
        assert_eq!(o.classify(100), Origin::Commit);
        assert_eq!(o.classify(200), Origin::Flush);
        assert_eq!(o.classify(0), Origin::NotMe);
        assert_eq!(o.classify(300), Origin::NotMe);
    }
}
