//! Per-invocation limits and the node-wide bounds that cap them.

use std::time::Duration;

/// Granularity of wall-clock deadlines: the engine's epoch advances this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// On the baseline (Winch) tier, which has no epochs, a guest yields to
/// other requests after burning this much fuel (about a millisecond), and
/// the host's deadline timer can end it there.
pub const BASELINE_YIELD_FUEL: u64 = 1_000_000;

/// Largest linear memory any guest may have on this node; the pooling
/// allocator reserves slots of this size.
pub const MEMORY_BYTES_MAX: u64 = 1 << 30;

/// Most table elements any guest table may have.
pub const TABLE_ELEMENTS_MAX: u32 = 1 << 20;

/// Most bytes kept per stream (stdout, stderr) per invocation.
pub const LOG_BYTES_MAX: u32 = 1 << 20;

const _: () = assert!(EPOCH_TICK.as_millis() > 0);
const _: () = assert!(Limits::DEFAULT.memory_bytes_max <= MEMORY_BYTES_MAX);
const _: () = assert!(Limits::DEFAULT.table_elements_max <= TABLE_ELEMENTS_MAX);
const _: () = assert!(Limits::DEFAULT.log_bytes_max <= LOG_BYTES_MAX);

/// What one invocation may consume. Set by the caller (later by the
/// manifest), then capped by the node with [`Limits::capped_by`].
///
/// Every field is a hard bound: reaching it ends the invocation with the
/// matching [`Outcome`](crate::Outcome), never a host panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Fuel budget: roughly one unit per wasm instruction; the billed unit.
    pub fuel_max: u64,
    /// Wall-clock deadline for the whole invocation, including host waits.
    pub deadline: Duration,
    /// Largest linear memory, in bytes, of any one memory of the guest.
    pub memory_bytes_max: u64,
    /// Most elements of any one table of the guest.
    pub table_elements_max: u32,
    /// Largest request body passed to the guest.
    pub request_body_bytes_max: u64,
    /// Largest response body accepted from the guest.
    pub response_body_bytes_max: u64,
    /// Most bytes of stdout and of stderr kept (the rest is counted, not kept).
    pub log_bytes_max: u32,
}

impl Limits {
    /// Defaults for a single function served locally.
    pub const DEFAULT: Limits = Limits {
        fuel_max: 10_000_000_000,
        deadline: Duration::from_secs(10),
        memory_bytes_max: 128 << 20,
        table_elements_max: 100_000,
        request_body_bytes_max: 10 << 20,
        response_body_bytes_max: 32 << 20,
        log_bytes_max: 64 << 10,
    };

    /// The smaller of each field of `self` and `node`.
    pub fn capped_by(&self, node: &Limits) -> Limits {
        Limits {
            fuel_max: self.fuel_max.min(node.fuel_max),
            deadline: self.deadline.min(node.deadline),
            memory_bytes_max: self
                .memory_bytes_max
                .min(node.memory_bytes_max)
                .min(MEMORY_BYTES_MAX),
            table_elements_max: self
                .table_elements_max
                .min(node.table_elements_max)
                .min(TABLE_ELEMENTS_MAX),
            request_body_bytes_max: self.request_body_bytes_max.min(node.request_body_bytes_max),
            response_body_bytes_max: self
                .response_body_bytes_max
                .min(node.response_body_bytes_max),
            log_bytes_max: self
                .log_bytes_max
                .min(node.log_bytes_max)
                .min(LOG_BYTES_MAX),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_by_takes_the_smaller_field() {
        let node = Limits {
            fuel_max: 5,
            deadline: Duration::from_secs(1),
            ..Limits::DEFAULT
        };
        let asked = Limits {
            fuel_max: 100,
            memory_bytes_max: 1 << 20,
            ..Limits::DEFAULT
        };
        let got = asked.capped_by(&node);
        assert_eq!(got.fuel_max, 5);
        assert_eq!(got.deadline, Duration::from_secs(1));
        assert_eq!(got.memory_bytes_max, 1 << 20);
    }
}
