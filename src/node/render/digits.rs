//! Numbers and addresses written straight into a text buffer, for the
//! `-i`/`-e` dumps: a 200 000-entry dump writes a million of them, and
//! `std::fmt`'s machinery (a formatter per `write!`, a padded display of
//! an address through an intermediate buffer) was most of its cost.
//!
//! Owns: the exact text of what it writes, which is conntrackd's
//! (printf and glibc's inet_ntop): decimal without padding, IPv4 dotted
//! quads, IPv6 as `Display` writes it (its zero compression is the one
//! rule worth not copying) but for the IPv4-compatible addresses
//! ([`Ntop`]). Pure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn digit(d: u64) -> char {
    // d < 10 by every caller's arithmetic.
    char::from(b'0' + (d % 10) as u8)
}

/// Appends `n` in decimal. (Digits are pushed one by one: for numbers
/// this short that is cheaper than copying a buffer.)
pub fn push_u64(out: &mut String, n: u64) {
    if n < 10 {
        out.push(digit(n));
        return;
    }
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    while n > 0 {
        i -= 1;
        buf[i] = (n % 10) as u8;
        n /= 10;
    }
    for &d in &buf[i..] {
        out.push(digit(u64::from(d)));
    }
}

fn push_u8(out: &mut String, n: u8) {
    let n = u64::from(n);
    if n >= 100 {
        out.push(digit(n / 100));
    }
    if n >= 10 {
        out.push(digit(n / 10 % 10));
    }
    out.push(digit(n % 10));
}

fn push_v4(out: &mut String, a: &Ipv4Addr) {
    let [a, b, c, d] = a.octets();
    push_u8(out, a);
    out.push('.');
    push_u8(out, b);
    out.push('.');
    push_u8(out, c);
    out.push('.');
    push_u8(out, d);
}

/// The IPv4 address an IPv4-compatible IPv6 address (`::a.b.c.d`, the
/// first 96 bits 0 and the next 16 not) ends with: glibc's inet_ntop,
/// which conntrackd prints addresses with, writes it dotted after `::`
/// where `Display` writes hex (`::102:304`).
fn v4_compatible(a: &Ipv6Addr) -> Option<Ipv4Addr> {
    let o = a.octets();
    (o[..12] == [0; 12] && (o[12], o[13]) != (0, 0))
        .then(|| Ipv4Addr::new(o[12], o[13], o[14], o[15]))
}

/// Appends an address as conntrackd (inet_ntop) writes it.
pub fn push_ip(out: &mut String, ip: &IpAddr) {
    match ip {
        IpAddr::V4(a) => push_v4(out, a),
        IpAddr::V6(_) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{}", Ntop(*ip));
        }
    }
}

/// An address written as conntrackd (inet_ntop) writes it: as `Display`
/// does, but for the IPv4-compatible IPv6 addresses (see
/// [`v4_compatible`]).
pub struct Ntop(pub IpAddr);

impl std::fmt::Display for Ntop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => match v4_compatible(a) {
                Some(v4) => write!(f, "::{v4}"),
                None => write!(f, "{a}"),
            },
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn numbers_are_written_as_display_writes_them() {
        let cases = [0, 1, 9, 10, 99, 100, 101, 255, 65_535, 4_294_967_295];
        for n in cases.into_iter().chain([u64::MAX, 1_000_000_007]) {
            let mut s = String::from("x=");
            push_u64(&mut s, n);
            assert_eq!(s, format!("x={n}"));
        }
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for a in [
            "0.0.0.0",
            "10.0.0.1",
            "192.168.100.254",
            "255.255.255.255",
            "1.20.100.9",
            "100.101.110.199",
            "9.10.99.200",
            "::",
            "::1",
            "fd72:1::1",
            "::ffff:10.1.2.3",
            "2001:db8:0:0:1:0:0:1",
        ] {
            let ip: IpAddr = a.parse().unwrap();
            let mut s = String::new();
            push_ip(&mut s, &ip);
            assert_eq!(s, ip.to_string());
        }
    }

    /// glibc's inet_ntop (conntrackd's) writes an IPv4-compatible IPv6
    /// address's last 32 bits dotted; `Display` does not.
    #[test]
    fn ipv4_compatible_addresses_are_written_as_inet_ntop_writes_them() {
        for (a, want) in [
            ("::102:304", "::1.2.3.4"),
            ("::a00:1", "::10.0.0.1"),
            ("::1:0", "::0.1.0.0"),
            ("::ffff", "::ffff"),
            ("::1", "::1"),
            ("1::102:304", "1::102:304"),
        ] {
            let ip: IpAddr = a.parse().unwrap();
            let mut s = String::new();
            push_ip(&mut s, &ip);
            assert_eq!(s, want, "{a}");
            assert_eq!(Ntop(ip).to_string(), want, "{a}");
        }
    }
}
