//! Random traffic through one firewall's kernel: flows are opened,
//! established, refreshed and closed; FTP sessions announce PASV
//! expectations, which data connections consume or which time out. Every
//! choice comes from the world's generator.

use ctsyncd::model::{Conntrack, Expect};
use ctsyncd::wire::ct_key_of;

use super::World;
use super::flows::{established, flow, ftp_data, ftp_master, pasv};

/// What the traffic has made so far (and is alive in the kernel).
#[derive(Default)]
pub struct Traffic {
    next_flow: u32,
    next_ftp: u16,
    next_port: u16,
    flows: Vec<Conntrack>,
    /// FTP masters with their live expectations.
    ftp: Vec<(Conntrack, Vec<Expect>)>,
    pub changes: u64,
}

impl Traffic {
    /// Starts numbering at `base` (so two firewalls' flows differ).
    pub fn new(base: u32) -> Traffic {
        Traffic {
            next_flow: base,
            next_ftp: (base / 16) as u16,
            next_port: 50_000,
            ..Traffic::default()
        }
    }

    /// One random change in fw `i`'s kernel.
    pub fn step(&mut self, w: &mut World, i: usize) {
        self.changes += 1;
        let roll = w.rng.below(100);
        match roll {
            0..40 => {
                let c = flow(self.next_flow);
                self.next_flow += 1;
                if w.new_flow(i, &c) {
                    self.flows.push(c);
                }
            }
            40..65 if !self.flows.is_empty() => {
                let n = w.rng.below(self.flows.len() as u64) as usize;
                let mut c = established(self.flows[n].clone());
                c.timeout =
                    Some(c.timeout.unwrap_or(0) - w.rng.below(100) as u32);
                self.flows[n] = c.clone();
                assert!(w.update_flow(i, &c));
            }
            65..85 if !self.flows.is_empty() => {
                let n = w.rng.below(self.flows.len() as u64) as usize;
                let c = self.flows.swap_remove(n);
                assert!(w.end_flow(i, &ct_key_of(&c)));
            }
            85..90 => {
                let m = ftp_master(self.next_ftp);
                self.next_ftp = self.next_ftp.wrapping_add(1);
                if w.new_flow(i, &m) {
                    let x = pasv(&m, self.port());
                    assert!(w.expect(i, &x));
                    self.ftp.push((m, vec![x]));
                }
            }
            90..93 if !self.ftp.is_empty() => {
                // Another PASV on a live control connection.
                let n = w.rng.below(self.ftp.len() as u64) as usize;
                let port = self.port();
                let x = pasv(&self.ftp[n].0, port);
                if w.expect(i, &x) {
                    self.ftp[n].1.push(x);
                }
            }
            93..96 if self.ftp.iter().any(|(_, xs)| !xs.is_empty()) => {
                // A data connection: RELATED to the master.
                let (_, xs) =
                    self.ftp.iter_mut().find(|(_, xs)| !xs.is_empty()).unwrap();
                let x = xs.remove(0);
                let sport = 30_000 + (self.changes % 30_000) as u16;
                let data = ftp_data(&x, sport);
                if w.consume(i, &x, &data) {
                    self.flows.push(data);
                }
            }
            96..98 if !self.ftp.is_empty() => {
                // The control connection ends; its expectations go too.
                let n = w.rng.below(self.ftp.len() as u64) as usize;
                let (m, _) = self.ftp.swap_remove(n);
                assert!(w.end_flow(i, &ct_key_of(&m)));
            }
            98.. if self.ftp.iter().any(|(_, xs)| !xs.is_empty()) => {
                // An expectation times out.
                let (_, xs) =
                    self.ftp.iter_mut().find(|(_, xs)| !xs.is_empty()).unwrap();
                let x = xs.remove(0);
                let mut ev = Vec::new();
                let k = ctsyncd::wire::exp_key_of(&x);
                let origin = ctsyncd::kernel::origin::Origin::NotMe;
                assert!(
                    w.fws[i].kernel.delete_exp(&k, origin, &mut ev).is_ok()
                );
                w.emit(i, ev);
            }
            _ => {}
        }
    }

    fn port(&mut self) -> u16 {
        self.next_port = self.next_port.wrapping_add(1).max(50_000);
        self.next_port
    }
}
