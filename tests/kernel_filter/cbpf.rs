//! A classic BPF interpreter for the tests: the instructions the kernel
//! runs on a netlink socket's messages, with its netlink ancillary loads
//! (`SKF_AD_NLATTR`, `SKF_AD_NLATTR_NEST`) as net/core/filter.c defines
//! them. Like the kernel, a load outside the packet ends the program
//! with 0 (drop). Native byte order for netlink headers.

use ctsyncd::filter::bpf::{
    ALU, AND, Insn, JMP, LD, LDX, MISC, RET, SKF_AD_NLATTR, SKF_AD_NLATTR_NEST,
    SKF_AD_OFF, ST,
};

const NLA_TYPE_MASK: u16 = 0x3fff;

fn nla_u16(p: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([p[at], p[at + 1]])
}

/// The kernel's `nla_find` over `p[from..from + len]`: the offset of the
/// first attribute of type `ty`, or 0.
fn nla_find(p: &[u8], from: usize, len: usize, ty: u32) -> u32 {
    let (mut at, mut rem) = (from, len);
    while rem >= 4 {
        let l = usize::from(nla_u16(p, at));
        if l < 4 || l > rem {
            break;
        }
        if u32::from(nla_u16(p, at + 2) & NLA_TYPE_MASK) == ty {
            return at as u32;
        }
        let step = (l + 3) & !3;
        if step >= rem {
            break;
        }
        at += step;
        rem -= step;
    }
    0
}

fn ancillary(p: &[u8], which: u32, a: u32, x: u32) -> Option<u32> {
    let (a, len) = (a as usize, p.len());
    if len < 4 || a > len - 4 {
        return Some(0);
    }
    match which {
        SKF_AD_NLATTR => Some(nla_find(p, a, len - a, x)),
        SKF_AD_NLATTR_NEST => {
            let l = usize::from(nla_u16(p, a));
            if l > len - a || l < 4 {
                return Some(0);
            }
            Some(nla_find(p, a + 4, l - 4, x))
        }
        _ => None,
    }
}

fn load(p: &[u8], at: u32, size: u16) -> Option<u32> {
    let at = at as usize;
    let n = match size {
        0x00 => 4,
        0x08 => 2,
        _ => 1,
    };
    let b = p.get(at..at.checked_add(n)?)?;
    Some(b.iter().fold(0u32, |v, x| v << 8 | u32::from(*x)))
}

/// Runs `prog` on `packet`: the kernel's return value (bytes to keep).
/// Panics on an instruction this compiler never emits or a jump out of
/// the program (the kernel's checker would refuse both).
pub fn run(prog: &[Insn], packet: &[u8]) -> u32 {
    let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        pc += 1;
        let class = i.code & 0x07;
        let size = i.code & 0x18;
        let mode = i.code & 0xe0;
        match class {
            LD => match mode {
                0x00 => a = i.k,
                0x20 if i.k >= SKF_AD_OFF => {
                    a = ancillary(packet, i.k - SKF_AD_OFF, a, x)
                        .expect("unknown ancillary load")
                }
                0x20 => match load(packet, i.k, size) {
                    Some(v) => a = v,
                    None => return 0,
                },
                0x40 => match load(packet, x.wrapping_add(i.k), size) {
                    Some(v) => a = v,
                    None => return 0,
                },
                0x60 => a = mem[i.k as usize],
                0x80 => a = packet.len() as u32,
                m => panic!("LD mode {m:#x}"),
            },
            LDX => match mode {
                0x00 => x = i.k,
                0x60 => x = mem[i.k as usize],
                m => panic!("LDX mode {m:#x}"),
            },
            ST => mem[i.k as usize] = a,
            ALU => match i.code & 0xf0 {
                AND => a &= if i.code & 0x08 == 0 { i.k } else { x },
                op => panic!("ALU op {op:#x}"),
            },
            JMP => {
                let op = i.code & 0xf0;
                if op == 0 {
                    pc += i.k as usize;
                } else {
                    let b = if i.code & 0x08 == 0 { i.k } else { x };
                    let hit = match op {
                        0x10 => a == b,
                        0x20 => a > b,
                        0x30 => a >= b,
                        0x40 => a & b != 0,
                        _ => panic!("JMP op {op:#x}"),
                    };
                    pc += usize::from(if hit { i.jt } else { i.jf });
                }
                assert!(pc < prog.len(), "jump out of the program");
            }
            RET => return if i.code & 0x18 == 0x10 { a } else { i.k },
            MISC => {
                if i.code & 0xf8 == 0 {
                    x = a
                } else {
                    a = x
                }
            }
            c => panic!("class {c:#x}"),
        }
    }
}
