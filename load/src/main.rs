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

const USAGE: &str = "\
usage: pacerelle-load [options]

  --agents LIST          agents to load, in order (default tokio,smol,async-std,blocking,official)
  --conversations K      conversations, one encrypted person each (default 10)
  --messages M           messages per conversation in the main run; 0 skips it (default 100)
  --window W             messages in flight per conversation, closed loop (default 4)
  --rate R               run the main run open loop at R messages/s instead (K x M messages)
  --sweep R1,R2,...      also open-loop runs at each offered rate
  --sweep-seconds S      length of each sweep run: R x S messages (default 4)
  --sweep-agents LIST    agents in the sweep (default: --agents)
  --chart PATH           write the sweep's chart (throughput and p99 against offered load)
  --font PATH            TrueType font for the chart (default: a system DejaVu or Liberation)
  --stores DIR           where each run's agent store is made (default: the system's temp folder)
  --agent-binary PATH    our agent, pacerelle-load-agent (default: this program, --serve-agent)
  --preload-receipts N   our agent's store holds N accepted receipts before it starts (default 0)
  --preload-sessions S   ... and S real sessions with as many people (default 0)

Every reply must arrive, decrypt and echo its message, or the tool fails.";

/// Why the tool stopped.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// The command line is wrong.
    #[error("{0}\n\n{USAGE}")]
    Usage(String),
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

#[derive(Debug)]
struct Options {
    agents: Vec<AgentKind>,
    conversations: usize,
    messages: usize,
    window: usize,
    rate: Option<f64>,
    sweep: Vec<f64>,
    sweep_seconds: f64,
    sweep_agents: Option<Vec<AgentKind>>,
    chart: Option<PathBuf>,
    font: Option<PathBuf>,
    agent_binary: Option<PathBuf>,
    stores: Option<PathBuf>,
    preload: pacerelle_load::preload::Preload,
}

fn parse_agents(list: &str) -> Result<Vec<AgentKind>, CliError> {
    list.split(',')
        .map(|name| AgentKind::parse(name.trim()).ok_or_else(|| CliError::Usage(format!("unknown agent {name:?}"))))
        .collect()
}

fn parse_number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, CliError> {
    value.parse().map_err(|_| CliError::Usage(format!("{flag}: not a number: {value:?}")))
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, CliError> {
    let mut options = Options {
        agents: AgentKind::ALL.to_vec(),
        conversations: 10,
        messages: 100,
        window: 4,
        rate: None,
        sweep: Vec::new(),
        sweep_seconds: 4.0,
        sweep_agents: None,
        chart: None,
        font: None,
        agent_binary: None,
        stores: None,
        preload: Default::default(),
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(CliError::Usage("pacerelle-load: a load test of our agents against the official agent".into()));
        }
        let value = args.next().ok_or_else(|| CliError::Usage(format!("{flag} needs a value")))?;
        match flag.as_str() {
            "--agents" => options.agents = parse_agents(&value)?,
            "--conversations" => options.conversations = parse_number(&flag, &value)?,
            "--messages" => options.messages = parse_number(&flag, &value)?,
            "--window" => options.window = parse_number(&flag, &value)?,
            "--rate" => options.rate = Some(parse_number(&flag, &value)?),
            "--sweep" => {
                options.sweep =
                    value.split(',').map(|rate| parse_number(&flag, rate.trim())).collect::<Result<_, _>>()?
            }
            "--sweep-seconds" => options.sweep_seconds = parse_number(&flag, &value)?,
            "--sweep-agents" => options.sweep_agents = Some(parse_agents(&value)?),
            "--chart" => options.chart = Some(PathBuf::from(value)),
            "--font" => options.font = Some(PathBuf::from(value)),
            "--agent-binary" => options.agent_binary = Some(PathBuf::from(value)),
            "--stores" => options.stores = Some(PathBuf::from(value)),
            "--preload-receipts" => options.preload.receipts = parse_number(&flag, &value)?,
            "--preload-sessions" => options.preload.sessions = parse_number(&flag, &value)?,
            _ => return Err(CliError::Usage(format!("unknown option {flag}"))),
        }
    }
    if options.sweep.iter().any(|rate| !(rate.is_finite() && *rate > 0.0)) || options.sweep_seconds <= 0.0 {
        return Err(CliError::Usage("sweep rates and length must be positive".into()));
    }
    if options.chart.is_some() && options.sweep.is_empty() {
        return Err(CliError::Usage("--chart draws the sweep: give --sweep".into()));
    }
    Ok(options)
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
    let ours = match options.agent_binary {
        Some(path) => AgentProgram::binary(path),
        None => AgentProgram::this_program().map_err(CliError::CurrentExe)?,
    };
    let mut setup = Setup::new(ours);
    setup.preload = options.preload;
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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
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
    let result = parse(args).and_then(run);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Usage(message)) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
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
        assert!(options.preload.is_empty());
        let options = parse(args("--preload-receipts 100000 --preload-sessions 1000")).unwrap();
        assert_eq!((options.preload.receipts, options.preload.sessions), (100_000, 1_000));
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
            assert!(matches!(parse(args(line)), Err(CliError::Usage(_))), "{line}");
        }
    }
}
