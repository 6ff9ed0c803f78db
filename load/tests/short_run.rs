//! A short load run, as CI runs it (debug build, a few hundred messages): our agent on two
//! runtimes and the official Python agent, each as a child process with its SQLite store,
//! answering encrypted people through the relay. It checks that every reply arrived, decrypted
//! and echoed its message (the tool fails otherwise) and that the agent's figures were read;
//! it never asserts speed, which is measured by the release tool (see BENCHMARKS.md).

use pacerelle_load::{AgentKind, AgentProgram, LoadError, Pacing, Plan, RunReport, Setup, agents, measure};

fn our_agent() -> Setup {
    Setup::new(AgentProgram::binary(env!("CARGO_BIN_EXE_pacerelle-load-agent")))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn check(report: &RunReport, agent: AgentKind, messages: usize) {
    assert_eq!(report.agent, agent);
    assert_eq!(report.messages, messages, "every reply arrived, decrypted and echoed");
    assert!(report.latency.p50 <= report.latency.p99 && report.latency.p99 <= report.latency.max, "{report:?}");
    assert!(report.peak_resident > 0, "the agent's peak memory was read: {report:?}");
    assert!(report.store_bytes > 0, "the agent's store is on disk: {report:?}");
}

#[test]
fn our_agent_answers_every_message_closed_and_open_loop() {
    runtime().block_on(async {
        let closed = Plan { conversations: 3, pacing: Pacing::Window { messages: 40, window: 4 } };
        let report = measure(AgentKind::Tokio, &closed, &our_agent()).await.expect("a tokio run");
        check(&report, AgentKind::Tokio, 120);
        assert_eq!(report.offered, None);

        let open = Plan { conversations: 2, pacing: Pacing::Rate { per_second: 100.0, total: 60 } };
        let report = measure(AgentKind::Blocking, &open, &our_agent()).await.expect("a blocking run");
        check(&report, AgentKind::Blocking, 60);
        assert_eq!(report.offered, Some(100.0));
    });
}

#[test]
fn the_official_agent_answers_every_message() {
    // Installs the official SDK (blocking) before the runtime starts.
    agents::prepare_official();
    runtime().block_on(async {
        let plan = Plan { conversations: 2, pacing: Pacing::Window { messages: 40, window: 4 } };
        let report = measure(AgentKind::Official, &plan, &our_agent()).await.expect("an official run");
        check(&report, AgentKind::Official, 80);
    });
}

#[test]
fn a_missing_agent_binary_fails_the_run() {
    runtime().block_on(async {
        let plan = Plan { conversations: 1, pacing: Pacing::Window { messages: 1, window: 1 } };
        let result =
            measure(AgentKind::Smol, &plan, &Setup::new(AgentProgram::binary("/nonexistent/pacerelle-load-agent")))
                .await;
        assert!(matches!(result, Err(LoadError::AgentBinaryMissing(_))), "{result:?}");
    });
}

#[test]
fn our_agent_with_a_preloaded_store_starts_and_answers_every_message() {
    // Its store holds real sessions and accepted receipts before it starts: it must load them,
    // publish fresh one-time prekeys for the run's people, and answer them all.
    let mut setup = our_agent();
    setup.preload = pacerelle_load::preload::Preload { receipts: 3_000, sessions: 30 };
    runtime().block_on(async {
        let closed = Plan { conversations: 2, pacing: Pacing::Window { messages: 20, window: 4 } };
        let report = measure(AgentKind::Tokio, &closed, &setup).await.expect("a run on a preloaded store");
        check(&report, AgentKind::Tokio, 40);
        let plain = measure(AgentKind::Tokio, &closed, &our_agent()).await.expect("a run on an empty store");
        assert!(report.store_bytes > plain.store_bytes, "the preloaded receipts were kept: {report:?} {plain:?}");
    });
}
