//! A run's figures (throughput, latency percentiles, peak memory, store size, CPU time per
//! message) and their side-by-side tables, as Markdown, with ours over the official agent's as
//! ratios.

use crate::agents::AgentKind;
use std::fmt::Write as _;
use std::time::Duration;

/// Latency percentiles of a run, by the nearest-rank method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Percentiles {
    /// The median.
    pub p50: Duration,
    /// The 90th percentile.
    pub p90: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The slowest.
    pub max: Duration,
}

impl Percentiles {
    /// The percentiles of `latencies` (any order; all zero when empty).
    pub fn of(mut latencies: Vec<Duration>) -> Self {
        if latencies.is_empty() {
            return Percentiles::default();
        }
        latencies.sort_unstable();
        let rank = |percent: usize| {
            // Nearest rank: the smallest value with at least `percent`% of the values at or below it.
            let index = (percent * latencies.len()).div_ceil(100).max(1) - 1;
            latencies[index.min(latencies.len() - 1)]
        };
        Percentiles { p50: rank(50), p90: rank(90), p99: rank(99), max: latencies[latencies.len() - 1] }
    }
}

/// What one run of one agent measured.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// The agent.
    pub agent: AgentKind,
    /// The offered rate (messages per second) of an open-loop run; `None` for a closed loop.
    pub offered: Option<f64>,
    /// Messages measured (each answered, decrypted and checked).
    pub messages: usize,
    /// From the first measured send to the last reply.
    pub elapsed: Duration,
    /// Latency from send (or, open loop, the scheduled moment) to reply decrypted.
    pub latency: Percentiles,
    /// The agent's peak resident memory (`VmHWM`), in bytes.
    pub peak_resident: u64,
    /// The agent's store on disk at the end, in bytes.
    pub store_bytes: u64,
    /// The agent's CPU time (user and system) over the measured messages.
    pub cpu: Duration,
    /// From the agent's process start to its socket open and prekeys published.
    pub started_in: Duration,
}

impl RunReport {
    /// Replies per second.
    pub fn throughput(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// CPU time per message.
    pub fn cpu_per_message(&self) -> Duration {
        self.cpu / u32::try_from(self.messages.max(1)).unwrap_or(u32::MAX)
    }
}

fn ms(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms >= 100.0 { format!("{ms:.0}") } else { format!("{ms:.2}") }
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

fn ratio(ours: f64, official: f64) -> String {
    if official > 0.0 && ours.is_finite() { format!("{:.3}", ours / official) } else { "n/a".into() }
}

/// The runs as a Markdown table, one row per run.
pub fn table(runs: &[RunReport]) -> String {
    let mut out = String::from(
        "| agent | offered msg/s | messages | msg/s | p50 ms | p90 ms | p99 ms | max ms | peak RSS MiB | store MiB | CPU ms/msg | start ms |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for run in runs {
        let offered = run.offered.map(|rate| format!("{rate:.0}")).unwrap_or_else(|| "closed".into());
        let _ = writeln!(
            out,
            "| {} | {offered} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {:.3} | {} |",
            run.agent,
            run.messages,
            run.throughput(),
            ms(run.latency.p50),
            ms(run.latency.p90),
            ms(run.latency.p99),
            ms(run.latency.max),
            mib(run.peak_resident),
            mib(run.store_bytes),
            run.cpu_per_message().as_secs_f64() * 1000.0,
            ms(run.started_in),
        );
    }
    out
}

/// Each of our runs over the official agent's run of the same plan, as a Markdown table (empty
/// without an official run). Above 1 is more for throughput; below 1 is better for the rest.
pub fn ratios(runs: &[RunReport]) -> String {
    let Some(official) = runs.iter().find(|run| run.agent == AgentKind::Official) else {
        return String::new();
    };
    let mut out = String::from(
        "| ours / official | msg/s | p50 | p90 | p99 | max | peak RSS | store | CPU/msg | start |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let seconds = |duration: Duration| duration.as_secs_f64();
    for run in runs.iter().filter(|run| run.agent.is_ours()) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            run.agent,
            ratio(run.throughput(), official.throughput()),
            ratio(seconds(run.latency.p50), seconds(official.latency.p50)),
            ratio(seconds(run.latency.p90), seconds(official.latency.p90)),
            ratio(seconds(run.latency.p99), seconds(official.latency.p99)),
            ratio(seconds(run.latency.max), seconds(official.latency.max)),
            ratio(run.peak_resident as f64, official.peak_resident as f64),
            ratio(run.store_bytes as f64, official.store_bytes as f64),
            ratio(seconds(run.cpu_per_message()), seconds(official.cpu_per_message())),
            ratio(seconds(run.started_in), seconds(official.started_in)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(values: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        values.into_iter().map(Duration::from_millis).collect()
    }

    #[test]
    fn percentiles_are_nearest_ranks() {
        // 1..=100 ms, shuffled: the p-th percentile is p ms.
        let mut values: Vec<u64> = (1..=100).collect();
        values.reverse();
        let percentiles = Percentiles::of(millis(values));
        assert_eq!(percentiles.p50, Duration::from_millis(50));
        assert_eq!(percentiles.p90, Duration::from_millis(90));
        assert_eq!(percentiles.p99, Duration::from_millis(99));
        assert_eq!(percentiles.max, Duration::from_millis(100));

        let one = Percentiles::of(millis([7]));
        assert_eq!(
            (one.p50, one.p99, one.max),
            (Duration::from_millis(7), Duration::from_millis(7), Duration::from_millis(7))
        );
        assert_eq!(Percentiles::of(Vec::new()), Percentiles::default());
    }

    fn run(agent: AgentKind, messages: usize, seconds: u64, cpu_ms: u64) -> RunReport {
        RunReport {
            agent,
            offered: None,
            messages,
            elapsed: Duration::from_secs(seconds),
            latency: Percentiles::of(millis([10, 20])),
            peak_resident: 10 << 20,
            store_bytes: 1 << 20,
            cpu: Duration::from_millis(cpu_ms),
            started_in: Duration::from_millis(50),
        }
    }

    #[test]
    fn throughput_cpu_and_ratios_are_computed_from_the_runs() {
        let ours = run(AgentKind::Tokio, 1000, 1, 500);
        let official = run(AgentKind::Official, 1000, 10, 15_000);
        assert_eq!(ours.throughput(), 1000.0);
        assert_eq!(ours.cpu_per_message(), Duration::from_micros(500));
        let table = ratios(&[ours.clone(), official]);
        let row = table.lines().find(|line| line.starts_with("| tokio")).expect("a row for tokio");
        assert!(row.starts_with("| tokio | 10.000 | 1.000 |"), "{row}");
        assert!(row.contains("| 0.033 |"), "CPU per message 0.5 / 15 ms: {row}");
        assert_eq!(ratios(&[ours]), "", "no baseline, no ratios");
    }
}
