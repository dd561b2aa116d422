//! Choosing a manifest (traffic split) and a worker (nearest, then warm,
//! then least loaded). The choices are pure functions of their inputs and
//! one random number, so they are tested without sockets.

use crate::limits::{
    SPILL_OUTSTANDING, WARM_BUSY_OUTSTANDING, WARM_FOR, WARM_MANIFESTS_MAX, WARM_RTT_SLACK_US,
};
use bonus_ids::{ManifestId, PublicKey};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// Weight of a new RTT sample in the moving average, in tenths.
const EWMA_NEW_TENTHS: u64 = 3;

/// What the router knows of one worker's health. Shared by the probe task
/// (writes RTT and health), the forwarding path (marks it down on a failed
/// connection, counts outstanding requests) and the status page. Lives as
/// long as the worker stays in the route table (carried across swaps).
#[derive(Debug, Default)]
pub(crate) struct WorkerHealth {
    /// The last probe (or forward) succeeded. New workers start down: the
    /// router sends nothing to an endpoint it has not heard from.
    healthy: AtomicBool,
    /// Moving average of the probe round trip, µs; 0 before the first.
    rtt_us: AtomicU64,
    /// Forwards in flight (until their response body ends).
    pub outstanding: AtomicU64,
    /// A probe is in flight: the next tick skips this worker.
    pub probing: AtomicBool,
    /// The manifests this worker answered most recently, with when: it
    /// holds their code compiled.
    warm: Mutex<Vec<(ManifestId, Instant)>>,
}

impl WorkerHealth {
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// The RTT average, if any probe ever succeeded.
    pub(crate) fn rtt_us(&self) -> Option<u64> {
        Some(self.rtt_us.load(Ordering::Relaxed)).filter(|rtt| *rtt > 0)
    }

    /// A probe answered in `rtt_us`; whether the worker was down.
    pub(crate) fn probe_succeeded(&self, rtt_us: u64) -> bool {
        let sample = rtt_us.max(1);
        let average = match self.rtt_us() {
            None => sample,
            Some(old) => (old * (10 - EWMA_NEW_TENTHS) + sample * EWMA_NEW_TENTHS).div_ceil(10),
        };
        self.rtt_us.store(average, Ordering::Relaxed);
        !self.healthy.swap(true, Ordering::Relaxed)
    }

    /// The worker ran `manifest_id` (answered without refusing to run it):
    /// its code is loaded there now.
    pub(crate) fn served(&self, manifest_id: ManifestId) {
        let now = Instant::now();
        let mut warm = self.warm.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = warm.iter_mut().find(|(m, _)| *m == manifest_id) {
            entry.1 = now;
        } else if warm.len() < WARM_MANIFESTS_MAX {
            warm.push((manifest_id, now));
        } else if let Some(oldest) = warm.iter_mut().min_by_key(|(_, at)| *at) {
            *oldest = (manifest_id, now);
        }
    }

    /// Whether the worker answered `manifest_id` in the last [`WARM_FOR`].
    pub(crate) fn is_warm(&self, manifest_id: &ManifestId) -> bool {
        let warm = self.warm.lock().unwrap_or_else(|e| e.into_inner());
        warm.iter()
            .any(|(m, at)| m == manifest_id && at.elapsed() < WARM_FOR)
    }

    /// A probe failed, or a connection to the worker could not be made;
    /// whether the worker was up.
    pub(crate) fn mark_down(&self) -> bool {
        self.healthy.swap(false, Ordering::Relaxed)
    }
}

/// Cheap, lock-free randomness for splits and tie-breaks: splitmix64 over
/// a shared counter. Not for secrets.
#[derive(Debug)]
pub(crate) struct Rng {
    state: AtomicU64,
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng {
            state: AtomicU64::new(seed),
        }
    }

    pub(crate) fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Index of the item picked by weight, `random` uniform over u64. `None`
/// when every weight is zero.
pub(crate) fn pick_weighted(
    weights: impl Iterator<Item = u32> + Clone,
    random: u64,
) -> Option<usize> {
    let total: u64 = weights.clone().map(u64::from).sum();
    if total == 0 {
        return None;
    }
    let mut point = random % total;
    for (index, weight) in weights.enumerate() {
        let weight = u64::from(weight);
        if point < weight {
            return Some(index);
        }
        point -= weight;
    }
    debug_assert!(false, "a point below the total falls in some weight");
    None
}

/// One worker that may serve the request: healthy, cheap enough, untried.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Candidate {
    pub key: PublicKey,
    pub rtt_us: u64,
    pub outstanding: u64,
    /// It answered this manifest recently ([`WorkerHealth::is_warm`]).
    pub warm: bool,
}

/// The worker to send a request for `manifest_id` to, as an index into
/// `candidates`:
/// 1. the near set: RTT ≤ 1.5 × the smallest + 300 µs (nearest first);
/// 2. within it, the two with the highest rendezvous hash of (manifest,
///    worker), so a function stays warm on few workers;
/// 3. of those two, the one with fewer requests outstanding, the first on
///    a tie (so at low load a function runs on one warm worker: measured,
///    alternating between two idle workers added ~110 µs per request), or
///    a third random near worker if both are busy;
/// 4. if that worker is cold for the manifest, a warm one instead, if one
///    is within [`WARM_RTT_SLACK_US`] of the nearest and has fewer than
///    [`WARM_BUSY_OUTSTANDING`] requests in flight: a cold
///    start costs a compile (0.1–3 s), far more than a millisecond or two
///    of round trip. A compile also slows the probes of the worker doing
///    it, so without this a function's second request went to another,
///    cold worker, which then compiled it too.
pub(crate) fn choose(
    manifest_id: &ManifestId,
    candidates: &[Candidate],
    random: u64,
) -> Option<usize> {
    let rtt_min = candidates.iter().map(|c| c.rtt_us).min()?;
    // rtt ≤ 1.5 × min + 300, in integers.
    let near_max = rtt_min.saturating_mul(3).saturating_add(600);
    let mut near: Vec<(u64, usize)> = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.rtt_us.saturating_mul(2) <= near_max)
        .map(|(index, c)| (rendezvous(manifest_id, &c.key), index))
        .collect();
    near.sort_unstable_by(|a, b| b.cmp(a));
    let mut best = near.first()?.1;
    if let Some(&(_, second)) = near.get(1) {
        let (a, b) = (candidates[best].outstanding, candidates[second].outstanding);
        if b < a {
            best = second;
        }
    }
    if candidates[best].outstanding >= SPILL_OUTSTANDING && near.len() > 2 {
        let spill = near[2 + ((random >> 1) % (near.len() as u64 - 2)) as usize].1;
        if candidates[spill].outstanding < candidates[best].outstanding {
            best = spill;
        }
    }
    if !candidates[best].warm {
        let warm_max = rtt_min.saturating_mul(2).saturating_add(WARM_RTT_SLACK_US);
        let warm = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.warm && c.rtt_us <= warm_max && c.outstanding < WARM_BUSY_OUTSTANDING
            })
            .max_by_key(|(_, c)| rendezvous(manifest_id, &c.key));
        if let Some((index, _)) = warm {
            best = index;
        }
    }
    Some(best)
}

/// Rendezvous (highest random weight) score of a worker for a manifest.
fn rendezvous(manifest_id: &ManifestId, worker: &PublicKey) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(manifest_id.as_bytes());
    hasher.update(worker.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bonus_ids::SecretKey;

    fn key(seed: u8) -> PublicKey {
        SecretKey::from_seed([seed; 32]).public()
    }

    fn candidate(seed: u8, rtt_us: u64, outstanding: u64) -> Candidate {
        Candidate {
            key: key(seed),
            rtt_us,
            outstanding,
            warm: false,
        }
    }

    fn counts(manifest_id: &ManifestId, candidates: &[Candidate], rounds: u64) -> Vec<u64> {
        let rng = Rng::new(7);
        let mut counts = vec![0; candidates.len()];
        for _ in 0..rounds {
            let index = choose(manifest_id, candidates, rng.next_u64()).expect("a candidate");
            counts[index] += 1;
        }
        counts
    }

    #[test]
    fn far_workers_are_never_chosen_while_a_near_one_is_healthy() {
        let manifest_id = ManifestId::of(b"m");
        let candidates = [candidate(1, 20_300, 0), candidate(2, 300, 0)];
        assert_eq!(counts(&manifest_id, &candidates, 1000), [0, 1000]);
        // 1.5 × 300 + 300 = 750 µs: a worker at 750 is near (it takes the
        // load off a busier near one), at 751 is not (nothing spills to it).
        let edge = [
            candidate(1, 300, 1),
            candidate(2, 750, 0),
            candidate(3, 751, 0),
        ];
        assert_eq!(counts(&manifest_id, &edge, 1000), [0, 1000, 0]);
        let busy = [
            candidate(1, 300, SPILL_OUTSTANDING),
            candidate(2, 750, SPILL_OUTSTANDING),
            candidate(3, 751, 0),
        ];
        assert_eq!(counts(&manifest_id, &busy, 1000)[2], 0);
    }

    #[test]
    fn an_idle_function_stays_on_its_first_rendezvous_worker() {
        let manifest_id = ManifestId::of(b"warm");
        let candidates: Vec<Candidate> = (1..=6).map(|seed| candidate(seed, 500, 0)).collect();
        let counts = counts(&manifest_id, &candidates, 1000);
        let used: Vec<u64> = counts.iter().copied().filter(|c| *c > 0).collect();
        assert_eq!(used, [1000], "ties go to the first: {counts:?}");
        // Another manifest lands elsewhere (with these keys, not on the same pair).
        let other = pair(&ManifestId::of(b"other"), &candidates);
        let this = pair(&manifest_id, &candidates);
        assert_ne!(this, other);
    }

    /// The two rendezvous workers of `manifest_id`, first then second: the
    /// first alone when idle, the second once the first has a request.
    fn pair(manifest_id: &ManifestId, candidates: &[Candidate]) -> [usize; 2] {
        let first = choose(manifest_id, candidates, 0).expect("a candidate");
        let mut loaded = candidates.to_vec();
        loaded[first].outstanding = 1;
        let second = choose(manifest_id, &loaded, 0).expect("a candidate");
        assert_ne!(first, second);
        [first, second]
    }

    #[test]
    fn the_less_loaded_warm_worker_wins_and_busy_ones_spill() {
        let manifest_id = ManifestId::of(b"load");
        let mut candidates: Vec<Candidate> = (1..=4).map(|seed| candidate(seed, 500, 0)).collect();
        let pair = pair(&manifest_id, &candidates);
        candidates[pair[0]].outstanding = 3;
        assert_eq!(counts(&manifest_id, &candidates, 100)[pair[1]], 100);
        for index in &pair {
            candidates[*index].outstanding = SPILL_OUTSTANDING;
        }
        let counts = counts(&manifest_id, &candidates, 100);
        assert_eq!(counts[pair[0]] + counts[pair[1]], 0, "{counts:?}");
    }

    #[test]
    fn a_warm_worker_beats_a_slightly_nearer_cold_one_but_not_a_far_or_busy_one() {
        let manifest_id = ManifestId::of(b"compiled once");
        // The cold worker is nearest and first by rendezvous or not: the
        // warm one within the slack wins either way.
        for (cold, warm) in [(1, 2), (2, 1)] {
            let mut candidates = [candidate(cold, 300, 0), candidate(warm, 2_500, 0)];
            candidates[1].warm = true;
            assert_eq!(counts(&manifest_id, &candidates, 100), [0, 100]);
            // Another region: the cold near worker, even if it must compile.
            candidates[1].rtt_us = 2 * 300 + WARM_RTT_SLACK_US + 1;
            assert_eq!(counts(&manifest_id, &candidates, 100), [100, 0]);
            // Busy: the cold worker takes the load, and warms up.
            candidates[1].rtt_us = 300;
            candidates[1].outstanding = WARM_BUSY_OUTSTANDING;
            assert_eq!(counts(&manifest_id, &candidates, 100), [100, 0]);
            candidates[1].outstanding = WARM_BUSY_OUTSTANDING - 1;
            assert_eq!(counts(&manifest_id, &candidates, 100), [0, 100]);
        }
    }

    #[test]
    fn a_worker_is_warm_for_what_it_served_recently() {
        let health = WorkerHealth::default();
        let (a, b) = (ManifestId::of(b"a"), ManifestId::of(b"b"));
        assert!(!health.is_warm(&a));
        health.served(a);
        assert!(health.is_warm(&a) && !health.is_warm(&b));
        // Past its capacity it forgets the least recently served.
        for n in 0..WARM_MANIFESTS_MAX {
            health.served(ManifestId::of(&n.to_le_bytes()));
        }
        assert!(!health.is_warm(&a));
        assert!(health.is_warm(&ManifestId::of(&0usize.to_le_bytes())));
    }

    #[test]
    fn no_candidate_no_choice() {
        assert_eq!(choose(&ManifestId::of(b"m"), &[], 1), None);
    }

    #[test]
    fn weights_split_traffic() {
        let rng = Rng::new(1);
        let mut hits = [0u32; 3];
        for _ in 0..10_000 {
            let index = pick_weighted([9u32, 1, 0].into_iter(), rng.next_u64()).expect("weight");
            hits[index] += 1;
        }
        assert!((8_800..=9_200).contains(&hits[0]), "{hits:?}");
        assert_eq!(hits[2], 0);
        assert_eq!(pick_weighted([0u32, 0].into_iter(), 5), None);
    }

    #[test]
    fn rtt_is_a_moving_average_and_health_follows_probes() {
        let health = WorkerHealth::default();
        assert!(!health.is_healthy());
        assert_eq!(health.rtt_us(), None);
        health.probe_succeeded(1000);
        assert_eq!(health.rtt_us(), Some(1000));
        health.probe_succeeded(2000);
        assert_eq!(health.rtt_us(), Some(1300));
        assert!(health.is_healthy());
        health.mark_down();
        assert!(!health.is_healthy());
    }
}
