//! The parser's paths (`LockFile`, `LogFile`, `UNIX { Path }`, Stats'
//! `LogFile`) against a file that is not all UTF-8.

/// A path with a byte that is not UTF-8 (read as U+FFFD, as the
/// daemon reads the file) is refused where it stands: taken, it named
/// another file than conntrackd opens (`/tmp/l\xe9g` became
/// `/tmp/l\xef\xbf\xbdg`, observed), a log or lock file or control
/// socket nobody else looks for.
#[test]
fn a_path_with_a_byte_that_is_not_utf8_is_refused() {
    let file = |path: &[u8]| {
        let mut text = b"General {\n\tLockFile /run/l.lock\n\t".to_vec();
        text.extend_from_slice(path);
        text.extend_from_slice(b"\n\tUNIX { Path /run/s.ctl }\n}\n");
        String::from_utf8_lossy(&text).into_owned()
    };
    for (clause, col) in [
        (&b"LogFile /var/log/caf\xe9.log"[..], 10),
        (b"LockFile /run/\xff.lock", 11),
        (b"Syslog on LogFile /x\xe9", 20),
    ] {
        let e = crate::config::parse(&file(clause), "n.conf")
            .err()
            .map(|e| e.to_string());
        let e = e.unwrap_or_else(|| {
            panic!("{} accepted", String::from_utf8_lossy(clause))
        });
        assert!(e.starts_with(&format!("n.conf:3:{col}: found `/")), "{e}");
        assert!(e.contains("not UTF-8"), "{e}");
    }
    for (text, at) in [
        (
            &b"General { UNIX { Path /run/\xe9.ctl } }\n"[..],
            "n.conf:1:23: ",
        ),
        (
            b"General { UNIX { Path /run/s.ctl } }\nStats { LogFile /l\xe9 }\n",
            "n.conf:2:17: ",
        ),
    ] {
        let text = String::from_utf8_lossy(text);
        let e = crate::config::parse(&text, "n.conf")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(at), "{e}");
    }
    // In a comment such a byte is nothing.
    let p = crate::config::parse(&file(b"# caf\xe9"), "n.conf").unwrap();
    assert_eq!(p.config.general.lock_file.to_str(), Some("/run/l.lock"));
}
