//! Instruction counts of the cache's hot paths, for callgrind: inserts
//! `N` typical NATed TCP conntracks into a `Cache`, then (mode `lookup`)
//! reads each one back by key. Run it twice and subtract:
//!
//! ```text
//! valgrind --tool=callgrind target/release/examples/cache_ops insert 100000
//! valgrind --tool=callgrind target/release/examples/cache_ops lookup 100000
//! ```
//!
//! (insert N − insert 1) / N is instructions per insert; (lookup N −
//! insert N) / N per lookup. Prints the cache's bytes per entry too.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use ctsyncd::cache::Cache;
use ctsyncd::model::{Conntrack, L4, Tuple};
use ctsyncd::time::Instant;
use ctsyncd::wire::ct_key_of;

fn tuple(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Tuple {
    Tuple {
        src,
        dst,
        proto: 6,
        l4: L4::Ports {
            src: sport,
            dst: dport,
        },
    }
}

/// Flow `i`: a client behind NAT to a server on port 80.
fn flow(i: u32) -> Conntrack {
    let client = IpAddr::V4(Ipv4Addr::from(0xc0a8_0000 + (i >> 14)));
    let server = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2));
    let public = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 100));
    let sport = 1024 + (i & 0x3fff) as u16;
    let mut ct = Conntrack::new(tuple(client, server, sport, 80));
    ct.reply = Some(tuple(server, public, 80, sport));
    ct.status = 0x18e;
    ct.timeout = Some(431_999);
    ct
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let n: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let flows: Vec<Conntrack> = (0..n).map(flow).collect();
    let mut c: Cache<Conntrack> = Cache::new(1 << 20);
    for (i, ct) in flows.iter().enumerate() {
        black_box(c.upsert(ct, Instant::from_millis(i as u64), true).is_ok());
    }
    if mode == "lookup" {
        for ct in &flows {
            black_box(c.get(&ct_key_of(ct)));
        }
    }
    println!(
        "{} entries, {} bytes per entry",
        c.len(),
        c.bytes() / c.len().max(1)
    );
}
