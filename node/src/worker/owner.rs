//! What a node owner limits: fuel per second, and `--idle-only` (run only
//! while the owner's machine is otherwise idle).
//!
//! Both refuse a request before it runs (503 marked not-run, so a router
//! tries another worker); neither ever stops an invocation that started.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A token bucket of fuel: refilled at `rate` per second, holding at most
/// one second of it. An invocation may start while the bucket is above
/// zero and is charged its fuel when it ends, so over any window the fuel
/// burned is at most `rate × window + one second's burst + what the
/// invocations in flight at its end burn`.
pub struct FuelRate {
    rate: u64,
    bucket: Mutex<Bucket>,
}

struct Bucket {
    /// Fuel available; negative after an invocation burned more than was
    /// left (it is paid back by the refill before the next one starts).
    tokens: i128,
    at: Instant,
}

impl FuelRate {
    /// A cap of `rate` fuel per second (`rate` ≥ 1).
    pub fn new(rate: u64) -> FuelRate {
        FuelRate::starting_at(rate, Instant::now())
    }

    fn starting_at(rate: u64, at: Instant) -> FuelRate {
        let rate = rate.max(1);
        FuelRate {
            rate,
            bucket: Mutex::new(Bucket {
                tokens: i128::from(rate),
                at,
            }),
        }
    }

    /// Whether an invocation may start now; if not, how long until it may.
    pub fn admit(&self) -> Result<(), Duration> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Result<(), Duration> {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(bucket.at);
        bucket.at = now;
        let refill = i128::from(self.rate) * elapsed.as_nanos() as i128 / 1_000_000_000;
        bucket.tokens = (bucket.tokens + refill).min(i128::from(self.rate));
        if bucket.tokens > 0 {
            return Ok(());
        }
        let missing = u64::try_from(1 - bucket.tokens).unwrap_or(u64::MAX);
        let nanos = u128::from(missing) * 1_000_000_000 / u128::from(self.rate);
        Err(Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(u64::MAX),
        ))
    }

    /// Charges the fuel an invocation burned.
    pub fn charge(&self, fuel: u64) {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        bucket.tokens -= i128::from(fuel);
    }
}

/// When `--idle-only` backs off and resumes, as shares of the whole
/// machine's CPU time used by other processes.
#[derive(Clone, Copy, Debug)]
pub struct IdlePolicy {
    /// Back off once others use more than this share (0..1) over a sample.
    pub busy_above: f64,
    /// Resume once others use less than this share ...
    pub idle_below: f64,
    /// ... for this many samples in a row.
    pub idle_samples: u32,
    /// How long one sample lasts.
    pub sample: Duration,
}

impl Default for IdlePolicy {
    fn default() -> Self {
        IdlePolicy {
            busy_above: 0.5,
            idle_below: 0.25,
            idle_samples: 3,
            sample: Duration::from_secs(1),
        }
    }
}

/// Watches the host's CPU load apart from this process's own, and says
/// whether the worker should take requests. A thread samples
/// `/proc/stat` (the machine) and `/proc/self/stat` (this process): what
/// the machine did minus what this process did is the owner's own use.
pub struct IdleWatch {
    backing_off: AtomicBool,
    /// Others' share of the machine in the last sample, in 1/1000.
    others_permille: AtomicU32,
}

impl IdleWatch {
    /// Starts the sampling thread. Fails where `/proc` cannot be read
    /// (not Linux), so `--idle-only` is never silently ignored.
    pub fn start(policy: IdlePolicy) -> std::io::Result<std::sync::Arc<IdleWatch>> {
        let first = Sample::read()?;
        let watch = std::sync::Arc::new(IdleWatch {
            backing_off: AtomicBool::new(false),
            others_permille: AtomicU32::new(0),
        });
        let weak = std::sync::Arc::downgrade(&watch);
        std::thread::Builder::new()
            .name("idle-watch".into())
            .spawn(move || sample_loop(weak, policy, first))?;
        Ok(watch)
    }

    /// Whether the owner is using the machine (requests are refused).
    pub fn backing_off(&self) -> bool {
        self.backing_off.load(Ordering::Relaxed)
    }

    /// Other processes' share of the machine's CPU in the last sample.
    pub fn others_load(&self) -> f64 {
        f64::from(self.others_permille.load(Ordering::Relaxed)) / 1000.0
    }
}

fn sample_loop(watch: std::sync::Weak<IdleWatch>, policy: IdlePolicy, mut last: Sample) {
    let mut hysteresis = Hysteresis::new(policy);
    loop {
        std::thread::sleep(policy.sample);
        // The worker is gone: stop sampling.
        let Some(watch) = watch.upgrade() else { return };
        let Ok(now) = Sample::read() else { continue };
        let others = now.others_share_since(&last);
        last = now;
        watch
            .others_permille
            .store((others * 1000.0) as u32, Ordering::Relaxed);
        match hysteresis.observe(others) {
            Some(true) => tracing::info!(
                others_load = others,
                "the owner is using this machine; taking no requests until it is idle"
            ),
            Some(false) => {
                tracing::info!(others_load = others, "the machine is idle; taking requests")
            }
            None => {}
        }
        watch
            .backing_off
            .store(hysteresis.backing_off, Ordering::Relaxed);
    }
}

/// The back-off decision, apart from where samples come from: back off at
/// once above `busy_above`, resume only after `idle_samples` samples in a
/// row below `idle_below`, so a worker does not flap around one threshold.
struct Hysteresis {
    policy: IdlePolicy,
    backing_off: bool,
    idle_run: u32,
}

impl Hysteresis {
    fn new(policy: IdlePolicy) -> Hysteresis {
        Hysteresis {
            policy,
            backing_off: false,
            idle_run: 0,
        }
    }

    /// Takes one sample of others' load; `Some(backing_off)` when that
    /// changed.
    fn observe(&mut self, others: f64) -> Option<bool> {
        if !self.backing_off {
            if others > self.policy.busy_above {
                self.backing_off = true;
                self.idle_run = 0;
                return Some(true);
            }
            return None;
        }
        self.idle_run = if others < self.policy.idle_below {
            self.idle_run + 1
        } else {
            0
        };
        if self.idle_run >= self.policy.idle_samples {
            self.backing_off = false;
            return Some(false);
        }
        None
    }
}

/// The sum of the first `fields` of utime, stime, cutime and cstime in a
/// `/proc/<pid>/stat` line.
fn process_ticks(stat: &str, fields: usize) -> Option<u64> {
    // Fields after the command name (which may hold spaces) start at field
    // 3; utime, stime, cutime and cstime are fields 14 to 17.
    let (_, after) = stat.rsplit_once(')')?;
    let values: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(fields)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    (values.len() == fields).then(|| values.iter().sum())
}

/// CPU time counters, in clock ticks.
struct Sample {
    /// The machine: busy and total over all CPUs.
    busy: u64,
    total: u64,
    /// This process, its children waited for and its compile children
    /// running: user + system.
    own: u64,
}

impl Sample {
    fn read() -> std::io::Result<Sample> {
        Sample::read_with_children(&bonus_runtime::child::running_children())
    }

    /// `children`: this process's own children running now (compile
    /// children), whose CPU time is this process's own use. Read after this
    /// process's own counters, so that a child waited for in between is
    /// counted in neither rather than in both (one sample then shows a
    /// little less of the owner's use, never more).
    fn read_with_children(children: &[u32]) -> std::io::Result<Sample> {
        let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        let stat = std::fs::read_to_string("/proc/stat")?;
        let cpu = stat
            .lines()
            .find(|l| l.starts_with("cpu "))
            .ok_or_else(|| invalid("/proc/stat has no cpu line"))?;
        // user nice system idle iowait irq softirq steal (guest time is
        // already inside user and nice).
        let fields: Vec<u64> = cpu
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        if fields.len() < 5 {
            return Err(invalid("/proc/stat's cpu line is short"));
        }
        let idle = fields[3] + fields[4];
        let total: u64 = fields.iter().sum();
        let own_stat = std::fs::read_to_string("/proc/self/stat")?;
        // utime, stime, and the children waited for: cutime, cstime.
        let own =
            process_ticks(&own_stat, 4).ok_or_else(|| invalid("/proc/self/stat is malformed"))?;
        let running: u64 = children
            .iter()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
            .filter_map(|stat| process_ticks(&stat, 2))
            .sum();
        Ok(Sample {
            busy: total - idle,
            total,
            own: own + running,
        })
    }

    fn others_share_since(&self, before: &Sample) -> f64 {
        let total = self.total.saturating_sub(before.total);
        if total == 0 {
            return 0.0;
        }
        let busy = self.busy.saturating_sub(before.busy);
        let own = self.own.saturating_sub(before.own);
        busy.saturating_sub(own) as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fuel_rate_refuses_once_a_second_is_spent_and_refills() {
        let start = Instant::now();
        let rate = FuelRate::starting_at(1_000_000, start);
        assert!(rate.admit_at(start).is_ok());
        rate.charge(600_000);
        assert!(rate.admit_at(start).is_ok(), "400 000 fuel left");
        rate.charge(900_000);
        // 500 000 in debt: half a second to pay it back, and one more fuel.
        let wait = rate.admit_at(start).expect_err("the bucket is empty");
        assert!(
            wait >= Duration::from_millis(500) && wait < Duration::from_millis(501),
            "{wait:?}"
        );
        assert!(rate.admit_at(start + Duration::from_millis(400)).is_err());
        assert!(rate.admit_at(start + Duration::from_millis(501)).is_ok());
        // Refill never holds more than one second.
        let later = start + Duration::from_secs(60);
        assert!(rate.admit_at(later).is_ok());
        rate.charge(1_000_000);
        assert!(rate.admit_at(later).is_err(), "the burst is one second");
    }

    #[test]
    fn over_ten_seconds_the_fuel_burned_stays_at_the_rate() {
        let start = Instant::now();
        let rate = FuelRate::starting_at(100_000, start);
        let mut burned = 0u64;
        // Invocations of 7 000 fuel offered every millisecond.
        for ms in 0..10_000 {
            if rate.admit_at(start + Duration::from_millis(ms)).is_ok() {
                rate.charge(7_000);
                burned += 7_000;
            }
        }
        // 10 s × 100 000 + the first second's burst + one invocation.
        assert!(burned <= 1_100_000 + 7_000, "{burned}");
        assert!(burned >= 1_000_000, "{burned}");
    }

    #[test]
    fn backs_off_at_once_and_resumes_only_after_a_quiet_run() {
        let mut h = Hysteresis::new(IdlePolicy::default());
        assert_eq!(h.observe(0.4), None, "0.4 is below the 0.5 threshold");
        assert_eq!(h.observe(0.6), Some(true));
        assert_eq!(h.observe(0.1), None);
        assert_eq!(h.observe(0.1), None);
        assert_eq!(h.observe(0.3), None, "0.3 is not idle: the run restarts");
        assert_eq!(h.observe(0.1), None);
        assert_eq!(h.observe(0.1), None);
        assert_eq!(h.observe(0.1), Some(false), "three quiet samples in a row");
        assert!(!h.backing_off);
    }

    /// A compile child's CPU time is the worker's own, not the owner's: an
    /// idle-only worker must not back off from its own compile.
    #[test]
    fn a_running_compile_child_counts_as_this_process() {
        let mut busy = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("spawning sh");
        let pid = busy.id();
        let deadline = Instant::now() + Duration::from_secs(60);
        let ran = loop {
            let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| process_ticks(&stat, 2))
                .unwrap_or(0);
            if ticks >= 20 || Instant::now() > deadline {
                break ticks;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let listed = Sample::read_with_children(&[pid]).expect("reading /proc");
        let unlisted = Sample::read_with_children(&[]).expect("reading /proc");
        let _ = busy.kill();
        let _ = busy.wait();
        assert!(ran >= 20, "the busy child never ran ({ran} ticks)");
        assert!(
            listed.own >= unlisted.own + ran,
            "a listed child's {ran} ticks are this process's: {} against {}",
            listed.own,
            unlisted.own
        );
    }

    /// A CPU-bound process makes an idle-only worker back off; once it is
    /// gone, the worker resumes. Real `/proc`, real busy processes.
    #[test]
    fn idle_only_backs_off_under_a_cpu_bound_process_and_resumes() {
        let policy = IdlePolicy {
            sample: Duration::from_millis(250),
            ..IdlePolicy::default()
        };
        // Others' load before the test: with the machine already busy
        // (another build, another test binary) there is nothing to measure
        // the busy loops against, and no idle to resume to.
        let before = Sample::read().expect("reading /proc");
        std::thread::sleep(Duration::from_secs(1));
        let baseline = Sample::read()
            .expect("reading /proc")
            .others_share_since(&before);
        if baseline >= policy.idle_below {
            eprintln!("skipped: the machine is already {baseline:.2} busy with other processes");
            return;
        }
        let watch = IdleWatch::start(policy).expect("reading /proc");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let wait_for = |want: bool, within: Duration| {
            let deadline = Instant::now() + within;
            while Instant::now() < deadline {
                if watch.backing_off() == want {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        };
        // One busy loop per core: the owner is using the machine.
        let mut busy: Vec<std::process::Child> = (0..cores)
            .map(|_| {
                std::process::Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .spawn()
                    .expect("spawning sh")
            })
            .collect();
        let backed_off = wait_for(true, Duration::from_secs(30));
        let load = watch.others_load();
        for child in &mut busy {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(
            backed_off,
            "no back-off under {cores} busy processes ({load})"
        );
        assert!(
            wait_for(false, Duration::from_secs(60)),
            "the worker did not resume once the busy processes ended ({})",
            watch.others_load()
        );
    }
}
