//! Creating entries in batches (a commit, an injection): an entry that
//! exists is deleted and created again in the same send, a RELATED entry
//! whose master the kernel lacks is created again without it, and the
//! conntracks are cut into runs so that a master goes before the entries
//! that name it. A socket that fails midway leaves what the kernel
//! answered for (`*_into`).

use std::collections::HashSet;
use std::io;

use super::{BATCH, CtSocket, EEXIST, ENOENT, Errno, SEND_BYTES};
use crate::kernel::codec;
use crate::kernel::commit::MAX_CHAIN;
use crate::model::{Conntrack, Expect, Tuple};

impl CtSocket {
    /// Creates conntracks (already prepared by `kernel::commit`) in
    /// batches. An entry that exists is deleted and created once more, as
    /// conntrackd does. A RELATED entry whose master the kernel does not
    /// have (ENOENT: the master ended before the failover, so it is in
    /// neither the plan nor the kernel) is created once more without it:
    /// the flow itself is still in use (its own RELATED entries refused
    /// with it keep it as their master). Returns one errno per entry, 0
    /// for success.
    pub fn create_cts(&mut self, cts: &[Conntrack]) -> io::Result<Vec<Errno>> {
        let mut result = Vec::with_capacity(cts.len());
        self.create_cts_into(cts, &mut result)?;
        Ok(result)
    }

    /// [`CtSocket::create_cts`], appending to `result`. When the socket
    /// fails midway, `result` holds one errno for each entry the kernel
    /// answered for, in order (those of a batch whose answer never came
    /// are left out: the kernel may or may not hold them), and the
    /// error is returned. An entry whose retry (deleted and created
    /// again after EEXIST, or created without its master after ENOENT)
    /// got no answer keeps the kernel's first answer, a refusal.
    pub fn create_cts_into(
        &mut self,
        cts: &[Conntrack],
        result: &mut Vec<Errno>,
    ) -> io::Result<()> {
        let delete = |buf: &mut Vec<u8>, ct: &Conntrack, seq| {
            codec::encode_ct_delete(buf, &ct.orig, ct.zone, seq)
        };
        let base = result.len();
        for run in master_runs(cts) {
            self.create_with_retry(
                run,
                codec::encode_ct_create,
                delete,
                result,
            )?;
        }
        let result = &mut result[base..];
        // The master each entry is created with now; a refused one loses
        // its own, unless that master is retried in the same round (a
        // chain whose first master ended: H.323's H.245 channel and its
        // RTP flow): then it is created first and the link kept. Each
        // round retries fewer links; the last drops them all.
        let mut masters: Vec<Option<Tuple>> =
            cts.iter().map(|c| c.master).collect();
        for round in 0..=MAX_CHAIN {
            let orphans: Vec<usize> = (0..cts.len())
                .filter(|&i| result[i] == ENOENT && masters[i].is_some())
                .collect();
            if orphans.is_empty() {
                return Ok(());
            }
            let again: HashSet<(Tuple, u16)> = orphans
                .iter()
                .map(|&i| (cts[i].orig, cts[i].zone))
                .collect();
            let alone: Vec<Conntrack> = orphans
                .iter()
                .map(|&i| {
                    let zone = cts[i].zone;
                    masters[i] = masters[i].filter(|m| {
                        round < MAX_CHAIN && again.contains(&(*m, zone))
                    });
                    Conntrack {
                        master: masters[i],
                        ..cts[i].clone()
                    }
                })
                .collect();
            // A failure here leaves them as they were: refused (ENOENT).
            let mut errs = Vec::with_capacity(alone.len());
            let mut retried = Ok(());
            for run in master_runs(&alone) {
                retried = self.create_with_retry(
                    run,
                    codec::encode_ct_create,
                    delete,
                    &mut errs,
                );
                if retried.is_err() {
                    break;
                }
            }
            for (&i, e) in orphans.iter().zip(errs) {
                result[i] = e;
            }
            retried?;
        }
        Ok(())
    }

    /// Creates expectations (their masters must exist), with the same
    /// EEXIST handling as [`CtSocket::create_cts`].
    pub fn create_exps(&mut self, exps: &[Expect]) -> io::Result<Vec<Errno>> {
        let mut result = Vec::with_capacity(exps.len());
        self.create_exps_into(exps, &mut result)?;
        Ok(result)
    }

    /// [`CtSocket::create_exps`], appending to `result`, which holds what
    /// the kernel answered when the socket fails midway (as
    /// [`CtSocket::create_cts_into`]).
    pub fn create_exps_into(
        &mut self,
        exps: &[Expect],
        result: &mut Vec<Errno>,
    ) -> io::Result<()> {
        self.create_with_retry(
            exps,
            codec::encode_exp_create,
            codec::encode_exp_delete,
            result,
        )
    }

    /// Creates `items` in batches, appending each batch's errnos to
    /// `result` once the kernel answered it.
    fn create_with_retry<T>(
        &mut self,
        items: &[T],
        create: impl Fn(&mut Vec<u8>, &T, u32),
        delete: impl Fn(&mut Vec<u8>, &T, u32),
        result: &mut Vec<Errno>,
    ) -> io::Result<()> {
        let mut rest = items;
        while !rest.is_empty() {
            let (n, errs) = self.send_some(rest, 1, |buf, item, seq| {
                create(buf, item, seq());
            })?;
            let (chunk, after) = rest.split_at(n);
            rest = after;
            let exists: Vec<usize> =
                (0..chunk.len()).filter(|&i| errs[i] == EEXIST).collect();
            let base = result.len();
            // A retry that fails leaves its entries as the kernel first
            // answered: refused (EEXIST).
            result.extend_from_slice(&errs);
            // Each delete right before its create, in one send: between
            // the two the kernel holds no entry for the flow, and a packet
            // of it that comes then is a new flow (to a virtual address
            // this node now owns: delivered locally, and reset). Two
            // sends, all deletes then all creates, made that gap a system
            // call and a whole batch long.
            let mut pending = &exists[..];
            while !pending.is_empty() {
                let (k, errs) =
                    self.send_some(pending, 2, |buf, &i, seq| {
                        delete(buf, &chunk[i], seq());
                        create(buf, &chunk[i], seq());
                    })?;
                // The creates' outcomes; a delete's ENOENT is fine (the
                // entry may have gone meanwhile).
                for (j, &i) in pending[..k].iter().enumerate() {
                    result[base + i] = errs[2 * j + 1];
                }
                pending = &pending[k..];
            }
        }
        Ok(())
    }

    /// Sends the first of `items`, each encoded as `per_item` requests,
    /// in one batch: as many as make BATCH requests, or SEND_BYTES and
    /// one item more (at least one item). How many it took, and the
    /// errno of each request in order.
    fn send_some<T>(
        &mut self,
        items: &[T],
        per_item: usize,
        encode: impl Fn(&mut Vec<u8>, &T, &mut dyn FnMut() -> u32),
    ) -> io::Result<(usize, Vec<Errno>)> {
        let mut taken = 0;
        let errs = self.batch(|buf, seq| {
            for item in items {
                if (taken + 1) * per_item > BATCH.max(per_item)
                    || buf.len() >= SEND_BYTES
                {
                    break;
                }
                encode(buf, item, seq);
                taken += 1;
            }
        })?;
        Ok((taken, errs))
    }
}

/// `cts` cut before each entry whose master is in the same run, so that
/// a master is created, and deleted and created again when it existed,
/// before the RELATED entries that name it are sent: in one send, such an
/// entry was linked to the kernel's old master, which the retry then
/// deleted (the commit's order already puts masters first).
fn master_runs(cts: &[Conntrack]) -> Vec<&[Conntrack]> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut origs = HashSet::new();
    for (i, ct) in cts.iter().enumerate() {
        if ct.master.is_some_and(|m| origs.contains(&m)) {
            runs.push(&cts[start..i]);
            start = i;
            origs.clear();
        }
        origs.insert(ct.orig);
    }
    if start < cts.len() {
        runs.push(&cts[start..]);
    }
    runs
}

#[cfg(test)]
mod test {
    use super::master_runs;
    use crate::model::Conntrack;

    #[test]
    fn related_entries_go_after_a_run_that_holds_their_master() {
        use crate::model::{L4, Tuple};
        let t = |port: u16| Tuple {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            proto: 6,
            l4: L4::Ports { src: port, dst: 21 },
        };
        let ct = |port: u16, master: Option<u16>| {
            let mut c = Conntrack::new(t(port));
            c.master = master.map(t);
            c
        };
        // Two calls, their data channels, and a flow RELATED to a data
        // channel (H.323's depth); a RELATED entry whose master is not
        // in the slice stays in its run.
        let cts = [
            ct(1, None),
            ct(2, None),
            ct(9, Some(99)),
            ct(10, Some(1)),
            ct(20, Some(2)),
            ct(30, Some(10)),
        ];
        let runs: Vec<Vec<u16>> = master_runs(&cts)
            .iter()
            .map(|r| {
                r.iter()
                    .map(|c| match c.orig.l4 {
                        L4::Ports { src, .. } => src,
                        _ => 0,
                    })
                    .collect()
            })
            .collect();
        assert_eq!(runs, vec![vec![1, 2, 9], vec![10, 20], vec![30]]);
        assert!(master_runs(&[]).is_empty());
    }
}
