//! System errors in conntrackd's words: `strerror(3)`'s text, which
//! conntrackd's `%s` of an errno prints, without the " (os error N)"
//! Rust's `io::Error` adds to it. Pure; used by every layer that writes
//! such an error into a log line.

/// `e` as conntrackd prints it: for a system error, strerror's text.
pub fn strerror(e: &std::io::Error) -> String {
    let text = e.to_string();
    match (e.raw_os_error(), text.rfind(" (os error ")) {
        (Some(_), Some(at)) => text[..at].to_string(),
        _ => text,
    }
}

/// An errno as conntrackd prints it.
pub fn of_errno(errno: i32) -> String {
    strerror(&std::io::Error::from_raw_os_error(errno))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn system_errors_lose_rusts_suffix_and_others_are_kept() {
        let eexist = rustix::io::Errno::EXIST.raw_os_error();
        assert_eq!(of_errno(eexist), "File exists");
        let other = std::io::Error::other("no answer (os error 5)");
        assert_eq!(strerror(&other), "no answer (os error 5)");
    }
}
