//! What a process reports about itself and its disks, read at scrape time from `/proc`
//! and `statvfs(3)`: resident memory, open and allowed file descriptors, start time, and
//! free and total bytes of each data directory's file system. Nothing is cached; a value
//! that cannot be read is left out of that scrape rather than reported as zero.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

/// Resident memory, open files and start time of this process (`process_*`, the names
/// every Prometheus client library uses).
#[derive(Debug)]
pub struct Process {
    started_s: f64,
}

impl Default for Process {
    fn default() -> Self {
        let started_s = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        Self { started_s }
    }
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    let metric = encoder.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(metric)
}

/// Resident set size in bytes (`/proc/self/statm`'s second field, in pages).
fn resident_bytes() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page_bytes = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (page_bytes > 0).then_some(pages * page_bytes as f64)
}

fn open_fds() -> Option<f64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as f64)
}

fn max_fds() -> Option<f64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes only into `limit`, a valid rlimit we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0).then_some(limit.rlim_cur as f64)
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(v) = resident_bytes() {
            gauge(&mut encoder, "process_resident_memory_bytes", "Resident memory size in bytes", v)?;
        }
        if let Some(v) = open_fds() {
            gauge(&mut encoder, "process_open_fds", "Open file descriptors", v)?;
        }
        if let Some(v) = max_fds() {
            gauge(&mut encoder, "process_max_fds", "The limit of open file descriptors", v)?;
        }
        gauge(&mut encoder, "process_start_time_seconds", "Start time since the Unix epoch", self.started_s)
    }
}

/// Free and total bytes of a file system, from `statvfs(3)`: `(available to unprivileged
/// users, total)`.
pub fn disk_space_bytes(path: &Path) -> Option<(u64, u64)> {
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain old data; all-zero is a valid value for it to overwrite.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a NUL-terminated string alive for the call; `stat` is ours.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return None;
    }
    let fragment_bytes = stat.f_frsize as u64;
    Some((stat.f_bavail as u64 * fragment_bytes, stat.f_blocks as u64 * fragment_bytes))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectoryLabels {
    directory: String,
}

/// Free and total bytes of the file systems holding these directories
/// (`mail_disk_free_bytes{directory}`, `mail_disk_size_bytes{directory}`).
#[derive(Debug)]
pub struct Disks {
    directories: Vec<PathBuf>,
}

impl Disks {
    pub fn new(directories: Vec<PathBuf>) -> Self {
        Self { directories }
    }
}

impl Collector for Disks {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let space: Vec<_> = self
            .directories
            .iter()
            .filter_map(|d| Some((DirectoryLabels { directory: d.display().to_string() }, disk_space_bytes(d)?)))
            .collect();
        for (name, help, pick) in [
            ("mail_disk_free_bytes", "Bytes free for the daemon on the file system of a data directory", 0),
            ("mail_disk_size_bytes", "Size of the file system of a data directory", 1),
        ] {
            let mut family =
                encoder.encode_descriptor(name, help, None, prometheus_client::metrics::MetricType::Gauge)?;
            for (labels, (free, size)) in &space {
                let value = if pick == 0 { *free } else { *size };
                ConstGauge::new(value as f64).encode(family.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn process_and_disk_figures_are_read_at_scrape_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Process::default()));
        registry.register_collector(Box::new(Disks::new(vec![dir.path().to_path_buf()])));
        let text = super::super::endpoint::render(&registry);
        let value = |name: &str| -> f64 {
            let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {text}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert!(value("process_resident_memory_bytes") > 1e6, "{text}");
        assert!(value("process_open_fds") >= 3.0, "{text}");
        let (free, size) = disk_space_bytes(dir.path()).unwrap();
        assert!(free > 0 && size >= free);
        assert!(value("mail_disk_size_bytes{") > 0.0, "{text}");
        assert!(text.contains(&format!("directory=\"{}\"", dir.path().display())), "{text}");
    }
}
