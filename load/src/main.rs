//! `pacerelle-load`: runs the load plans the command line asks for against each agent in turn,
//! prints the figures and ratios as Markdown, and draws the offered-load chart.
//!
//! ```text
//! cargo run --release -p pacerelle-load -- --conversations 10 --messages 100 --window 4 \
//!     --sweep 25,50,100,200,400 --sweep-seconds 4 --chart docs/load-sweep.png
//! ```
//!
//! Our agent runs as this same program (`--serve-agent <runtime>`, see
//! `pacerelle_load::serve`), so it is always the build being run; `--agent-binary` takes the
//! separate `pacerelle-load-agent` instead.

#![forbid(unsafe_code)]

use pacerelle_load::agents::{self, AgentKind, AgentProgram};
use pacerelle_load::{LoadError, Pacing, Plan, RunReport, Setup, chart, report};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Why the tool stopped.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// A run failed.
    #[error("{agent}: {source}")]
    Run {
        /// The agent whose run failed.
        agent: AgentKind,
        /// Why.
        #[source]
        source: LoadError,
    },
    /// The chart could not be made.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The tokio runtime could not start.
    #[error("cannot start tokio: {0}")]
    Runtime(std::io::Error),
    /// This program's own path is unknown, so its agent cannot be found.
    #[error("cannot find this program's path: {0}")]
    CurrentExe(std::io::Error),
}

/// A load test of our encrypted echo agent, on each runtime, against the official Python agent:
/// encrypted people send messages through a local relay, and every reply is timed.
#[derive(Debug, clap::Parser)]
#[command(
    name = "pacerelle-load",
    after_help = "Every reply must arrive, decrypt and echo its message, or the tool fails."
)]
struct Options {
    /// Agents to load, in order (tokio, smol, async-std, blocking, official).
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = agent, default_value = "tokio,smol,async-std,blocking,official")]
    agents: Vec<AgentKind>,
    /// Conversations, one encrypted person each.
    #[arg(long, value_name = "K", default_value_t = 10)]
    conversations: usize,
    /// Messages per conversation in the main run; 0 skips it.
    #[arg(long, value_name = "M", default_value_t = 100)]
    messages: usize,
    /// Messages in flight per conversation, closed loop.
    #[arg(long, value_name = "W", default_value_t = 4)]
    window: usize,
    /// Run the main run open loop at R messages/s instead (K x M messages).
    #[arg(long, value_name = "R", value_parser = positive)]
    rate: Option<f64>,
    /// Also open-loop runs at each offered rate (messages/s).
    #[arg(long, value_name = "R1,R2,...", value_delimiter = ',', value_parser = positive)]
    sweep: Vec<f64>,
    /// Length of each sweep run in seconds: R x S messages.
    #[arg(long, value_name = "S", value_parser = positive, default_value_t = 4.0)]
    sweep_seconds: f64,
    /// Agents in the sweep (default: --agents).
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = agent)]
    sweep_agents: Option<Vec<AgentKind>>,
    /// Write the sweep's chart (throughput and p99 against offered load) to PATH.
    #[arg(long, value_name = "PATH", requires = "sweep")]
    chart: Option<PathBuf>,
    /// TrueType font for the chart (default: a system DejaVu or Liberation).
    #[arg(long, value_name = "PATH")]
    font: Option<PathBuf>,
    /// Where each run's agent store is made (default: the system's temp folder).
    #[arg(long, value_name = "DIR")]
    stores: Option<PathBuf>,
    /// Our agent, pacerelle-load-agent (default: this program, with --serve-agent).
    #[arg(long, value_name = "PATH")]
    agent_binary: Option<PathBuf>,
    /// Accepted receipts in our agent's store before it starts.
    #[arg(long, value_name = "N", default_value_t = 0)]
    preload_receipts: usize,
    /// Real sessions, with as many people, in our agent's store before it starts.
    #[arg(long, value_name = "S", default_value_t = 0)]
    preload_sessions: usize,
}

impl Options {
    /// What our agent's store holds before it starts.
    fn preload(&self) -> pacerelle_load::preload::Preload {
        pacerelle_load::preload::Preload { receipts: self.preload_receipts, sessions: self.preload_sessions }
    }
}

/// One agent's name, as `--agents` and `--sweep-agents` list them.
fn agent(name: &str) -> Result<AgentKind, String> {
    AgentKind::parse(name.trim()).ok_or_else(|| format!("unknown agent {name:?}"))
}

/// A rate or a length: a finite number above zero.
fn positive(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(number) if number.is_finite() && number > 0.0 => Ok(number),
        _ => Err(format!("not a positive number: {value:?}")),
    }
}

/// The options of a command line without the program's name.
fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, clap::Error> {
    use clap::Parser as _;
    Options::try_parse_from(std::iter::once("pacerelle-load".to_owned()).chain(args))
}

async fn run_all(agents: &[AgentKind], plan: &Plan, setup: &Setup) -> Result<Vec<RunReport>, CliError> {
    let mut reports = Vec::new();
    for &agent in agents {
        eprintln!("{agent}: {} conversations, {:?}", plan.conversations, plan.pacing);
        let report =
            pacerelle_load::measure(agent, plan, setup).await.map_err(|source| CliError::Run { agent, source })?;
        eprintln!(
            "{agent}: {} replies in {:.2} s, {:.0}/s, p99 {:?}",
            report.messages,
            report.elapsed.as_secs_f64(),
            report.throughput(),
            report.latency.p99
        );
        reports.push(report);
    }
    Ok(reports)
}

fn run(options: Options) -> Result<(), CliError> {
    let preload = options.preload();
    let ours = match options.agent_binary {
        Some(path) => AgentProgram::binary(path),
        None => AgentProgram::this_program().map_err(CliError::CurrentExe)?,
    };
    let mut setup = Setup::new(ours);
    setup.preload = preload;
    if let Some(stores) = options.stores.clone() {
        setup.stores = stores;
    }
    let sweep_agents = options.sweep_agents.clone().unwrap_or_else(|| options.agents.clone());
    let official_wanted = options.agents.contains(&AgentKind::Official) && options.messages > 0
        || sweep_agents.contains(&AgentKind::Official) && !options.sweep.is_empty();
    if official_wanted {
        agents::prepare_official();
    }
    // Two workers, the machine's cores: the people and the relay share them with the agent.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    let command: Vec<String> = std::env::args().collect();
    println!("# pacerelle-load\n\n`{}`\n", command.join(" "));
    runtime.block_on(async {
        if options.messages > 0 {
            let total = options.messages * options.conversations;
            let pacing = match options.rate {
                Some(per_second) => Pacing::Rate { per_second, total },
                None => Pacing::Window { messages: options.messages, window: options.window },
            };
            let plan = Plan { conversations: options.conversations, pacing };
            let reports = run_all(&options.agents, &plan, &setup).await?;
            println!(
                "## {} conversations x {} messages, {}\n",
                options.conversations,
                options.messages,
                match options.rate {
                    Some(rate) => format!("open loop at {rate} msg/s"),
                    None => format!("{} in flight each", options.window),
                }
            );
            println!("{}\n{}", report::table(&reports), report::ratios(&reports));
        }
        if !options.sweep.is_empty() {
            let mut sweep = Vec::new();
            for &per_second in &options.sweep {
                let total = ((per_second * options.sweep_seconds).round() as usize).max(options.conversations);
                let plan = Plan { conversations: options.conversations, pacing: Pacing::Rate { per_second, total } };
                let reports = run_all(&sweep_agents, &plan, &setup).await?;
                println!(
                    "## open loop at {per_second} msg/s, {total} messages in {} conversations\n",
                    options.conversations
                );
                println!("{}\n{}", report::table(&reports), report::ratios(&reports));
                sweep.extend(reports);
            }
            if let Some(path) = &options.chart {
                let title = format!(
                    "Encrypted echo agents under offered load ({} conversations, {} s per point, 2 cores)",
                    options.conversations, options.sweep_seconds
                );
                chart::draw(&sweep, path, options.font.as_deref(), &title)?;
                eprintln!("chart written to {}", path.display());
            }
        }
        Ok::<_, CliError>(())
    })?;
    // Let the relay's and people's tasks wind down without waiting on a straggler.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

fn main() -> ExitCode {
    pacerelle_runtime_support::logging::log_to_stderr("warn", &[]);
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("--serve-agent") {
        // This program as the agent under load (see AgentProgram::this_program).
        return match pacerelle_load::serve::serve(args.nth(1)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(%error, "load agent stopped");
                ExitCode::FAILURE
            }
        };
    }
    // --help prints and exits 0; a wrong command line prints why and exits 2.
    let options = parse(args).unwrap_or_else(|error| error.exit());
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pacerelle-load failed: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn options_are_parsed() {
        let options =
            parse(args("--agents tokio,official --conversations 3 --window 2 --sweep 10,20 --chart x.png")).unwrap();
        assert_eq!(options.agents, [AgentKind::Tokio, AgentKind::Official]);
        assert_eq!((options.conversations, options.messages, options.window), (3, 100, 2));
        assert_eq!(options.sweep, [10.0, 20.0]);
        assert_eq!(options.chart, Some(PathBuf::from("x.png")));
        assert!(options.preload().is_empty());
        let options = parse(args("--preload-receipts 100000 --preload-sessions 1000")).unwrap();
        assert_eq!((options.preload_receipts, options.preload_sessions), (100_000, 1_000));
    }

    #[test]
    fn defaults_and_help() {
        let options = parse(args("")).unwrap();
        assert_eq!(options.agents, AgentKind::ALL);
        assert_eq!((options.conversations, options.messages, options.window), (10, 100, 4));
        assert_eq!((options.rate, options.sweep_seconds, options.sweep_agents), (None, 4.0, None));
        let help = parse(args("--help")).unwrap_err();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
        let text = help.to_string();
        for flag in ["--agents", "--conversations", "--sweep-seconds", "--chart", "--stores", "--agent-binary"] {
            assert!(text.contains(flag), "{flag} missing from:\n{text}");
        }
    }

    #[test]
    fn bad_command_lines_are_refused() {
        for line in [
            "--preload-sessions lots",
            "--preload-receipts -1",
            "--agents python",
            "--window",
            "--messages many",
            "--sweep 10,-5",
            "--chart x.png",
            "--bogus 1",
        ] {
            assert!(parse(args(line)).is_err(), "{line}");
        }
    }
}
