//! The replication engines' counters (`-s`, `-s network`, `-s queue`,
//! `-s rsqueue`, `--json`): one [`Stats`] per engine, summed over the
//! engines a protocol switch used.

/// Counters for `-s`, `-s network`, `-s queue`, `-s rsqueue`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub datagrams_sent: u64,
    pub datagrams_recv: u64,
    pub msgs_sent: u64,
    pub msgs_recv: u64,
    pub malformed: u64,
    pub bad_version: u64,
    pub bad_header: u64,
    /// Sealed datagrams no key opens (wrong key, or altered).
    pub auth_failed: u64,
    /// Sealed datagrams seen before, or older than the anti-replay
    /// window.
    pub replayed: u64,
    /// With a key: datagrams that are not sealed (plain ctsyncd ones,
    /// conntrackd's, anything else).
    pub unsealed: u64,
    /// Sequence numbers that never arrived (gaps).
    pub lost: u64,
    /// Old or duplicate messages (dropped in FT-FW, applied in NOTRACK).
    pub before: u64,
    pub retransmitted: u64,
    pub resend_queue_dropped: u64,
    pub tx_queue_full: u64,
    /// Messages dropped because they do not fit even an empty datagram
    /// (an entry, or an anti-entropy message).
    pub too_big: u64,
    /// Anti-entropy messages dropped from their full queue (a repair of
    /// more leaves than it holds: those leaves wait for a later period),
    /// or received more than wait for the node at once (one datagram of
    /// a large MTU's carries more).
    pub background_dropped: u64,
    pub peer_restarts: u64,
    pub resyncs_requested_by_peer: u64,
    /// Sequence numbers (data, ALIVE) further than the window from what
    /// we expect, and reports (ACK, NACK) of numbers we never sent or
    /// spanning more than the window: refused.
    pub out_of_window: u64,
    /// Datagrams of a session not (yet) proven live by a challenge: their
    /// data is not applied.
    pub unconfirmed: u64,
    /// Challenges sent and answered.
    pub challenges_sent: u64,
    pub challenges_answered: u64,
    /// Challenges a datagram called for that the challenge budget held
    /// back (`gate`: forged sessions are asked a few times a second);
    /// the session's next datagram asks again. Repeats on the clock wait
    /// for the budget instead, and are not counted.
    pub challenges_held: u64,
    /// Challenges read and not answered: the answer budget of their
    /// datagram's session was spent (`gate`).
    pub answers_held: u64,
    /// FT-FW tail probes sent (an ALIVE after a quiet period with data
    /// unacknowledged).
    pub probes_sent: u64,
    /// Messages resent because an answered probe showed them missing
    /// (their NACK was lost).
    pub tail_resent: u64,
    /// A conntrackd peer's FT-FW: NACKs of the numbers after the last one
    /// heard, asking for a tail we may have lost (`ctd::tail`).
    pub tail_queries: u64,
    /// FT-FW: states sent while no peer was heard that the resend queue
    /// did not keep (past `ftfw::SILENT_HOLD`): the bulk update at the
    /// peer's return carries them.
    pub given_up_silent: u64,
    /// Bulk updates sent to a peer heard again after that.
    pub bulks_on_return: u64,
    /// [`crate::wire::Msg::Synced`] sent: a bulk answering a peer's RESYNC delivered
    /// (each answer is sent `ready::REPEATS` times).
    pub synced_sent: u64,
    /// Our resyncs the peer said were complete (waiting ended).
    pub resyncs_complete: u64,
}

impl Stats {
    /// `self += b`, field by field (destructured: a new counter must be added
    /// here to compile): a switch's engines and past engines counted as one.
    pub(crate) fn add(&mut self, b: &Stats) {
        let Stats {
            datagrams_sent,
            datagrams_recv,
            msgs_sent,
            msgs_recv,
            malformed,
            bad_version,
            bad_header,
            auth_failed,
            replayed,
            unsealed,
            lost,
            before,
            retransmitted,
            resend_queue_dropped,
            tx_queue_full,
            too_big,
            background_dropped,
            peer_restarts,
            resyncs_requested_by_peer,
            out_of_window,
            unconfirmed,
            challenges_sent,
            challenges_answered,
            challenges_held,
            answers_held,
            probes_sent,
            tail_resent,
            tail_queries,
            given_up_silent,
            bulks_on_return,
            synced_sent,
            resyncs_complete,
        } = b;
        self.datagrams_sent += datagrams_sent;
        self.datagrams_recv += datagrams_recv;
        self.msgs_sent += msgs_sent;
        self.msgs_recv += msgs_recv;
        self.malformed += malformed;
        self.bad_version += bad_version;
        self.bad_header += bad_header;
        self.auth_failed += auth_failed;
        self.replayed += replayed;
        self.unsealed += unsealed;
        self.lost += lost;
        self.before += before;
        self.retransmitted += retransmitted;
        self.resend_queue_dropped += resend_queue_dropped;
        self.tx_queue_full += tx_queue_full;
        self.too_big += too_big;
        self.background_dropped += background_dropped;
        self.peer_restarts += peer_restarts;
        self.resyncs_requested_by_peer += resyncs_requested_by_peer;
        self.out_of_window += out_of_window;
        self.unconfirmed += unconfirmed;
        self.challenges_sent += challenges_sent;
        self.challenges_answered += challenges_answered;
        self.challenges_held += challenges_held;
        self.answers_held += answers_held;
        self.probes_sent += probes_sent;
        self.tail_resent += tail_resent;
        self.tail_queries += tail_queries;
        self.given_up_silent += given_up_silent;
        self.bulks_on_return += bulks_on_return;
        self.synced_sent += synced_sent;
        self.resyncs_complete += resyncs_complete;
    }
}
