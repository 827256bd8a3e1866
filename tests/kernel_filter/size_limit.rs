//! A program the kernel refuses for its size: the instruction limit is
//! not the only one. A socket filter is charged, once translated to eBPF,
//! against `net.core.optmem_max`, 20 480 bytes before Linux 6.9 (a
//! program of about 2 400 classic instructions, 390 IPv4 ranges, on Linux
//! 6.18): a program within [`bpf::MAX_INSNS`] can still be refused
//! (ENOMEM).

use super::*;

/// 600 separate /24s ignored (3 instructions each per source, 3 700 in
/// all) and UDP ignored.
fn many_prefixes() -> Filter {
    Filter {
        from_kernelspace: true,
        address: address(Logic::Ignore, six_hundred_24s()),
        protocol: Some(Rule {
            logic: Logic::Ignore,
            items: vec![17],
        }),
        ..Filter::default()
    }
}

#[test]
fn a_program_too_large_for_the_socket_memory_limit_still_filters() {
    let Some(ns) = common::Netns::new("bpfmem") else {
        return;
    };
    // The default of older kernels, set in this namespace only (a
    // per-namespace setting since Linux 6.8; before, the namespace has no
    // such file and the test cannot run).
    let set =
        ns.sh("sysctl -qw net.core.optmem_max=20480 2>/dev/null || echo no");
    if set.trim() == "no" {
        eprintln!("SKIPPED: net.core.optmem_max is not per namespace here");
        return;
    }
    let f = many_prefixes();
    let (attached, filtered, all) = ns.enter(|| {
        let (mut filtered, _) = CtSocket::events(false, 1 << 20).unwrap();
        let attached = bpf::attach(&f, bpf::Endian::host(), |insns| {
            filtered.attach_filter(insns)
        });
        let (mut all, _) = CtSocket::events(false, 1 << 20).unwrap();
        let mut s = CtSocket::open().unwrap();
        let rules = CommitRules::default();
        // Ten UDP flows (the protocol is ignored) and a TCP one from a
        // prefix the Address rule ignores.
        let mut flows: Vec<Conntrack> = (0..10u16)
            .map(|i| udp_flow(IpAddr::from([10, 2, 0, i as u8]), 1024 + i))
            .collect();
        flows.push(commit::prepare_ct(
            &tcp_flow(TcpState::Established),
            0,
            &rules,
        ));
        let acks = s.create_cts(&flows).unwrap();
        assert!(acks.iter().all(|e| *e == 0), "creates: {acks:?}");
        let acks = s
            .batch(|buf, seq| {
                for ct in &flows {
                    codec::encode_ct_delete(buf, &ct.orig, 0, seq());
                }
            })
            .unwrap();
        assert!(acks.iter().all(|e| *e == 0), "deletes: {acks:?}");
        (attached, drain(&mut filtered), drain(&mut all))
    });
    let p = attached.expect("a program attached");
    assert!(p.without_address, "the Address rule left to user space");
    assert_eq!(all[1], [1, 1], "the TCP flow's NEW and DESTROY happened");
    assert_eq!(all[2], [10, 10], "the UDP flows' too");
    assert_eq!(filtered[2], [0, 0], "the protocol is still filtered");
    assert_eq!(filtered[1], [1, 1], "the address is left to user space");
}
