//! Clauses that may be given more than once, resolved in the order
//! conntrackd 1.4.7 resolves them (each case was run through conntrackd
//! in a network namespace; what it did is in the case's comment).

use ctsyncd::config::{self, Parsed, SchedPolicy};

fn parse(text: &str) -> Parsed {
    config::parse(text, "o.conf").unwrap_or_else(|e| panic!("{e}"))
}

fn warnings(p: &Parsed) -> Vec<String> {
    p.warnings.iter().map(ToString::to_string).collect()
}

/// Two links marked `Default`: conntrackd's multichannel takes every
/// `Default` link in turn as its current one, so the last one sends
/// (`-s link` in a namespace with veth links sync1 and sync2: sync1
/// `role=BACKUP`, sync2 `role=ACTIVE`, its 2 packets sent).
#[test]
fn of_several_default_links_the_last_one_is_used() {
    let link = |n: u8, default: &str| {
        format!(
            "\tUDP {default}{{ IPv4_address 10.9.{n}.1 \
             IPv4_Destination_Address 10.9.{n}.2 Port 3780 \
             Interface sync{n} }}\n"
        )
    };
    let text = format!(
        "General {{ UNIX {{ Path /run/o.ctl }} }}\nSync {{\n\tMode FTFW {{ }}\n{}{}{}}}\n",
        link(1, "Default "),
        link(2, "Default "),
        link(3, ""),
    );
    let p = parse(&text);
    let sync = p.config.sync.as_ref().unwrap();
    let marked: Vec<bool> = sync.channels.iter().map(|c| c.default).collect();
    assert_eq!(marked, [false, true, false]);
    assert_eq!(sync.default_channel(), 1);
    assert_eq!(sync.channels[1].interface.as_str(), "sync2");
    assert_eq!(
        warnings(&p),
        [
            "o.conf:5:2: several links are marked `Default' (the first at \
             4:2); the last one is used, as by conntrackd"
        ]
    );

    // One Default link: it is used wherever it stands, without a word.
    let text = format!(
        "General {{ UNIX {{ Path /run/o.ctl }} }}\nSync {{\n\tMode FTFW {{ }}\n{}{}}}\n",
        link(1, ""),
        link(2, "Default "),
    );
    let p = parse(&text);
    assert_eq!(p.config.sync.as_ref().unwrap().default_channel(), 1);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

/// Several `Filter` blocks: their clauses add up, and the last block says
/// where events are filtered, `From` or not. conntrackd sets its
/// kernel-space switch in every Filter block, off without `From
/// Kernelspace` (with `Filter From Kernelspace { Protocol Accept { TCP }
/// }` then `Filter { }`, it logged `using user-space event filtering`).
#[test]
fn the_last_filter_block_says_where_events_are_filtered() {
    let kernel = |blocks: &str| {
        let text =
            format!("General {{\n\tUNIX {{ Path /run/o.ctl }}\n{blocks}}}\n");
        let f = parse(&text).config.general.filter;
        assert_eq!(f.protocol.map(|r| r.items), Some(vec![6]), "{blocks}");
        f.from_kernelspace
    };
    let k = "\tFilter From Kernelspace { Protocol Accept { TCP } }\n";
    assert!(!kernel(&format!("{k}\tFilter {{ }}\n")));
    assert!(!kernel(&format!("{k}\tFilter From Userspace {{ }}\n")));
    assert!(kernel(&format!("\tFilter {{ }}\n{k}")));
    assert!(kernel(k));
}

/// Two `Scheduler` blocks: each sets what it names, the other value stays
/// (conntrackd with `Scheduler { Type FIFO }` then `Scheduler { Priority
/// 10 }` ran as SCHED_FIFO 10, by `chrt -p`).
#[test]
fn a_second_scheduler_block_keeps_what_it_does_not_name() {
    let sched = |blocks: &str| {
        let text =
            format!("General {{\n\tUNIX {{ Path /run/o.ctl }}\n{blocks}}}\n");
        let s = parse(&text).config.general.scheduler.unwrap();
        (s.policy, s.priority)
    };
    assert_eq!(
        sched("\tScheduler { Type FIFO }\n\tScheduler { Priority 10 }\n"),
        (SchedPolicy::Fifo, 10)
    );
    assert_eq!(
        sched("\tScheduler { Priority 10 }\n\tScheduler { Type FIFO }\n"),
        (SchedPolicy::Fifo, 10)
    );
    assert_eq!(
        sched("\tScheduler { Type FIFO Priority 5 }\n\tScheduler { }\n"),
        (SchedPolicy::Fifo, 5)
    );
    // Alone, a block still takes RR and 99 for what it leaves out.
    assert_eq!(
        sched("\tScheduler { Type FIFO }\n"),
        (SchedPolicy::Fifo, 99)
    );
    assert_eq!(sched("\tScheduler { }\n"), (SchedPolicy::Rr, 99));
}

/// Several `Mode` blocks: the cache switches of a block whose mode is not
/// the one used (conntrackd's precedence FTFW, ALARM, NOTRACK) are
/// refused where the mode cannot honour them, at the clause that set
/// them, not at the start of the Sync section.
#[test]
fn a_cache_switch_the_chosen_mode_refuses_is_reported_at_its_clause() {
    let link =
        "\tUDP { IPv4_Destination_Address 10.0.0.2 Port 1 Interface s0 }";
    let err = |modes: &str| {
        let text = format!(
            "General {{ UNIX {{ Path /run/o.ctl }} }}\nSync {{\n{link}\n{modes}}}\n"
        );
        config::parse(&text, "m.conf").unwrap_err().to_string()
    };
    assert_eq!(
        err(
            "\tMode NOTRACK {\n\t\tDisableInternalCache on\n\t}\n\tMode FTFW { }\n"
        ),
        "m.conf:5:3: `DisableInternalCache' is only supported in NOTRACK \
         mode, not FTFW"
    );
    assert_eq!(
        err("\tMode ALARM { }\n\tMode NOTRACK { DisableExternalCache Yes }\n"),
        "m.conf:5:17: `DisableExternalCache' is not supported in ALARM mode"
    );
}
