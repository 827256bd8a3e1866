//! FTP control connections and their passive data channels, built as a
//! commit prepares them for the kernel: what the kernel and zone tests
//! create directly through ctnetlink.

#![allow(dead_code)]

use ctsyncd::kernel::commit::{self, CommitRules};
use ctsyncd::model::{Conntrack, Expect, L4, ProtoInfo, Tuple, status};

/// A TCP tuple from `src`:`sp` to `dst`:`dp`.
pub fn tcp(src: &str, dst: &str, sp: u16, dp: u16) -> Tuple {
    Tuple {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        proto: 6,
        l4: L4::Ports { src: sp, dst: dp },
    }
}

/// An established FTP control connection from port `sport` in `zone`,
/// prepared; without the helper when `helper` is false.
pub fn ftp_control(sport: u16, helper: bool, zone: u16) -> Conntrack {
    let mut ct = Conntrack::new(tcp("192.168.0.2", "192.168.1.2", sport, 21));
    ct.zone = zone;
    ct.status = status::SEEN_REPLY | status::ASSURED;
    ct.timeout = Some(600);
    ct.helper = helper.then(|| "ftp".try_into().unwrap());
    ct.proto_info = ProtoInfo::Tcp {
        state: 3,
        wscale_orig: 7,
        wscale_reply: 7,
        flags_orig: 0,
        flags_reply: 0,
    };
    commit::prepare_ct(&ct, 0, &CommitRules::default())
}

/// The passive data channel `master` announced on `port`, prepared, in
/// the master's zone (where the kernel looks for the master).
pub fn data_channel(master: &Conntrack, port: u16) -> Expect {
    let mut x = Expect::new(
        master.orig,
        tcp("192.168.0.2", "192.168.1.2", 0, port),
        Tuple {
            src: "255.255.255.255".parse().unwrap(),
            dst: "255.255.255.255".parse().unwrap(),
            proto: 6,
            l4: L4::Ports {
                src: 0,
                dst: 0xffff,
            },
        },
    );
    x.zone = master.zone;
    x.timeout = Some(300);
    x.helper = Some("ftp".try_into().unwrap());
    commit::prepare_exp(&x, 0, &CommitRules::default())
}
