//! The standard `process_*` metrics of the running gatekeeper, read from `/proc/self` at scrape
//! time (Linux): CPU seconds, resident and virtual memory, open and maximum file descriptors,
//! start time. A value that cannot be read is left out.
//!
//! CPU and start times are in clock ticks in `/proc`; Linux exposes them at `USER_HZ`, which is
//! 100 on every architecture gatekeeper builds for.

use std::path::Path;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Clock ticks per second in `/proc` (`USER_HZ`).
const USER_HZ: f64 = 100.0;

/// What `/proc/self` says about this process now.
#[derive(Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident memory, bytes.
    pub resident_memory_bytes: Option<u64>,
    /// Virtual memory, bytes.
    pub virtual_memory_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit of open file descriptors.
    pub max_fds: Option<u64>,
    /// Start time, seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

/// The fields of `/proc/PID/stat` after the command name (field 3 on, so index 0 is field 3).
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default()
}

/// Reads the statistics from `/proc` (`proc` is its mount point; `self` is this process).
pub fn read(proc: &Path) -> ProcessStats {
    let read = |path: &str| std::fs::read_to_string(proc.join(path)).ok();
    let mut stats = ProcessStats::default();
    if let Some(stat) = read("self/stat") {
        let fields = stat_fields(&stat);
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        if let (Some(utime), Some(stime)) = (field(14), field(15)) {
            stats.cpu_seconds = Some((utime + stime) as f64 / USER_HZ);
        }
        stats.virtual_memory_bytes = field(23);
        let boot_time = read("stat").and_then(|s| {
            s.lines()
                .find_map(|line| line.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<u64>().ok())
        });
        if let (Some(boot), Some(start)) = (boot_time, field(22)) {
            stats.start_time_seconds = Some(boot as f64 + start as f64 / USER_HZ);
        }
    }
    stats.resident_memory_bytes = read("self/status").and_then(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    stats.open_fds = std::fs::read_dir(proc.join("self/fd"))
        .ok()
        .map(|dir| dir.count() as u64);
    stats.max_fds = read("self/limits").and_then(|limits| {
        limits
            .lines()
            .find(|line| line.starts_with("Max open files"))
            .and_then(|line| line.split_whitespace().nth(3))
            .and_then(|soft| soft.parse::<u64>().ok())
    });
    stats
}

/// Registers the `process_*` metrics of `stats` that have a value.
pub fn register(registry: &mut Registry, stats: &ProcessStats) {
    if let Some(seconds) = stats.cpu_seconds {
        let cpu = Counter::<f64>::default();
        cpu.inc_by(seconds);
        registry.register(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            cpu,
        );
    }
    let gauges = [
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            stats.resident_memory_bytes,
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            stats.virtual_memory_bytes,
        ),
        (
            "process_open_fds",
            "Number of open file descriptors",
            stats.open_fds,
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors",
            stats.max_fds,
        ),
    ];
    for (name, help, value) in gauges {
        if let Some(value) = value {
            let gauge = Gauge::<i64>::default();
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
            registry.register(name, help, gauge);
        }
    }
    if let Some(start) = stats.start_time_seconds {
        let gauge = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        gauge.set(start);
        registry.register(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            gauge,
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn stat_fields_skip_a_command_name_with_spaces_and_parentheses() {
        let fields = stat_fields("42 (a (b) c) S 1 2 3");
        assert_eq!(fields, ["S", "1", "2", "3"]);
    }

    #[test]
    fn a_fake_proc_is_read() {
        let dir = std::env::temp_dir().join(format!("gk-proc-{}", std::process::id()));
        let own = dir.join("self");
        std::fs::create_dir_all(own.join("fd")).unwrap();
        for fd in ["0", "1", "2"] {
            std::fs::write(own.join("fd").join(fd), "").unwrap();
        }
        // Fields 3.. : state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime(14) stime(15) cutime cstime priority nice threads itreal starttime(22)
        // vsize(23) rss(24).
        let stat = "7 (gk) S 1 7 7 0 -1 0 0 0 0 0 250 50 0 0 20 0 4 0 1000 123456 10";
        std::fs::write(own.join("stat"), stat).unwrap();
        std::fs::write(own.join("status"), "Name:\tgk\nVmRSS:\t  2048 kB\n").unwrap();
        let limits = "Limit Soft Limit Hard Limit Units\nMax open files 1024 4096 files\n";
        std::fs::write(own.join("limits"), limits).unwrap();
        std::fs::write(dir.join("stat"), "cpu 1 2 3\nbtime 1700000000\n").unwrap();
        let stats = read(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            stats,
            ProcessStats {
                cpu_seconds: Some(3.0),
                resident_memory_bytes: Some(2048 * 1024),
                virtual_memory_bytes: Some(123_456),
                open_fds: Some(3),
                max_fds: Some(1024),
                start_time_seconds: Some(1_700_000_010.0),
            }
        );
    }

    #[test]
    fn this_process_is_read() {
        let stats = read(Path::new("/proc"));
        assert!(stats.resident_memory_bytes.is_some_and(|b| b > 0));
        assert!(stats.open_fds.is_some_and(|n| n > 0));
        assert!(stats.max_fds.is_some() && stats.cpu_seconds.is_some());
    }
}
