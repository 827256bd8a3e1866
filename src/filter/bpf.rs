//! `Filter From Kernelspace`: the conntrack part of the [`Filter`] compiled
//! into a classic BPF program for the event socket (`SO_ATTACH_FILTER`),
//! so events of ignored flows are dropped in the kernel and never cost a
//! wake-up, a copy or a decode.
//!
//! The program is a *pre-filter* with the user-space filter's semantics
//! (reference §7.1; conntrackd's own kernel filter matches addresses
//! differently, §7.1 and its "differences" table, item 11): it drops an
//! event only when [`super::conntrack`] would reject the flow it
//! describes, and passes every message it cannot decide (expectations,
//! other subsystems, an attribute it cannot find, an unknown family), so
//! the user-space filter, which still runs, has the last word.
//!
//! Layout read (all in one skb per event, attribute headers in host
//! order, payloads big-endian): `nlmsghdr` (16 bytes; the subsystem is
//! the high byte of `nlmsg_type`), `nfgenmsg` (4 bytes; family first),
//! then the attributes, walked with the kernel's `SKF_AD_NLATTR` /
//! `SKF_AD_NLATTR_NEST` helpers: `CTA_TUPLE_ORIG` › `CTA_TUPLE_PROTO` ›
//! `CTA_PROTO_NUM`; `CTA_TUPLE_ORIG` / `CTA_TUPLE_REPLY` › `CTA_TUPLE_IP` ›
//! `CTA_IP_V4_SRC` / `CTA_IP_V6_SRC`; `CTA_PROTOINFO` › `CTA_PROTOINFO_TCP`
//! › `CTA_PROTOINFO_TCP_STATE`. DESTROY events skip the state test: they
//! carry the state the flow died in (Linux 6.18 sends it), and user space
//! forgets a replicated flow on its DESTROY whatever that state; dropped
//! here, the flow would stay in the internal cache and on the peers.
//!
//! Conditional jumps in classic BPF reach at most 255 instructions ahead,
//! so every test jumps over one `JA` (32-bit reach) to go far. Programs
//! are limited to [`MAX_INSNS`]: a Filter too large for it is compiled
//! without its Address rule (the user-space filter still applies it), and
//! so is one the kernel refuses to attach ([`attach`]: its memory bound).
//! Pure: the kernel is reached through the caller's closure.

use crate::config::{Cidr, Filter, Logic};

/// One instruction, laid out as the kernel's `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// The kernel's `BPF_MAXINSNS`.
pub const MAX_INSNS: usize = 4096;

// Instruction classes, sizes, modes and operations (linux/filter.h,
// linux/bpf_common.h).
pub const LD: u16 = 0x00;
pub const LDX: u16 = 0x01;
pub const ST: u16 = 0x02;
pub const ALU: u16 = 0x04;
pub const JMP: u16 = 0x05;
pub const RET: u16 = 0x06;
pub const MISC: u16 = 0x07;
pub const W: u16 = 0x00;
pub const B: u16 = 0x10;
pub const IMM: u16 = 0x00;
pub const ABS: u16 = 0x20;
pub const IND: u16 = 0x40;
pub const MEM: u16 = 0x60;
pub const AND: u16 = 0x50;
pub const JA: u16 = 0x00;
pub const JEQ: u16 = 0x10;
pub const JGT: u16 = 0x20;
pub const JGE: u16 = 0x30;
pub const K: u16 = 0x00;
pub const TAX: u16 = 0x00;
/// Ancillary loads: `k = SKF_AD_OFF + SKF_AD_*`.
pub const SKF_AD_OFF: u32 = 0xffff_f000;
/// A ← offset of the attribute of type X among those from offset A to
/// the end of the packet (0: none).
pub const SKF_AD_NLATTR: u32 = 12;
/// A ← offset of the attribute of type X inside the nest at offset A.
pub const SKF_AD_NLATTR_NEST: u32 = 16;

/// What the program returns to keep a message whole, or to drop it.
pub const KEEP: u32 = u32::MAX;
pub const DROP: u32 = 0;

// ctnetlink's numbers (include/uapi/linux/netfilter/nfnetlink*.h).
const NFNL_SUBSYS_CTNETLINK: u32 = 1;
const IPCTNL_MSG_CT_DELETE: u32 = 2;
const ATTRS: u32 = 16 + 4;
const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const CTA_TUPLE_ORIG: u32 = 1;
const CTA_TUPLE_REPLY: u32 = 2;
const CTA_PROTOINFO: u32 = 4;
const CTA_TUPLE_IP: u32 = 1;
const CTA_TUPLE_PROTO: u32 = 2;
const CTA_IP_V4_SRC: u32 = 1;
const CTA_IP_V6_SRC: u32 = 3;
const CTA_PROTO_NUM: u32 = 1;
const CTA_PROTOINFO_TCP: u32 = 1;
const CTA_PROTOINFO_TCP_STATE: u32 = 1;
const IPPROTO_TCP: u32 = 6;
/// An attribute's payload follows its 4-byte header.
const NLA_HDRLEN: u32 = 4;

// Scratch memory slots.
const M_FAMILY: u32 = 0;
const M_ORIG: u32 = 1;
const M_PROTO: u32 = 2;
/// The original source (1 word for IPv4, 4 for IPv6).
const M_SRC: u32 = 3;
/// The reply source.
const M_RSRC: u32 = 7;

/// Byte order of the netlink headers (the host's, for a live socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    Little,
    Big,
}

impl Endian {
    pub fn host() -> Endian {
        if cfg!(target_endian = "big") {
            Endian::Big
        } else {
            Endian::Little
        }
    }
}

/// Why no program could be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Even without its Address rule the program exceeds [`MAX_INSNS`].
    TooLarge(usize),
}

/// Why [`attach`] attached no program.
#[derive(Debug)]
pub enum AttachError {
    Compile(Error),
    /// The kernel refused the program (the first refusal's error).
    Kernel(std::io::Error),
}

/// What [`compile`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub insns: Vec<Insn>,
    /// The Address rule was left to user space (too many prefixes).
    pub without_address: bool,
}

/// Compiles `f` and hands the program to `attach` (`SO_ATTACH_FILTER`);
/// if the kernel refuses a program that holds the Address rule, the one
/// without it. [`MAX_INSNS`] is not the kernel's only bound: a socket
/// filter, translated to eBPF, is also charged against
/// `net.core.optmem_max` (20 480 bytes before Linux 6.9, about 2 500
/// translated instructions), and a refusal there (ENOMEM) cost the whole
/// kernel-side filter, protocols and states too.
///
/// # Errors
/// [`AttachError`] when no program fits or the kernel takes neither.
pub fn attach(
    f: &Filter,
    order: Endian,
    mut attach: impl FnMut(&[Insn]) -> std::io::Result<()>,
) -> Result<Program, AttachError> {
    let p = compile(f, order).map_err(AttachError::Compile)?;
    let refused = match attach(&p.insns) {
        Ok(()) => return Ok(p),
        Err(e) if p.without_address || f.address.is_none() => {
            return Err(AttachError::Kernel(e));
        }
        Err(e) => e,
    };
    let insns = build(f, order, false);
    match attach(&insns) {
        Ok(()) => Ok(Program {
            insns,
            without_address: true,
        }),
        Err(_) => Err(AttachError::Kernel(refused)),
    }
}

/// Compiles the conntrack part of `f` for headers in `order`. An inactive
/// Filter compiles to a program that keeps everything.
///
/// # Errors
/// [`Error::TooLarge`] when no program fits the kernel's limit.
pub fn compile(f: &Filter, order: Endian) -> Result<Program, Error> {
    let full = build(f, order, true);
    if full.len() <= MAX_INSNS {
        return Ok(Program {
            insns: full,
            without_address: false,
        });
    }
    let lean = build(f, order, false);
    if lean.len() <= MAX_INSNS {
        return Ok(Program {
            insns: lean,
            without_address: f.address.is_some(),
        });
    }
    Err(Error::TooLarge(lean.len()))
}

type Label = usize;

enum Op {
    Insn(Insn),
    /// A conditional jump (`JEQ`, `JGT`, `JGE` with k): true → `jt`,
    /// else → `jf` (labels, both near).
    Jump {
        op: u16,
        k: u32,
        jt: Label,
        jf: Label,
    },
    Ja(Label),
    Mark(Label),
}

struct Asm {
    ops: Vec<Op>,
    labels: usize,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels += 1;
        self.labels - 1
    }
    fn insn(&mut self, code: u16, k: u32) {
        self.ops.push(Op::Insn(Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        }));
    }
    fn mark(&mut self, l: Label) {
        self.ops.push(Op::Mark(l));
    }
    fn ja(&mut self, l: Label) {
        self.ops.push(Op::Ja(l));
    }
    fn jump(&mut self, op: u16, k: u32, jt: Label, jf: Label) {
        self.ops.push(Op::Jump { op, k, jt, jf });
    }
    fn jeq(&mut self, k: u32, jt: Label, jf: Label) {
        self.jump(JEQ, k, jt, jf);
    }
    /// A == k → `far`.
    fn if_eq_goto(&mut self, k: u32, far: Label) {
        let (take, skip) = (self.label(), self.label());
        self.jeq(k, take, skip);
        self.mark(take);
        self.ja(far);
        self.mark(skip);
    }
    /// A != k → `far`.
    fn if_ne_goto(&mut self, k: u32, far: Label) {
        let (take, skip) = (self.label(), self.label());
        self.jeq(k, skip, take);
        self.mark(take);
        self.ja(far);
        self.mark(skip);
    }
    /// A ← offset of attribute `ty` (top level from A, or inside the nest
    /// at A); none → `missing`.
    fn find(&mut self, nested: bool, ty: u32, missing: Label) {
        self.insn(LDX | W | IMM, ty);
        let helper = if nested {
            SKF_AD_NLATTR_NEST
        } else {
            SKF_AD_NLATTR
        };
        self.insn(LD | B | ABS, SKF_AD_OFF + helper);
        self.if_eq_goto(0, missing);
    }
    /// Resolves labels. Near jumps are at most a dozen instructions by
    /// construction; a longer one is a bug of this compiler.
    fn finish(self) -> Vec<Insn> {
        let mut at = vec![0usize; self.labels];
        let mut n = 0;
        for op in &self.ops {
            match op {
                Op::Mark(l) => at[*l] = n,
                _ => n += 1,
            }
        }
        let mut out = Vec::with_capacity(n);
        for op in self.ops {
            let next = out.len() + 1;
            let near = |l: Label| -> u8 {
                u8::try_from(at[l] - next).expect("near jump beyond 255")
            };
            match op {
                Op::Insn(i) => out.push(i),
                Op::Jump { op, k, jt, jf } => out.push(Insn {
                    code: JMP | op | K,
                    jt: near(jt),
                    jf: near(jf),
                    k,
                }),
                Op::Ja(l) => out.push(Insn {
                    code: JMP | JA,
                    jt: 0,
                    jf: 0,
                    k: u32::try_from(at[l] - next).unwrap_or(u32::MAX),
                }),
                Op::Mark(_) => {}
            }
        }
        out
    }
}

fn build(f: &Filter, order: Endian, with_address: bool) -> Vec<Insn> {
    let mut a = Asm {
        ops: Vec::new(),
        labels: 0,
    };
    let keep = a.label();
    let drop = a.label();
    // Only conntrack messages are judged (not expectations).
    // `nlmsg_type` is a host-order u16: subsystem high, message low.
    let (subsys_byte, msg_byte) = match order {
        Endian::Little => (5, 4),
        Endian::Big => (4, 5),
    };
    a.insn(LD | B | ABS, subsys_byte);
    a.if_ne_goto(NFNL_SUBSYS_CTNETLINK, keep);
    if !f.is_active() {
        a.ja(keep);
    }
    a.insn(LD | B | ABS, 16);
    a.insn(ST, M_FAMILY);
    a.insn(LD | W | IMM, ATTRS);
    a.find(false, CTA_TUPLE_ORIG, keep);
    a.insn(ST, M_ORIG);
    if f.protocol.is_some() || f.state.is_some() {
        a.find(true, CTA_TUPLE_PROTO, keep);
        a.find(true, CTA_PROTO_NUM, keep);
        a.insn(MISC | TAX, 0);
        a.insn(LD | B | IND, NLA_HDRLEN);
        a.insn(ST, M_PROTO);
    }
    if let Some(rule) = &f.protocol {
        let items: Vec<u32> =
            rule.items.iter().map(|p| u32::from(*p)).collect();
        set_test(&mut a, &items, rule.logic, drop);
    }
    if let Some(rule) = f.address.as_ref().filter(|_| with_address) {
        address(&mut a, rule.logic, &rule.items, drop);
    }
    if let Some(rule) = &f.state {
        let end = a.label();
        // A DESTROY is never judged by its state (see the module doc).
        a.insn(LD | B | ABS, msg_byte);
        a.if_eq_goto(IPCTNL_MSG_CT_DELETE, end);
        a.insn(LD | MEM, M_PROTO);
        a.if_ne_goto(IPPROTO_TCP, end);
        a.insn(LD | W | IMM, ATTRS);
        a.find(false, CTA_PROTOINFO, end);
        a.find(true, CTA_PROTOINFO_TCP, end);
        a.find(true, CTA_PROTOINFO_TCP_STATE, end);
        a.insn(MISC | TAX, 0);
        a.insn(LD | B | IND, NLA_HDRLEN);
        let items: Vec<u32> = rule.items.iter().map(|s| *s as u32).collect();
        set_test(&mut a, &items, rule.logic, drop);
        a.mark(end);
    }
    a.mark(keep);
    a.insn(RET | K, KEEP);
    a.mark(drop);
    a.insn(RET | K, DROP);
    a.finish()
}

/// A holds a value: drop unless `(A ∈ items) == (logic == Accept)`.
fn set_test(a: &mut Asm, items: &[u32], logic: Logic, drop: Label) {
    let (inside, end) = (a.label(), a.label());
    for k in items {
        a.if_eq_goto(*k, inside);
    }
    a.ja(if logic == Logic::Accept { drop } else { end });
    a.mark(inside);
    if logic == Logic::Ignore {
        a.ja(drop);
    }
    a.mark(end);
}

/// The Address rule: the original source or the reply source inside a
/// prefix of the message's family.
fn address(a: &mut Asm, logic: Logic, items: &[Cidr], drop: Label) {
    let (end, inside, outside) = (a.label(), a.label(), a.label());
    let (v4, v6) = (a.label(), a.label());
    a.insn(LD | MEM, M_FAMILY);
    a.if_eq_goto(AF_INET, v4);
    a.if_eq_goto(AF_INET6, v6);
    a.ja(end);
    for (family, words, src_attr) in
        [(v4, 1u32, CTA_IP_V4_SRC), (v6, 4, CTA_IP_V6_SRC)]
    {
        a.mark(family);
        // Both sources into scratch memory.
        for (slot, tuple) in [(M_SRC, None), (M_RSRC, Some(CTA_TUPLE_REPLY))] {
            match tuple {
                None => a.insn(LD | MEM, M_ORIG),
                Some(t) => {
                    a.insn(LD | W | IMM, ATTRS);
                    a.find(false, t, end);
                }
            }
            a.find(true, CTA_TUPLE_IP, end);
            a.find(true, src_attr, end);
            a.insn(MISC | TAX, 0);
            for w in 0..words {
                a.insn(LD | W | IND, NLA_HDRLEN + 4 * w);
                a.insn(ST, slot + w);
            }
        }
        if words == 1 {
            let ranges = v4_ranges(items);
            for slot in [M_SRC, M_RSRC] {
                a.insn(LD | MEM, slot);
                for (lo, hi) in &ranges {
                    let (maybe, hit, next) = (a.label(), a.label(), a.label());
                    a.jump(JGE, *lo, maybe, next);
                    a.mark(maybe);
                    a.jump(JGT, *hi, next, hit);
                    a.mark(hit);
                    a.ja(inside);
                    a.mark(next);
                }
            }
            a.ja(outside);
            continue;
        }
        for slot in [M_SRC, M_RSRC] {
            for c in items.iter().filter(|c| c.addr.is_ipv6()) {
                let net = words_of(c);
                let bits = u32::from(c.prefix).min(128);
                let next = a.label();
                for w in 0..words {
                    let covered = bits.saturating_sub(32 * w).min(32);
                    if covered == 0 {
                        break;
                    }
                    let mask = u32::MAX << (32 - covered);
                    a.insn(LD | MEM, slot + w);
                    if covered < 32 {
                        a.insn(ALU | AND | K, mask);
                    }
                    let same = a.label();
                    a.jeq(net[w as usize] & mask, same, next);
                    a.mark(same);
                }
                a.ja(inside);
                a.mark(next);
            }
        }
        a.ja(outside);
    }
    a.mark(inside);
    a.ja(if logic == Logic::Accept { end } else { drop });
    a.mark(outside);
    a.ja(if logic == Logic::Accept { drop } else { end });
    a.mark(end);
}

/// The IPv4 prefixes as sorted, merged, inclusive address ranges: one
/// pair of comparisons per range instead of a mask test per prefix.
fn v4_ranges(items: &[Cidr]) -> Vec<(u32, u32)> {
    let mut ranges: Vec<(u32, u32)> = items
        .iter()
        .filter_map(|c| match c.addr {
            std::net::IpAddr::V4(n) => {
                let host = 32 - u32::from(c.prefix.min(32));
                let span = u32::MAX.checked_shr(32 - host).unwrap_or(0);
                let lo = u32::from(n) & !span;
                Some((lo, lo | span))
            }
            std::net::IpAddr::V6(_) => None,
        })
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => {
                last.1 = last.1.max(hi)
            }
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

/// An address as big-endian words (what `LD W` reads).
fn words_of(c: &Cidr) -> [u32; 4] {
    match c.addr {
        std::net::IpAddr::V4(v4) => [u32::from(v4), 0, 0, 0],
        std::net::IpAddr::V6(v6) => {
            let o = v6.octets();
            std::array::from_fn(|i| {
                u32::from_be_bytes([
                    o[4 * i],
                    o[4 * i + 1],
                    o[4 * i + 2],
                    o[4 * i + 3],
                ])
            })
        }
    }
}
