//! `-i` and `-e` from the caches, rendered a part at a time.
//!
//! A dump of 100 000 entries is several megabytes of text; rendered at
//! once it would hold the event loop for tens of milliseconds per client
//! (and a hundred clients asking at once for seconds). The entries are
//! copied out in their compact stored form when the request comes (the
//! dump shows the cache as it was then), and each turn of the loop
//! renders [`DUMP_PART`] of them for one client, clients taking turns.
//! At most [`DUMPS_AT_ONCE`] are copied out and in progress; further
//! requests wait their turn, so a hundred clients cost four copies. When
//! the last one ends, copies of [`RELEASE_AFTER`] entries or more are
//! handed back to the system (`Outbox::release_memory`), as after a
//! resync: four copies of 200 000 entries are about 70 MB, which the
//! allocator otherwise kept.
//!
//! A dump is rendered no faster than its client reads it: the daemon
//! pauses a dump whose client still has parts to write
//! ([`Node::dump_paced`]), so a dump holds at most a couple of parts of
//! the reply budget however large it is. A client that leaves
//! ([`Node::client_gone`]) gives its place to the next request at once,
//! not after the rest of its dump was rendered for nobody.
//!
//! Without an internal cache `-i` is a live kernel dump that the worker
//! hands in by parts ([`Node::live_dump_part`]): its JSON array is opened
//! by the first part and closed by the last.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use super::{ClientId, Node, RELEASE_AFTER};
use crate::cache::Copied;
use crate::control::proto::{Cache as Which, Format, Reply, Status, Table};
use crate::kernel::codec::Object;
use crate::model::{Conntrack, Expect, Mode};
use crate::time::Instant;

/// Entries rendered per turn (a few milliseconds of work).
pub(super) const DUMP_PART: usize = 4096;
/// Dumps copied out and rendered at once; later requests wait their turn
/// without a copy (each copy costs ~90 bytes per entry).
const DUMPS_AT_ONCE: usize = 4;

/// A dump request waiting for one of the [`DUMPS_AT_ONCE`] places.
#[derive(Debug, Clone, Copy)]
pub(super) struct DumpRequest {
    client: ClientId,
    cache: Which,
    table: Table,
    format: Format,
}

/// A dump being answered.
#[derive(Debug)]
pub(super) struct DumpRun {
    client: ClientId,
    table: Table,
    format: Format,
    external: bool,
    /// ALARM's external cache shows `[expires in]`.
    expiry: Option<Duration>,
    entries: Vec<Copied>,
    done: usize,
    /// The client has not yet read what was rendered for it.
    paused: bool,
}

/// The dumps being answered, in turn, and the requests waiting.
#[derive(Debug, Default)]
pub(super) struct Dumps {
    running: VecDeque<DumpRun>,
    waiting: VecDeque<DumpRequest>,
    /// The clients whose live JSON dump has had its first part.
    live_json: HashSet<ClientId>,
    /// Entries copied out since no dump was running.
    copied: usize,
}

impl Node {
    /// Starts answering a `-i`/`-e` from the caches; the first part goes
    /// out at once (a small dump is complete in it).
    pub(super) fn start_dump(
        &mut self,
        now: Instant,
        client: ClientId,
        cache: Which,
        table: Table,
        format: Format,
    ) {
        let req = DumpRequest {
            client,
            cache,
            table,
            format,
        };
        if self.dumps.running.len() >= DUMPS_AT_ONCE {
            self.dumps.waiting.push_back(req);
            return;
        }
        self.begin_dump(req);
        self.dump_turn(now);
    }

    /// Copies the entries out for a request and lines it up.
    fn begin_dump(&mut self, req: DumpRequest) {
        let DumpRequest {
            client,
            cache,
            table,
            format,
        } = req;
        let external = cache == Which::External;
        let entries = match (cache, table) {
            (Which::Internal, Table::Ct) => self.internal_ct.copy_out(),
            (Which::Internal, Table::Expect) => self.internal_exp.copy_out(),
            (Which::External, Table::Ct) => self.external_ct.copy_out(),
            (Which::External, Table::Expect) => self.external_exp.copy_out(),
        };
        self.dumps.copied += entries.len();
        let expiry = (external && self.sync().mode == Mode::Alarm)
            .then(|| Duration::from_secs(u64::from(self.sync().cache_timeout)));
        self.dumps.running.push_back(DumpRun {
            client,
            table,
            format,
            external,
            expiry,
            entries,
            done: 0,
            paused: false,
        });
    }

    /// A part of a live kernel dump as its client's text: plain lines
    /// (conntrackd prints these plain even with `-x`), or the objects of
    /// one JSON array over all the parts.
    pub(super) fn live_dump_part(
        &mut self,
        client: ClientId,
        format: Format,
        objects: &[Object],
        last: bool,
    ) -> String {
        let json = format == Format::Json;
        let mut text = String::new();
        let mut first = json && self.dumps.live_json.insert(client);
        if first {
            text.push('[');
        }
        for o in objects {
            if json && !std::mem::take(&mut first) {
                text.push(',');
            }
            text.push_str(&match (o, json) {
                (Object::Ct(c), true) => super::render::ct_json(c, 0),
                (Object::Ct(c), false) => super::render::ct_line_kernel(c),
                (Object::Exp(x), true) => super::render::exp_json(x, 0),
                (Object::Exp(x), false) => super::render::exp_line(x),
            });
            if !json {
                text.push('\n');
            }
        }
        if last {
            self.live_dump_end(client);
            if json {
                text.push_str("]\n");
            }
        }
        text
    }

    /// `client`'s live dump ended (or failed).
    pub(super) fn live_dump_end(&mut self, client: ClientId) {
        self.dumps.live_json.remove(&client);
    }

    /// Whether a dump waits for its next part (and its client for it).
    pub(super) fn dumping(&self) -> bool {
        self.dumps.running.iter().any(|r| !r.paused)
    }

    /// Dumps being answered or waiting for their turn.
    pub fn dumps_pending(&self) -> usize {
        self.dumps.running.len() + self.dumps.waiting.len()
    }

    /// Whether a dump waits for a place (the running ones may be paused
    /// by clients that read slowly).
    pub fn dumps_waiting(&self) -> bool {
        !self.dumps.waiting.is_empty()
    }

    /// Whether `client`'s dump waits for the client to read what it has
    /// (`behind`) or may have its next part rendered.
    pub fn dump_paced(&mut self, client: ClientId, behind: bool) {
        for run in self.dumps.running.iter_mut() {
            if run.client == client {
                run.paused = behind;
            }
        }
    }

    /// `client` left (or was refused): its dump stops and its place goes
    /// to the next request in line.
    pub fn client_gone(&mut self, client: ClientId) {
        self.dumps.waiting.retain(|r| r.client != client);
        let before = self.dumps.running.len();
        self.dumps.running.retain(|r| r.client != client);
        for _ in self.dumps.running.len()..before {
            if let Some(req) = self.dumps.waiting.pop_front() {
                self.begin_dump(req);
            }
        }
        self.release_copies_when_idle();
    }

    /// Once no dump runs, large copies go back to the system.
    fn release_copies_when_idle(&mut self) {
        if self.dumps.running.is_empty() {
            let copied = std::mem::take(&mut self.dumps.copied);
            self.out.release_memory |= copied >= RELEASE_AFTER;
        }
    }

    /// Renders the next part of the first dump in line whose client is
    /// not behind, which then goes to the back of the line unless it is
    /// complete.
    pub(super) fn dump_turn(&mut self, now: Instant) {
        let Some(at) = self.dumps.running.iter().position(|r| !r.paused) else {
            return;
        };
        let Some(mut run) = self.dumps.running.remove(at) else {
            return;
        };
        let first = run.done == 0;
        let end = (run.done + DUMP_PART).min(run.entries.len());
        let part = &run.entries[run.done..end];
        let mut text = String::new();
        if first && run.format == Format::Json {
            text.push('[');
        }
        text.push_str(&match run.table {
            Table::Ct => super::render::ct_part(
                part.iter().filter_map(Copied::decode::<Conntrack>),
                first,
                now,
                run.format,
                run.external,
                run.expiry,
            ),
            Table::Expect => super::render::exp_part(
                part.iter().filter_map(Copied::decode::<Expect>),
                first,
                now,
                run.format,
                run.expiry,
            ),
        });
        run.done = end;
        let complete = run.done == run.entries.len();
        if complete && run.format == Format::Json {
            text.push_str("]\n");
        }
        if !text.is_empty() {
            self.out.reply(run.client, Reply::Data(text));
        }
        if complete {
            self.out.reply(run.client, Reply::Done(Status::Ok));
            if let Some(req) = self.dumps.waiting.pop_front() {
                self.begin_dump(req);
            }
            self.release_copies_when_idle();
        } else {
            self.dumps.running.push_back(run);
        }
    }
}
