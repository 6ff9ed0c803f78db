//! `--help` of the binary and of each subcommand, and bad flags.

use crate::support::{pacerelle, run, stderr, stdout};

#[test]
fn every_subcommand_has_help_with_its_exit_codes() {
    for (args, usage) in [
        (&["--help"][..], "Usage: pacerelle [OPTIONS] <COMMAND>"),
        (&["relay", "--help"][..], "Usage: pacerelle relay [OPTIONS]"),
        (&["chat", "--help"][..], "Usage: pacerelle chat [OPTIONS] --agent <ID> --person <ID> --token <TOKEN>"),
        (&["verify", "--help"][..], "Usage: pacerelle verify [OPTIONS]"),
        (
            &["connect", "--help"][..],
            "Usage: pacerelle connect [OPTIONS] --connect-key <KEY> --client-id <ID> --redirect-uri <URI> --agent-name <NAME>",
        ),
        (&["import-python", "--help"][..], "Usage: pacerelle import-python [OPTIONS] --agent <ID>"),
    ] {
        let output = run(pacerelle(args), "");
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", stderr(&output));
        let help = stdout(&output);
        assert!(help.contains(usage), "{args:?}: {help}");
        assert!(help.contains("Exit codes:") && help.contains("4  the relay refused the token"), "{args:?}: {help}");
    }
    let chat = stdout(&run(pacerelle(&["chat", "--help"]), ""));
    for command in ["/answer <widget> <json>", "/cancel <widget>", "/send-file <path>", "/fetch <n> <path>", "/quit"] {
        assert!(chat.contains(command), "{command}: {chat}");
    }
}

#[test]
fn bad_usage_exits_2_with_one_clear_error() {
    for args in [
        &["--bogus"][..],
        &["launch"][..],
        &["relay", "--listen", "not-an-address"][..],
        &["relay", "--agent", "no-token"][..],
        &["chat", "--agent", "echo", "--person", "alice"][..],
        &["chat", "--agent", "echo", "--person", "alice", "--token", "t", "--wait-after-eof", "soon"][..],
        &["chat", "--agent", "echo", "--person", "alice", "--token", "t", "--base-url", "ftp://relay"][..],
    ] {
        let output = run(pacerelle(args), "");
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
        let error = stderr(&output);
        assert!(
            error.lines().next().is_some_and(|line| line.contains("error") || line.starts_with("pacerelle: ")),
            "{args:?}: {error}"
        );
        assert!(!error.contains("panicked") && !error.contains("RUST_BACKTRACE"), "{args:?}: {error}");
    }
}
