//! The load tool: native encrypted people against one agent through the development relay,
//! measuring what a person running an agent feels under load (messages per second, latency
//! percentiles, the agent's peak memory, its store's size, its CPU time per message), for our
//! agent on each runtime and the official Python agent side by side.
//!
//! [`measure`] runs one agent through one [`Plan`]: a fresh relay in this process (loopback),
//! the agent as a child process with a fresh store ([`agents`]), K people each with a
//! conversation ([`drive`]), a warm-up message each so every session exists, then the measured
//! messages, closed loop (W in flight per conversation) or open loop (a fixed rate). Every
//! reply must arrive, decrypt and echo its message, or the run fails. The binary
//! (`cargo run --release -p pacerelle-load -- --help`) runs several agents and rates and writes
//! the tables and a chart ([`chart`]).

#![forbid(unsafe_code)]

pub mod agents;
pub mod chart;
pub mod drive;
pub mod error;
pub mod preload;
pub mod procfs;
pub mod report;
pub mod serve;

pub use agents::{AgentKind, AgentProgram};
pub use drive::Pacing;
pub use error::LoadError;
pub use report::{Percentiles, RunReport};

use agents::RunningAgent;
use drive::People;
use pacerelle_relay::{Relay, RelayConfig, RelayHandle};
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

/// The agent's id at the relay, for every run.
pub const AGENT_ID: &str = "load-agent";

/// Its token (a fresh relay per run, loopback only).
pub const AGENT_TOKEN: &str = "load-agent-token";

/// How long the tool waits for the relay to see every acknowledgement before a CPU sample, so
/// the work of acknowledging is counted; a run is not failed for it (replies are what count).
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// What one run sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Conversations (one person each).
    pub conversations: usize,
    /// How they send.
    pub pacing: Pacing,
}

/// Where runs take our agent from and keep the agents' stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    /// How to start our agent ([`serve`]).
    pub ours: AgentProgram,
    /// The folder each run's store is made in (and removed from): the system's temporary
    /// folder by default. Its filesystem decides what a durable write costs.
    pub stores: PathBuf,
    /// What our agent's store holds before it starts (nothing by default; ignored for the
    /// official agent).
    pub preload: preload::Preload,
}

impl Setup {
    /// Our agent from `ours`, stores under the system's temporary folder.
    pub fn new(ours: AgentProgram) -> Self {
        Setup { ours, stores: std::env::temp_dir(), preload: preload::Preload::default() }
    }
}

/// Runs `kind` through `plan` on a relay of its own and reports what it measured. For the
/// official agent call [`agents::prepare_official`] first, outside async code.
pub async fn measure(kind: AgentKind, plan: &Plan, setup: &Setup) -> Result<RunReport, LoadError> {
    let relay = Relay::spawn(RelayConfig::loopback_ephemeral().agent(AGENT_ID, AGENT_TOKEN)).await?;
    let result = measure_on(&relay, kind, plan, setup).await;
    relay.shutdown().await;
    result
}

async fn measure_on(relay: &RelayHandle, kind: AgentKind, plan: &Plan, setup: &Setup) -> Result<RunReport, LoadError> {
    let mut agent =
        RunningAgent::start(kind, relay, AGENT_ID, AGENT_TOKEN, &setup.ours, &setup.stores, setup.preload).await?;
    let people = People::connect(relay, AGENT_ID, plan.conversations).await?;
    let outcome = async {
        people.warm_up().await?;
        agent.settle(relay, SETTLE_LIMIT).await;
        let before = agent.sample()?;
        let start = Instant::now();
        let latencies = people.run(plan.pacing).await?;
        let elapsed = start.elapsed();
        if !agent.settle(relay, SETTLE_LIMIT).await {
            tracing::warn!(agent = %kind, "not every message acknowledged at the relay before the last sample");
        }
        let after = agent.sample()?;
        Ok(RunReport {
            agent: kind,
            offered: match plan.pacing {
                Pacing::Rate { per_second, .. } => Some(per_second),
                Pacing::Window { .. } => None,
            },
            messages: latencies.len(),
            elapsed,
            latency: Percentiles::of(latencies),
            peak_resident: after.peak_resident,
            store_bytes: agent.store_size()?,
            cpu: after.cpu.saturating_sub(before.cpu),
            started_in: agent.started_in(),
        })
    }
    .await;
    people.close().await;
    outcome
}
