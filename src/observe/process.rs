//! The standard `process_*` metrics (CPU seconds, resident memory, open file
//! descriptors, start time), read from `/proc/self` at each scrape. prometheus-client
//! ships no process collector (the `prometheus` crate's one is tied to its own
//! registry), so this is a small [`Collector`]. On systems without `/proc` nothing is
//! exported rather than zeros.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Clock ticks per second of `/proc/<pid>/stat` times. Linux fixes USER_HZ at 100 for
/// user space on every architecture it supports (the kernel's HZ is not exposed there).
const TICKS_PER_SECOND: f64 = 100.0;

/// The names this collector exports, as users query them.
pub const PROCESS_METRIC_NAMES: [&str; 6] = [
    "process_cpu_seconds_total",
    "process_max_fds",
    "process_open_fds",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_virtual_memory_bytes",
];

#[derive(Debug, Default)]
pub struct ProcessCollector;

/// What one scrape read; each field is `None` when its file could not be read.
#[derive(Debug, Default, PartialEq)]
pub struct ProcessSample {
    pub cpu_seconds: Option<f64>,
    pub start_time_seconds: Option<f64>,
    pub virtual_bytes: Option<f64>,
    pub resident_bytes: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
}

impl ProcessSample {
    pub fn read() -> Self {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| boot_time(&text));
        let (cpu_seconds, start_ticks) = stat.as_deref().map(stat_times).unwrap_or((None, None));
        let status = std::fs::read_to_string("/proc/self/status").ok();
        let kib = |key: &str| status.as_deref().and_then(|s| status_kib(s, key));
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.count() as f64);
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|text| max_open_files(&text));
        ProcessSample {
            cpu_seconds,
            start_time_seconds: boot
                .zip(start_ticks)
                .map(|(boot, ticks)| boot + ticks / TICKS_PER_SECOND),
            virtual_bytes: kib("VmSize:").map(|k| k * 1024.0),
            resident_bytes: kib("VmRSS:").map(|k| k * 1024.0),
            open_fds,
            max_fds,
        }
    }
}

/// User plus system CPU seconds, and the start time in ticks since boot. The command
/// name (field 2) is in parentheses and may hold spaces, so fields are counted after
/// its closing parenthesis.
fn stat_times(stat: &str) -> (Option<f64>, Option<f64>) {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return (None, None);
    };
    // rest starts at field 3 (state); utime, stime and starttime are fields 14, 15, 22.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    let cpu = field(14)
        .zip(field(15))
        .map(|(user, system)| (user + system) / TICKS_PER_SECOND);
    (cpu, field(22))
}

fn boot_time(proc_stat: &str) -> Option<f64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn status_kib(status: &str, key: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn max_open_files(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    // "Max open files  <soft> <hard> files": the soft limit is what the process meets.
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: Option<f64>,
) -> Result<(), std::fmt::Error> {
    if let Some(value) = value {
        let metric = ConstGauge::new(value);
        metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)?;
    }
    Ok(())
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sample = ProcessSample::read();
        if let Some(cpu) = sample.cpu_seconds {
            let metric = ConstCounter::new(cpu);
            metric.encode(encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent in seconds",
                Some(&Unit::Seconds),
                metric.metric_type(),
            )?)?;
        }
        let e = &mut encoder;
        gauge(
            e,
            "process_max_fds",
            "Maximum number of open file descriptors",
            None,
            sample.max_fds,
        )?;
        gauge(
            e,
            "process_open_fds",
            "Number of open file descriptors",
            None,
            sample.open_fds,
        )?;
        gauge(
            e,
            "process_resident_memory",
            "Resident memory size in bytes",
            Some(&Unit::Bytes),
            sample.resident_bytes,
        )?;
        gauge(
            e,
            "process_start_time",
            "Start time of the process since unix epoch in seconds",
            Some(&Unit::Seconds),
            sample.start_time_seconds,
        )?;
        gauge(
            e,
            "process_virtual_memory",
            "Virtual memory size in bytes",
            Some(&Unit::Bytes),
            sample.virtual_bytes,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 12345 1000 10";
        assert_eq!(stat_times(stat), (Some(3.0), Some(12345.0)));
        assert_eq!(boot_time("cpu 1 2\nbtime 1700000000\n"), Some(1.7e9));
        assert_eq!(status_kib("VmRSS:\t  2048 kB\n", "VmRSS:"), Some(2048.0));
        let limits = "Limit Soft Hard Units\nMax open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024.0));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_read_from_proc() {
        let sample = ProcessSample::read();
        assert!(sample.cpu_seconds.is_some_and(|c| c >= 0.0));
        assert!(sample.resident_bytes.is_some_and(|r| r > 0.0));
        assert!(sample.open_fds.is_some_and(|n| n >= 1.0));
        assert!(sample.start_time_seconds.is_some_and(|t| t > 1.6e9));
    }
}
