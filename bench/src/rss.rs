//! Memory and CPU of service processes while a task runs: a thread samples
//! `/proc/<pid>/status` (VmRSS) every few milliseconds, and the kernel's own peak (VmHWM),
//! reset at the start through `/proc/<pid>/clear_refs`, catches what falls between samples.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A process to watch, by name and pid.
#[derive(Debug, Clone)]
pub struct Watched {
    pub name: &'static str,
    pub pid: u32,
}

/// What one process used while watched.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Highest VmRSS sampled, KiB.
    pub sampled_peak_kib: u64,
    /// VmHWM at the end, KiB: the peak since the reset at the start (or since the process
    /// started, when the reset was refused).
    pub hwm_kib: u64,
    /// Whether VmHWM was reset at the start.
    pub hwm_reset: bool,
    /// CPU time (user + system) spent while watched, seconds.
    pub cpu_s: f64,
}

impl Usage {
    /// The peak to report, MiB: the kernel's when it covers only the watched span.
    pub fn peak_mib(&self) -> f64 {
        let kib = if self.hwm_reset {
            self.sampled_peak_kib.max(self.hwm_kib)
        } else {
            self.sampled_peak_kib
        };
        kib as f64 / 1024.0
    }
}

pub struct Watch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Usage>>,
    watched: Vec<Watched>,
}

impl Watch {
    pub fn start(watched: Vec<Watched>, every: Duration) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let pids: Vec<u32> = watched.iter().map(|w| w.pid).collect();
        let thread = std::thread::spawn(move || {
            let ticks = clock_ticks();
            let mut usage: Vec<Usage> = pids
                .iter()
                .map(|&pid| Usage {
                    hwm_reset: reset_hwm(pid),
                    // Held negative until the end adds the final reading.
                    cpu_s: -(cpu_ticks(pid).unwrap_or(0) as f64),
                    ..Usage::default()
                })
                .collect();
            loop {
                for (u, &pid) in usage.iter_mut().zip(&pids) {
                    if let Some(rss) = status_kib(pid, "VmRSS:") {
                        u.sampled_peak_kib = u.sampled_peak_kib.max(rss);
                    }
                }
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(every);
            }
            for (u, &pid) in usage.iter_mut().zip(&pids) {
                u.hwm_kib = status_kib(pid, "VmHWM:").unwrap_or(0);
                u.cpu_s = (u.cpu_s + cpu_ticks(pid).unwrap_or(0) as f64) / ticks;
            }
            usage
        });
        Watch {
            stop,
            thread,
            watched,
        }
    }

    /// Stops sampling; one `Usage` per watched process, in the order given.
    pub fn finish(self) -> Vec<(Watched, Usage)> {
        self.stop.store(true, Ordering::Relaxed);
        let usage = self.thread.join().unwrap_or_default();
        self.watched.into_iter().zip(usage).collect()
    }
}

/// A `kB` line of `/proc/<pid>/status`.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// Writing 5 to `clear_refs` resets the process's VmHWM to its current RSS.
fn reset_hwm(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), b"5").is_ok()
}

/// utime + stime of `/proc/<pid>/stat`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 when unknown.
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let me = std::process::id();
        assert!(status_kib(me, "VmRSS:").unwrap() > 0);
        assert!(cpu_ticks(me).is_some());
        let watch = Watch::start(
            vec![Watched {
                name: "self",
                pid: me,
            }],
            Duration::from_millis(1),
        );
        std::thread::sleep(Duration::from_millis(10));
        let usage = watch.finish();
        assert_eq!(usage.len(), 1);
        assert!(usage[0].1.peak_mib() > 0.0);
    }
}
