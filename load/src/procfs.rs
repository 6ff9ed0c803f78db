//! What the kernel says an agent's process used (peak resident memory from
//! `/proc/<pid>/status`, CPU time from `/proc/<pid>/stat`) and what its store takes on disk.
//!
//! Read from outside the process, so the figures are the same for our agents and the official
//! Python agent, whatever either does internally.

use crate::error::LoadError;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// What `/proc` says about a process at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessSample {
    /// Peak resident memory so far (`VmHWM`), in bytes.
    pub peak_resident: u64,
    /// Resident memory now (`VmRSS`), in bytes.
    pub resident: u64,
    /// User plus system CPU time so far.
    pub cpu: Duration,
}

/// Reads `/proc/<pid>/status` and `/proc/<pid>/stat`.
pub fn sample(pid: u32) -> Result<ProcessSample, LoadError> {
    let status_path = PathBuf::from(format!("/proc/{pid}/status"));
    let status = read(&status_path)?;
    let stat_path = PathBuf::from(format!("/proc/{pid}/stat"));
    let stat = read(&stat_path)?;
    let peak_resident =
        status_kib(&status, "VmHWM:").ok_or(LoadError::Proc { path: status_path.clone(), what: "VmHWM" })? * 1024;
    let resident = status_kib(&status, "VmRSS:").ok_or(LoadError::Proc { path: status_path, what: "VmRSS" })? * 1024;
    let ticks = stat_cpu_ticks(&stat).ok_or(LoadError::Proc { path: stat_path, what: "utime and stime" })?;
    Ok(ProcessSample { peak_resident, resident, cpu: ticks_to_duration(ticks, clock_ticks_per_second()) })
}

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Read { path: path.to_owned(), source })
}

/// The value in kB of the `/proc/<pid>/status` line starting with `key` (e.g. `VmHWM:`).
pub fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(key))?;
    let mut words = line[key.len()..].split_whitespace();
    let value = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(value)
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line, in clock ticks.
///
/// The command name (field 2) is in parentheses and may itself hold spaces and parentheses, so
/// the fields are counted from the last `)`.
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, so utime (14) is the 12th word and stime (15) the 13th.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

/// The kernel's clock ticks per second for `/proc` CPU times (`getconf CLK_TCK`), asked once.
///
/// Asked of `getconf` rather than of libc, which would need `unsafe`; Linux reports 100 on every
/// architecture this runs on, which is the fallback should `getconf` be missing.
pub fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|&ticks| ticks > 0)
            .unwrap_or(100)
    })
}

fn ticks_to_duration(ticks: u64, per_second: u64) -> Duration {
    let per_second = per_second.max(1);
    Duration::from_secs(ticks / per_second) + Duration::from_nanos((ticks % per_second) * 1_000_000_000 / per_second)
}

/// The total size of the regular files under `root` (the store's database, its WAL and the
/// rest), in bytes. A file that vanishes while it is being walked counts as empty.
pub fn tree_size(root: &Path) -> Result<u64, LoadError> {
    let mut total = 0;
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| LoadError::Read { path: dir.clone(), source })?;
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                total += entry.metadata().map(|metadata| metadata.len()).unwrap_or(0);
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_values_are_read_in_kib() {
        let status = "Name:\tpython3\nVmPeak:\t  50000 kB\nVmHWM:\t   31744 kB\nVmRSS:\t   30000 kB\n";
        assert_eq!(status_kib(status, "VmHWM:"), Some(31744));
        assert_eq!(status_kib(status, "VmRSS:"), Some(30000));
        assert_eq!(status_kib(status, "VmSwap:"), None);
        assert_eq!(status_kib("VmHWM:\t12 pages\n", "VmHWM:"), None, "a unit other than kB is refused");
    }

    #[test]
    fn cpu_ticks_are_counted_after_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (odd) name) S 1 4242 4242 0 -1 4194304 101 0 0 0 37 5 0 0 20 0 3 0 3472486 3133440 395";
        assert_eq!(stat_cpu_ticks(stat), Some(42));
        assert_eq!(stat_cpu_ticks("4242 (truncated) S 1 2"), None);
    }

    #[test]
    fn ticks_become_durations() {
        assert_eq!(ticks_to_duration(250, 100), Duration::from_millis(2500));
        assert_eq!(ticks_to_duration(3, 1000), Duration::from_millis(3));
    }

    #[test]
    fn this_process_can_be_sampled() {
        let sample = sample(std::process::id()).expect("our own /proc entries");
        assert!(sample.peak_resident >= sample.resident && sample.resident > 0, "{sample:?}");
    }

    #[test]
    fn tree_size_adds_up_nested_files() {
        let root = std::env::temp_dir().join(format!("pacerelle-load-tree-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("agent")).unwrap();
        std::fs::write(root.join("a.db"), [0u8; 100]).unwrap();
        std::fs::write(root.join("agent").join("b.db-wal"), [0u8; 23]).unwrap();
        let size = tree_size(&root);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(size.unwrap(), 123);
    }
}
