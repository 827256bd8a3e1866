//! Unit tests that need a kernel of their own: a network namespace made
//! for one test and removed after it, entered by a thread that runs the
//! test's kernel work there (the test's own thread stays where it was).

use std::os::fd::AsFd;

/// A network namespace for one test, removed when dropped.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// Runs `work` on a thread inside a new network namespace named after
/// `tag` and returns what it returned (a panic in it is the test's).
/// None, after saying so, when not root: CI runs these as root.
pub(crate) fn in_new_netns<T: Send + 'static>(
    tag: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: kernel tests need root (CI runs them as root)");
        return None;
    }
    let ns = Netns(format!("ctsyncd-u{}-{tag}", std::process::id()));
    let added = std::process::Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap();
    assert!(added.success(), "ip netns add {}", ns.0);
    let path = format!("/var/run/netns/{}", ns.0);
    let result = std::thread::spawn(move || {
        let fd = std::fs::File::open(path).unwrap();
        rustix::thread::move_into_link_name_space(
            fd.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        work()
    })
    .join();
    match result {
        Ok(v) => Some(v),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
