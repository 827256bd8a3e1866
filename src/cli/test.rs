use super::*;

fn run(args: &[&str]) -> Result<RunMode, CliError> {
    match parse(args)?.invocation {
        Invocation::Run { mode, .. } => Ok(mode),
        other => panic!("unexpected {other:?}"),
    }
}

fn client(args: &[&str]) -> Request {
    match run(args) {
        Ok(RunMode::Client(r)) => r,
        other => panic!("{args:?} gave {other:?}"),
    }
}

fn dump(cache: Cache, table: Table, format: Format) -> Request {
    Request::Dump {
        cache,
        table,
        format,
    }
}

#[test]
fn no_command_runs_in_foreground_with_default_config() {
    assert_eq!(
        parse::<&str>(&[]).unwrap().invocation,
        Invocation::Run {
            config: PathBuf::from(CTSYNCD.config_path),
            mode: RunMode::Foreground
        }
    );
    assert_eq!(run(&["-d"]), Ok(RunMode::Daemon));
}

#[test]
fn config_path() {
    let p = parse(&["-C", "/tmp/x.conf", "-d"]).unwrap();
    assert_eq!(
        p.invocation,
        Invocation::Run {
            config: PathBuf::from("/tmp/x.conf"),
            mode: RunMode::Daemon
        }
    );
    assert_eq!(
        parse(&["-C"]),
        Err(CliError::new("Missing config filename"))
    );
    assert_eq!(
        parse(&["-C", "-d"]),
        Err(CliError::new("Missing config filename"))
    );
}

#[test]
fn commit_flush_resync_targets() {
    assert_eq!(client(&["-c"]), Request::Commit(Target::All));
    assert_eq!(client(&["-c", "ct"]), Request::Commit(Target::Ct));
    assert_eq!(client(&["-c", "c"]), Request::Commit(Target::Ct));
    assert_eq!(client(&["-c", "exp"]), Request::Commit(Target::Expect));
    assert_eq!(client(&["-c", "e"]), Request::Commit(Target::Expect));
    assert_eq!(client(&["-F"]), Request::FlushKernel(Target::All));
    assert_eq!(
        client(&["-F", "expect"]),
        Request::FlushKernel(Target::Expect)
    );
    assert_eq!(client(&["-R", "ct"]), Request::ResyncKernel(Target::Ct));
    assert_eq!(client(&["-R"]), Request::ResyncKernel(Target::All));
}

#[test]
fn dumps_and_xml_order() {
    use Cache::*;
    use Format::*;
    assert_eq!(client(&["-i"]), dump(Internal, Table::Ct, Plain));
    assert_eq!(client(&["-i", "exp"]), dump(Internal, Table::Expect, Plain));
    assert_eq!(client(&["-e", "ct"]), dump(External, Table::Ct, Plain));
    assert_eq!(client(&["-e", "-x"]), dump(External, Table::Ct, Xml));
    assert_eq!(
        client(&["-i", "expect", "-x"]),
        dump(Internal, Table::Expect, Xml)
    );
    assert_eq!(client(&["-i", "--json"]), dump(Internal, Table::Ct, Json));
    // -x must follow -i/-e.
    assert_eq!(run(&["-x", "-i"]), Err(CliError::new("Invalid parameters")));
    assert_eq!(run(&["-x"]), Err(CliError::new("Invalid parameters")));
    assert_eq!(run(&["-s", "-x"]), Err(CliError::new("Invalid parameters")));
    assert!(run(&["-i", "-x", "--json"]).is_err());
    assert_eq!(
        run(&["-i", "-x", "-x"]),
        Err(CliError::new("Invalid parameters"))
    );
    assert_eq!(
        client(&["-e", "-x", "-i"]),
        dump(Internal, Table::Ct, Plain)
    );
}

#[test]
fn flush_cache_selection() {
    assert_eq!(client(&["-f"]), Request::FlushCache(CacheSel::All));
    assert_eq!(
        client(&["-f", "internal"]),
        Request::FlushCache(CacheSel::Internal)
    );
    assert_eq!(
        client(&["-f", "ext"]),
        Request::FlushCache(CacheSel::External)
    );
    assert_eq!(
        run(&["-f", "bogus"]),
        Err(CliError::bare("unknown parameter `bogus' for option `-f'"))
    );
}

#[test]
fn stats_views_by_prefix_in_conntrackd_order() {
    let view = |w: &str| match client(&["-s", w]) {
        Request::Stats { view, .. } => view,
        r => panic!("{r:?}"),
    };
    assert_eq!(view("network"), StatsView::Network);
    assert_eq!(view("n"), StatsView::Network);
    assert_eq!(view("c"), StatsView::Cache);
    assert_eq!(view("ct"), StatsView::General);
    assert_eq!(view("r"), StatsView::Runtime);
    assert_eq!(view("rs"), StatsView::RsQueue);
    assert_eq!(view("l"), StatsView::Link);
    assert_eq!(view("p"), StatsView::Process);
    assert_eq!(view("q"), StatsView::Queue);
    assert_eq!(view("e"), StatsView::Expect);
    // ctsyncd's own view, after conntrackd's: "r" stays runtime.
    assert_eq!(view("re"), StatsView::Ready);
    assert_eq!(view("ready"), StatsView::Ready);
    assert_eq!(
        client(&["-s"]),
        Request::Stats {
            view: StatsView::General,
            format: Format::Plain
        }
    );
    assert_eq!(
        client(&["-s", "cache", "--json"]),
        Request::Stats {
            view: StatsView::Cache,
            format: Format::Json
        }
    );
    let p = parse(&["-s", "m"]).unwrap();
    assert_eq!(
        p.warnings,
        vec!["use `link' instead of `multicast' as parameter."]
    );
    assert_eq!(
        run(&["-s", "zzz"]),
        Err(CliError::bare("unknown parameter `zzz' for option `-s'"))
    );
}

#[test]
fn simple_commands_and_last_one_wins() {
    assert_eq!(client(&["-k"]), Request::Kill);
    assert_eq!(client(&["-B"]), Request::BulkSend);
    assert_eq!(client(&["-n"]), Request::RequestResync);
    assert_eq!(client(&["-t"]), Request::ResetTimers);
    assert_eq!(client(&["-c", "-f"]), Request::FlushCache(CacheSel::All));
    assert_eq!(client(&["-s", "-k"]), Request::Kill);
    // conntrackd dispatches on the second character only.
    assert_eq!(client(&["-cfoo"]), Request::Commit(Target::All));
}

#[test]
fn invalid_mixes_and_unknown_options() {
    assert_eq!(run(&["-d", "-c"]), Err(CliError::new("Invalid parameters")));
    assert_eq!(run(&["-k", "-d"]), Err(CliError::new("Invalid parameters")));
    assert_eq!(run(&["-z"]), Err(CliError::new("Unknown option: -z")));
    assert_eq!(run(&["-S"]), Err(CliError::new("Unknown option: -S")));
    assert_eq!(
        run(&["commit"]),
        Err(CliError::new("Unknown option: commit"))
    );
    assert_eq!(
        run(&["-c", "foo"]),
        Err(CliError::new("unknown parameter `foo' for option `-c'"))
    );
    assert_eq!(
        run(&["-i", "x"]),
        Err(CliError::new("unknown parameter `x' for option `-i'"))
    );
    assert!(run(&["--json"]).is_err());
    assert!(run(&["-c", "--json"]).is_err());
}

#[test]
fn genkey_goes_alone() {
    assert_eq!(
        parse(&["--genkey"]).map(|p| p.invocation),
        Ok(Invocation::GenKey)
    );
    assert!(parse(&["--genkey", "-d"]).is_err());
    assert!(parse(&["-C", "/x.conf", "--genkey"]).is_err());
}

#[test]
fn check_config_goes_alone() {
    assert_eq!(
        run(&["-C", "/x.conf", "--check-config"]),
        Ok(RunMode::CheckConfig { strict: false })
    );
    assert_eq!(
        run(&["--strict", "-C", "/x.conf", "--check-config"]),
        Ok(RunMode::CheckConfig { strict: true })
    );
    assert!(run(&["--check-config", "-d"]).is_err());
    assert!(run(&["--check-config", "-s"]).is_err());
    assert_eq!(
        run(&["-C", "/x.conf", "--strict"]),
        Err(CliError::new("--strict goes with --check-config"))
    );
}

#[test]
fn the_personality_chooses_the_default_config_and_the_usage_names() {
    use crate::personality::CONNTRACKD;
    let as_conntrackd = parse_as::<&str>(&[], &CONNTRACKD).unwrap();
    assert_eq!(
        as_conntrackd.invocation,
        Invocation::Run {
            config: PathBuf::from("/etc/conntrackd/conntrackd.conf"),
            mode: RunMode::Foreground
        }
    );
    let u = usage(&CONNTRACKD);
    assert!(u.contains("Usage: conntrackd [commands]"), "{u}");
    assert!(u.contains("(default /etc/conntrackd/conntrackd.conf)"));
    assert!(u.contains("-k, kill conntrackd"));
    // The version line stays honest about what runs.
    assert!(u.starts_with(
        "Connection tracking state synchronization daemon ctsyncd v"
    ));
    let u = usage(&CTSYNCD);
    assert!(u.contains("Usage: ctsyncd [commands]"), "{u}");
    assert!(u.contains("(default /etc/ctsyncd/ctsyncd.conf)"));
}

#[test]
fn help_and_version_win_immediately() {
    assert_eq!(parse(&["-h", "-z"]).unwrap().invocation, Invocation::Help);
    assert_eq!(
        parse(&["-v", "-z"]).unwrap().invocation,
        Invocation::Version
    );
    // …but only when reached: an earlier error still counts.
    assert!(parse(&["-z", "-v"]).is_err());
    // A daemon and a client command mixed is such an error: conntrackd
    // refuses it (exit 1) when it reads the second, before a later -h/-v.
    for args in [["-d", "-i", "-h"], ["-k", "-d", "-v"]] {
        assert_eq!(
            parse(&args).map(|p| p.invocation),
            Err(CliError::new("Invalid parameters")),
            "{args:?}"
        );
    }
    assert!(usage(&CTSYNCD).contains("-c [ct|expect]"));
}

#[test]
fn an_empty_word_after_an_option_is_its_first_keyword() {
    // conntrackd compares the word's own length, none for "": an empty
    // word (`conntrackd -f "$WHICH"` with WHICH unset) is consumed and
    // names the first keyword; conntrackd 1.4.7 then flushes the internal
    // cache (`-f` alone flushes both) and shows `-s network`.
    use Cache::*;
    use Format::*;
    assert_eq!(client(&["-c", ""]), Request::Commit(Target::Ct));
    assert_eq!(client(&["-F", ""]), Request::FlushKernel(Target::Ct));
    assert_eq!(client(&["-R", ""]), Request::ResyncKernel(Target::Ct));
    assert_eq!(client(&["-i", ""]), dump(Internal, Table::Ct, Plain));
    assert_eq!(client(&["-e", "", "-x"]), dump(External, Table::Ct, Xml));
    assert_eq!(client(&["-f", ""]), Request::FlushCache(CacheSel::Internal));
    assert_eq!(
        client(&["-s", ""]),
        Request::Stats {
            view: StatsView::Network,
            format: Plain
        }
    );
    // An empty word where an option is due is still no option.
    assert_eq!(
        run(&["-s", "runtime", ""]),
        Err(CliError::new("Unknown option: "))
    );
}
