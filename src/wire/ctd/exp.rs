//! Expectation payloads (`NTA_EXP_*`, reference §4.5): an [`Expect`] to
//! attributes in conntrackd 1.4.7's emission order, and back.
//!
//! The format has no zone and no id: they decode as 0. Port groups are
//! sent only when the master's protocol has ports, and then for all three
//! tuples (the master's protocol decides, as in conntrackd). The NAT tuple
//! exists for IPv4 only.

use std::net::IpAddr;

use super::Error;
use super::attr::{Size, Writer, be32, name, walk};
use super::ct::{addr_pair, has_ports, port_pair, v6_octets};
use crate::model::{Expect, ExpectFn, ExpectNat, HelperName, L4, Tuple};

const MASTER_IPV4: u16 = 0;
const MASTER_IPV6: u16 = 1;
const MASTER_L4PROTO: u16 = 2;
const MASTER_PORT: u16 = 3;
const EXPECT_IPV4: u16 = 4;
const EXPECT_IPV6: u16 = 5;
const EXPECT_L4PROTO: u16 = 6;
const EXPECT_PORT: u16 = 7;
const MASK_IPV4: u16 = 8;
const MASK_IPV6: u16 = 9;
const MASK_L4PROTO: u16 = 10;
const MASK_PORT: u16 = 11;
const TIMEOUT: u16 = 12;
const FLAGS: u16 = 13;
const CLASS: u16 = 14;
const NAT_IPV4: u16 = 15;
const NAT_PORT: u16 = 16;
const NAT_L4PROTO: u16 = 17;
const NAT_DIR: u16 = 18;
const HELPER_NAME: u16 = 19;
const FN: u16 = 20;

/// Payload sizes by attribute number (NTA_EXP_MAX = 21).
static TABLE: [Size; 21] = {
    use Size::{Fixed, MaxLen};
    [
        Fixed(8),
        Fixed(32),
        Fixed(1),
        Fixed(4),
        Fixed(8),
        Fixed(32),
        Fixed(1),
        Fixed(4),
        Fixed(8),
        Fixed(32),
        Fixed(1),
        Fixed(4),
        Fixed(4),
        Fixed(4),
        Fixed(4),
        Fixed(8),
        Fixed(4),
        Fixed(1),
        Fixed(4),
        MaxLen(16),
        MaxLen(32),
    ]
};

/// Names longer than their attribute limit (16 and 32 bytes with the
/// header and the NUL) are not sent.
const HELPER_MAX_CHARS: usize = 11;
const FN_MAX_CHARS: usize = 27;

/// One tuple's three attributes as received.
#[derive(Default, Clone, Copy)]
struct Group {
    addrs: Option<(IpAddr, IpAddr)>,
    proto: Option<u8>,
    ports: Option<(u16, u16)>,
}

impl Group {
    /// The tuple, with ports when the master's protocol has them.
    fn tuple(self, ports: bool) -> Result<Tuple, Error> {
        let (src, dst) = self.addrs.ok_or(Error::Malformed)?;
        let proto = self.proto.ok_or(Error::Malformed)?;
        let (sp, dp) = self.ports.unwrap_or((0, 0));
        Ok(Tuple {
            src,
            dst,
            proto,
            l4: if ports {
                L4::Ports { src: sp, dst: dp }
            } else {
                L4::None
            },
        })
    }
}

/// Decodes the attributes of an EXP_NEW/UPD/DEL message.
///
/// # Errors
/// [`Error::Malformed`]: an invalid attribute, or a master, expected or
/// mask tuple without its address group or protocol.
pub(super) fn decode(payload: &[u8]) -> Result<Expect, Error> {
    let mut g = [Group::default(); 3];
    let mut nat = Group::default();
    let (mut timeout, mut flags, mut class, mut nat_dir) = (None, 0, 0, 0);
    let mut helper: Option<HelperName> = None;
    let mut func: Option<ExpectFn> = None;
    for a in walk(payload, &TABLE) {
        let (kind, v) = a?;
        match kind {
            MASTER_IPV4 | MASTER_IPV6 => g[0].addrs = Some(addr_pair(v)),
            MASTER_L4PROTO => g[0].proto = Some(v[0]),
            MASTER_PORT => g[0].ports = Some(port_pair(v)),
            EXPECT_IPV4 | EXPECT_IPV6 => g[1].addrs = Some(addr_pair(v)),
            EXPECT_L4PROTO => g[1].proto = Some(v[0]),
            EXPECT_PORT => g[1].ports = Some(port_pair(v)),
            MASK_IPV4 | MASK_IPV6 => g[2].addrs = Some(addr_pair(v)),
            MASK_L4PROTO => g[2].proto = Some(v[0]),
            MASK_PORT => g[2].ports = Some(port_pair(v)),
            TIMEOUT => timeout = Some(be32(v)),
            FLAGS => flags = be32(v),
            CLASS => class = be32(v),
            NAT_IPV4 => nat.addrs = Some(addr_pair(v)),
            NAT_PORT => nat.ports = Some(port_pair(v)),
            NAT_L4PROTO => nat.proto = Some(v[0]),
            NAT_DIR => nat_dir = be32(v),
            HELPER_NAME => helper = name(v)?,
            FN => func = name(v)?,
            _ => {}
        }
    }
    let ports = g[0].proto.is_some_and(has_ports);
    let mut x =
        Expect::new(g[0].tuple(ports)?, g[1].tuple(ports)?, g[2].tuple(ports)?);
    x.timeout = timeout;
    x.flags = flags;
    x.class = class;
    x.helper = helper;
    x.func = func;
    if let Some((src, dst)) = nat.addrs {
        x.nat = Some(ExpectNat {
            dir: nat_dir,
            tuple: Tuple {
                src,
                dst,
                proto: nat.proto.unwrap_or(0),
                l4: match nat.ports {
                    Some((sp, dp)) => L4::Ports { src: sp, dst: dp },
                    None => L4::None,
                },
            },
        });
    }
    Ok(x)
}

/// The attribute numbers of one tuple: IPv4, IPv6, protocol, ports.
type GroupKinds = [u16; 4];
const MASTER: GroupKinds =
    [MASTER_IPV4, MASTER_IPV6, MASTER_L4PROTO, MASTER_PORT];
const EXPECT: GroupKinds =
    [EXPECT_IPV4, EXPECT_IPV6, EXPECT_L4PROTO, EXPECT_PORT];
const MASK: GroupKinds = [MASK_IPV4, MASK_IPV6, MASK_L4PROTO, MASK_PORT];

fn group(w: &mut Writer<'_>, kinds: GroupKinds, t: &Tuple, ports: bool) {
    let [v4, v6, proto, port] = kinds;
    match (t.src, t.dst) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            w.put(v4, &[&a.octets(), &b.octets()])
        }
        _ => w.put(v6, &[&v6_octets(t.src), &v6_octets(t.dst)]),
    }
    w.u8(proto, t.proto);
    if ports {
        let (sp, dp) = match t.l4 {
            L4::Ports { src, dst } => (src, dst),
            _ => (0, 0),
        };
        w.put(port, &[&sp.to_be_bytes(), &dp.to_be_bytes()]);
    }
}

/// Writes the attributes of `x` in conntrackd's order (§4.5); `del`: for
/// an EXP_DEL.
pub(super) fn encode(
    x: &Expect,
    send_timeout: bool,
    del: bool,
    w: &mut Writer<'_>,
) {
    let ports = has_ports(x.master.proto);
    group(w, MASTER, &x.master, ports);
    group(w, EXPECT, &x.tuple, ports);
    group(w, MASK, &x.mask, ports);
    if let (true, Some(t)) = (send_timeout, x.timeout) {
        w.be32(TIMEOUT, t);
    }
    // conntrackd finds the entry a DEL names by comparing every attribute
    // both carry, flags and class included (libnetfilter_conntrack's
    // nfexp_cmp); an absent one is not compared. A DEL built from the key
    // (the entry is gone from our cache: no helper, no timeout) knows
    // neither, and its 0s missed every entry whose flags or class are not
    // 0 (a SIP registration's, an RTP expectation's): they stayed in the
    // peer's external cache and were committed at its failover. conntrackd's
    // own DELs carry their helper and timeout, and still both.
    let from_key = del && x.helper.is_none() && x.timeout.is_none();
    if !(from_key && x.flags == 0) {
        w.be32(FLAGS, x.flags);
    }
    // The kernel always reports the class, so conntrackd always sends it.
    if !(from_key && x.class == 0) {
        w.be32(CLASS, x.class);
    }
    if let Some(nat) = x.nat
        && let (IpAddr::V4(a), IpAddr::V4(b)) = (nat.tuple.src, nat.tuple.dst)
    {
        w.put(NAT_IPV4, &[&a.octets(), &b.octets()]);
        w.u8(NAT_L4PROTO, nat.tuple.proto);
        if let L4::Ports { src, dst } = nat.tuple.l4 {
            w.put(NAT_PORT, &[&src.to_be_bytes(), &dst.to_be_bytes()]);
        }
        w.be32(NAT_DIR, nat.dir);
    }
    if let Some(h) = x.helper.as_ref().filter(|h| {
        !h.is_empty() && h.len() <= HELPER_MAX_CHARS && !h.contains('\0')
    }) {
        w.put(HELPER_NAME, &[h.as_bytes(), &[0]]);
    }
    if let Some(f) = x.func.as_ref().filter(|f| {
        !f.is_empty() && f.len() <= FN_MAX_CHARS && !f.contains('\0')
    }) {
        w.put(FN, &[f.as_bytes(), &[0]]);
    }
}
