//! `pacerelle verify` as a process: the code of a store an agent made is the agent's own
//! `verification_code()`, found from the root, the folder or the file; a running agent's,
//! a missing, a garbage and an identity-less store are one-line errors with exit code 6.

use crate::support::{AGENT, Agent, pacerelle, relay, run, run_async, scratch, stderr, stdout};
use pacerelle_store_sqlite::SqliteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_code_of_a_store_is_the_agents_own() {
    let dir = scratch("verify");
    let root = dir.join("store");
    let relay = relay().await;
    let agent = Agent::start(&relay, &root).await;
    let code = agent.handle.verification_code().expect("an encrypted agent has a code");
    let root_arg = root.to_str().unwrap().to_owned();

    let output = run_async(pacerelle(&["verify", "--store", &root_arg, "--agent", AGENT]), "").await;
    assert_eq!(output.status.code(), Some(6), "{}", stderr(&output));
    assert_eq!(
        stderr(&output).trim_end(),
        format!(
            "pacerelle: store {} is in use by a running agent: stop it first",
            root.join(AGENT).join("agent.db").display()
        )
    );

    agent.stop().await;
    relay.shutdown().await;
    let folder = root.join(AGENT);
    let file = folder.join("agent.db");
    let listing = |dir: &std::path::Path| {
        let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().file_name()).collect();
        names.sort();
        names
    };
    let before = (listing(&folder), std::fs::read(&file).unwrap());
    for args in [
        vec!["verify", "--store", &root_arg, "--agent", AGENT],
        vec!["verify", "--store", folder.to_str().unwrap()],
        vec!["verify", "--store", file.to_str().unwrap()],
    ] {
        let output = run_async(pacerelle(&args), "").await;
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", stderr(&output));
        assert_eq!(stdout(&output), format!("{code}\n"), "{args:?}");
    }
    // From the environment, as an agent's .env sets it.
    let mut from_env = pacerelle(&["verify"]);
    from_env.env("PACERELLE_STORE_ROOT", &root).env("PACERELLE_AGENT_ID", AGENT);
    let output = run_async(from_env, "").await;
    assert_eq!(stdout(&output), format!("{code}\n"), "{}", stderr(&output));
    assert_eq!(before, (listing(&folder), std::fs::read(&file).unwrap()), "verify changed the store");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn missing_garbage_and_identityless_stores_are_one_line_errors() {
    let dir = scratch("verify-errors");
    let missing = dir.join("nowhere");
    let garbage = dir.join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 4096]).unwrap();
    let plain = dir.join("plain.db");
    drop(SqliteStore::open(&plain).unwrap());
    for (store, agent, message) in [
        (&missing, None, format!("pacerelle: no agent store at {}", missing.display())),
        (
            &dir,
            Some("someone"),
            format!("pacerelle: no agent store at {}", dir.join("someone").join("agent.db").display()),
        ),
        (
            &garbage,
            None,
            format!("pacerelle: cannot read the agent store {}: SQLite: file is not a database", garbage.display()),
        ),
        (
            &plain,
            None,
            format!(
                "pacerelle: store {} holds no identity: its agent has never run with end-to-end encryption",
                plain.display()
            ),
        ),
    ] {
        let mut args = vec!["verify", "--store", store.to_str().unwrap()];
        args.extend(agent.iter().flat_map(|agent| ["--agent", *agent]));
        let output = run(pacerelle(&args), "");
        assert_eq!(output.status.code(), Some(6), "{args:?}: {}", stderr(&output));
        assert_eq!(stderr(&output).trim_end(), message, "{args:?}");
        assert!(stdout(&output).is_empty());
    }
    assert!(!missing.exists(), "verify must not create a store");
    let output = run(pacerelle(&["verify", "--store", dir.to_str().unwrap()]), "");
    assert_eq!(output.status.code(), Some(2), "a root without --agent: {}", stderr(&output));
    std::fs::remove_dir_all(&dir).ok();
}
