//! A function's recent logs for its owner (`bonus logs`): what each
//! invocation printed and how the failed ones ended, the last
//! [`LINES_PER_NAME`] lines per name on this worker.
//!
//! In memory and bounded (lines per name, bytes per line, bytes in all),
//! so a function that prints without end, or many names, cost this worker
//! a fixed amount. An
//! invocation that printed nothing and answered costs a branch: nothing
//! is locked or copied. Lines can hold secrets, so only the name's owner
//! reads them, with a signed, timed request ([`check_auth`]).

use crate::wire::{self, LogLine};
use bonus_ids::{ManifestId, PublicKey, Signature};
use bonus_runtime::{CapturedStream, Invocation, Limits, Outcome};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Lines kept per name (the oldest go first).
pub const LINES_PER_NAME: usize = 256;
/// Bytes of a stream kept per invocation (the rest is counted).
pub const LINE_BYTES_MAX: usize = 2048;
/// Bytes kept for every name together, a line's text plus
/// [`LINE_OVERHEAD`]; beyond it the oldest lines of the worker go first.
pub const TOTAL_BYTES_MAX: usize = 16 << 20;
/// What a line costs besides its text (ids, numbers, the queues' entries).
const LINE_OVERHEAD: usize = 256;
/// How far a logs request's signed time may be from this worker's clock.
pub const AUTH_WINDOW_MS: u64 = 5 * 60 * 1000;
/// Owners' logs reads remembered within [`AUTH_WINDOW_MS`] (80 bytes
/// each); past it, reads are refused until older ones expire.
pub const READS_REMEMBERED_MAX: usize = 1 << 16;

/// The recent lines of every name this worker ran.
#[derive(Default)]
pub struct RecentLogs {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The next line's number: the client asks for lines after the last
    /// one it saw (`bonus logs --follow`).
    next_seq: u64,
    names: HashMap<Arc<str>, VecDeque<LogLine>>,
    /// Every kept line's number and name, oldest first: the next to go
    /// when [`TOTAL_BYTES_MAX`] is reached (an entry whose line already
    /// went, pushed out by its name's cap, is skipped).
    order: VecDeque<(u64, Arc<str>)>,
    bytes: usize,
}

impl Inner {
    fn push(&mut self, name: &str, mut line: LogLine) {
        line.seq = self.next_seq;
        self.next_seq += 1;
        let name: Arc<str> = match self.names.get_key_value(name) {
            Some((name, _)) => name.clone(),
            None => Arc::from(name),
        };
        // A line's overhead stays charged while its entry in `order` does,
        // even after its name's cap pushed the line out: so the entries
        // too are bounded by the budget.
        self.bytes += line.text.len() + LINE_OVERHEAD;
        self.order.push_back((line.seq, name.clone()));
        let kept = self.names.entry(name.clone()).or_default();
        kept.push_back(line);
        if kept.len() > LINES_PER_NAME
            && let Some(gone) = kept.pop_front()
        {
            self.bytes -= gone.text.len();
        }
        while self.bytes > TOTAL_BYTES_MAX {
            let Some((seq, name)) = self.order.pop_front() else {
                break;
            };
            self.bytes -= LINE_OVERHEAD;
            let Some(kept) = self.names.get_mut(&name) else {
                continue;
            };
            if kept.front().is_some_and(|l| l.seq == seq)
                && let Some(gone) = kept.pop_front()
            {
                self.bytes -= gone.text.len();
            }
            if kept.is_empty() {
                self.names.remove(&name);
            }
        }
        // Entries of lines that are gone, while they are at the front.
        while let Some((seq, name)) = self.order.front() {
            let live = self
                .names
                .get(name)
                .and_then(|kept| kept.front())
                .is_some_and(|first| first.seq <= *seq);
            if live {
                break;
            }
            self.order.pop_front();
            self.bytes -= LINE_OVERHEAD;
        }
    }
}

impl RecentLogs {
    /// Keeps what `invocation` of `name` printed, and its outcome if it
    /// failed.
    pub fn record(
        &self,
        name: &str,
        manifest_id: ManifestId,
        invocation: &Invocation,
        limits: &Limits,
    ) {
        let failed = !matches!(invocation.outcome, Outcome::Ok);
        let logs = &invocation.logs;
        if !failed && logs.stdout.bytes.is_empty() && logs.stderr.bytes.is_empty() {
            return;
        }
        let time_ms = now_ms();
        let line = |stream: &str, text: String| LogLine {
            seq: 0,
            time_ms,
            request_id: invocation.request_id.to_string(),
            manifest_id: manifest_id.to_string(),
            stream: stream.to_string(),
            text,
        };
        let mut lines = Vec::with_capacity(3);
        for (stream, captured) in [("stdout", &logs.stdout), ("stderr", &logs.stderr)] {
            if !captured.bytes.is_empty() {
                lines.push(line(stream, shown(captured)));
            }
        }
        if failed {
            let outcome = &invocation.outcome;
            lines.push(line(
                "error",
                format!("{}: {}", outcome.kind(), outcome.reason(limits)),
            ));
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for line in lines {
            inner.push(name, line);
        }
    }

    /// `name`'s lines numbered `after` or later, oldest first.
    pub fn since(&self, name: &str, after: u64) -> Vec<LogLine> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .names
            .get(name)
            .map(|lines| lines.iter().filter(|l| l.seq >= after).cloned().collect())
            .unwrap_or_default()
    }
}

/// A stream's text as kept: its first [`LINE_BYTES_MAX`] bytes (cut at a
/// character), and how many more there were.
fn shown(captured: &CapturedStream) -> String {
    let bytes = &captured.bytes;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(LINE_BYTES_MAX)]);
    let hidden = bytes.len().saturating_sub(LINE_BYTES_MAX) as u64 + captured.bytes_dropped;
    let text = text.trim_end();
    match hidden {
        0 => text.to_string(),
        n => format!("{text} … ({n} more bytes not kept)"),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Why a logs request is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No or malformed header.
    #[error(
        "a logs request must be signed by the function's owner (header {header}: `<key>,<time_ms>,<signature>`); use `bonus logs`"
    )]
    Malformed {
        /// The header expected.
        header: &'static str,
    },
    /// The signed time is too far from this worker's clock.
    #[error(
        "the request's signed time is {skew_ms} ms from this worker's clock (at most {AUTH_WINDOW_MS}); check your clock"
    )]
    Stale {
        /// How far.
        skew_ms: u64,
    },
    /// The signature does not verify.
    #[error("the logs request's signature does not verify")]
    BadSignature,
    /// Signed by someone other than the owner.
    #[error("only the owner of {name:?} ({owner}) may read its logs; pass its key with --key")]
    NotOwner {
        /// The name.
        name: String,
        /// Its owner.
        owner: PublicKey,
    },
    /// This very signed request was answered already: a copy of it.
    #[error(
        "this signed logs request was already answered; sign each request anew (`bonus logs` does)"
    )]
    Replayed,
    /// The owners of this worker's names read too often.
    #[error(
        "too many logs requests in the last {} minutes; wait and retry",
        AUTH_WINDOW_MS / 60_000
    )]
    TooManyReads,
}

/// A logs request whose signature verified, for one name.
#[derive(Clone, Copy, Debug)]
pub struct SignedRead {
    /// Who signed it.
    pub signer: PublicKey,
    time_ms: u64,
    signature: Signature,
}

/// The owners' reads answered within [`AUTH_WINDOW_MS`], so that a header
/// seen on the wire cannot be sent again to read what came after it.
/// Only reads by a name's owner are remembered (see [`Self::admit`]): a
/// stranger's valid signatures over its own key cost no memory here.
#[derive(Default)]
pub struct AnsweredReads {
    /// By signed time, then signature: expired entries leave from the
    /// front.
    seen: Mutex<std::collections::BTreeSet<(u64, [u8; 64])>>,
}

impl AnsweredReads {
    /// Admits `read`, which the name's owner signed, once: a second
    /// arrival of the same request is refused.
    pub fn admit(&self, read: &SignedRead, now_ms: u64) -> Result<(), AuthError> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        // A time this old fails the freshness check before it gets here.
        let expired = now_ms.saturating_sub(AUTH_WINDOW_MS);
        while seen.first().is_some_and(|(time, _)| *time < expired) {
            seen.pop_first();
        }
        let entry = (read.time_ms, *read.signature.as_bytes());
        if seen.contains(&entry) {
            return Err(AuthError::Replayed);
        }
        if seen.len() >= READS_REMEMBERED_MAX {
            return Err(AuthError::TooManyReads);
        }
        seen.insert(entry);
        Ok(())
    }
}

/// Checks that `header` is `name`'s `owner` asking now, for the first
/// time.
pub fn check_auth(
    header: Option<&str>,
    name: &str,
    owner: PublicKey,
    answered: &AnsweredReads,
    now_ms: u64,
) -> Result<(), AuthError> {
    authorize(
        &signer(header, name, now_ms)?,
        name,
        owner,
        answered,
        now_ms,
    )
}

/// Lets a verified `read` through if `owner`, who owns `name`, signed it
/// and it was not answered before.
pub fn authorize(
    read: &SignedRead,
    name: &str,
    owner: PublicKey,
    answered: &AnsweredReads,
    now_ms: u64,
) -> Result<(), AuthError> {
    if read.signer != owner {
        return Err(AuthError::NotOwner {
            name: name.to_string(),
            owner,
        });
    }
    answered.admit(read, now_ms)
}

/// Who signed `header` for `name`, if it is well formed, fresh and its
/// signature verifies: checked before the owner is looked up, so an
/// unsigned or forged request costs the worker no ledger query.
pub fn signer(header: Option<&str>, name: &str, now_ms: u64) -> Result<SignedRead, AuthError> {
    let malformed = || AuthError::Malformed {
        header: wire::LOGS_AUTH_HEADER,
    };
    let mut parts = header.ok_or_else(malformed)?.split(',');
    let (Some(key), Some(time), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let key: PublicKey = key.trim().parse().map_err(|_| malformed())?;
    let time_ms: u64 = time.trim().parse().map_err(|_| malformed())?;
    let signature: Signature = signature.trim().parse().map_err(|_| malformed())?;
    let skew_ms = now_ms.abs_diff(time_ms);
    if skew_ms > AUTH_WINDOW_MS {
        return Err(AuthError::Stale { skew_ms });
    }
    key.verify(&wire::logs_auth_message(name, time_ms), &signature)
        .map_err(|_| AuthError::BadSignature)?;
    Ok(SignedRead {
        signer: key,
        time_ms,
        signature,
    })
}

/// The current time for [`signer`].
pub fn auth_now_ms() -> u64 {
    now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bonus_ids::{RequestId, SecretKey};
    use bonus_runtime::{GuestLogs, Tier, Usage};

    fn invocation(outcome: Outcome, stdout: &[u8], dropped: u64) -> Invocation {
        Invocation {
            request_id: RequestId::from_u128(7),
            response: None,
            outcome,
            usage: Usage {
                fuel: 1,
                tier: Tier::Optimized,
                wall: std::time::Duration::ZERO,
                memory_bytes_peak: 0,
            },
            logs: GuestLogs {
                stdout: CapturedStream {
                    bytes: bytes::Bytes::copy_from_slice(stdout),
                    bytes_dropped: dropped,
                },
                stderr: CapturedStream::default(),
            },
        }
    }

    #[test]
    fn quiet_answers_cost_nothing_and_each_name_keeps_its_last_lines() {
        let logs = RecentLogs::default();
        let id = ManifestId::from_bytes([1; 32]);
        let limits = Limits::default();
        logs.record("quiet", id, &invocation(Outcome::Ok, b"", 0), &limits);
        assert!(logs.since("quiet", 0).is_empty());
        assert!(logs.inner.lock().expect("lock").order.is_empty());

        for i in 0..LINES_PER_NAME + 10 {
            let text = format!("line {i}\n");
            logs.record(
                "loud",
                id,
                &invocation(Outcome::Ok, text.as_bytes(), 0),
                &limits,
            );
        }
        let kept = logs.since("loud", 0);
        assert_eq!(kept.len(), LINES_PER_NAME);
        assert_eq!(kept[0].text, "line 10");
        assert_eq!(
            kept[LINES_PER_NAME - 1].text,
            format!("line {}", LINES_PER_NAME + 9)
        );
        assert_eq!(kept[0].stream, "stdout");
        let last = kept[LINES_PER_NAME - 1].seq;
        assert_eq!(
            logs.since("loud", last).len(),
            1,
            "--follow asks after the last"
        );
        assert!(logs.since("loud", last + 1).is_empty());

        let big = vec![b'x'; LINE_BYTES_MAX + 100];
        logs.record("big", id, &invocation(Outcome::Deadline, &big, 5), &limits);
        let big = logs.since("big", 0);
        assert_eq!(big.len(), 2);
        assert!(
            big[0].text.ends_with("(105 more bytes not kept)"),
            "{}",
            big[0].text
        );
        assert_eq!(big[1].stream, "error");
        assert!(big[1].text.starts_with("deadline"), "{}", big[1].text);
    }

    #[test]
    fn all_names_together_keep_a_bounded_number_of_bytes_the_oldest_going_first() {
        let logs = RecentLogs::default();
        let id = ManifestId::from_bytes([1; 32]);
        let limits = Limits::default();
        let text = vec![b'x'; LINE_BYTES_MAX];
        let per_line = LINE_BYTES_MAX + LINE_OVERHEAD;
        let lines = TOTAL_BYTES_MAX / per_line;
        // Many names, a few lines each, more than the budget holds.
        for i in 0..lines + 100 {
            let name = format!("f{}", i % 2000);
            logs.record(&name, id, &invocation(Outcome::Ok, &text, 0), &limits);
        }
        let inner = logs.inner.lock().expect("lock");
        assert!(inner.bytes <= TOTAL_BYTES_MAX, "{} bytes", inner.bytes);
        let kept: usize = inner.names.values().map(VecDeque::len).sum();
        assert_eq!(kept, lines);
        assert_eq!(inner.bytes, kept * per_line);
        // The oldest went: f0..f99's first lines, not the newest.
        assert!(inner.names["f0"].front().is_some_and(|l| l.seq >= 2000));
        assert!(
            inner.order.len() <= 2 * kept,
            "{} entries",
            inner.order.len()
        );
        drop(inner);
        // One name cannot take more than its own cap, nor, behind an old
        // line of another name, grow the queue of lines to drop.
        for _ in 0..TOTAL_BYTES_MAX / LINE_OVERHEAD + 1000 {
            logs.record("loud", id, &invocation(Outcome::Ok, b"hi", 0), &limits);
        }
        assert_eq!(logs.since("loud", 0).len(), LINES_PER_NAME);
        let inner = logs.inner.lock().expect("lock");
        assert!(inner.bytes <= TOTAL_BYTES_MAX);
        assert!(inner.order.len() <= TOTAL_BYTES_MAX / LINE_OVERHEAD);
        let text: usize = inner.names.values().flatten().map(|l| l.text.len()).sum();
        assert_eq!(inner.bytes, text + inner.order.len() * LINE_OVERHEAD);
    }

    #[test]
    fn only_the_owner_reads_with_a_fresh_signature() {
        let owner = SecretKey::from_seed([1; 32]);
        let other = SecretKey::from_seed([2; 32]);
        let now = 1_000_000_000;
        let header = |key: &SecretKey, name: &str, time: u64| {
            let signature = key.sign(&wire::logs_auth_message(name, time));
            format!("{},{time},{signature}", key.public())
        };
        let answered = AnsweredReads::default();
        let check = |h: Option<&str>| check_auth(h, "mine", owner.public(), &answered, now);
        let fresh = header(&owner, "mine", now - 1000);
        assert_eq!(check(Some(&fresh)), Ok(()));
        // The same header again: a copy seen on the wire.
        assert_eq!(check(Some(&fresh)), Err(AuthError::Replayed));
        assert_eq!(check(Some(&header(&owner, "mine", now - 999))), Ok(()));
        assert!(matches!(check(None), Err(AuthError::Malformed { .. })));
        assert!(matches!(
            check(Some("x,y")),
            Err(AuthError::Malformed { .. })
        ));
        assert!(matches!(
            check(Some(&header(&other, "mine", now))),
            Err(AuthError::NotOwner { .. })
        ));
        // Signed for another name, or replayed long after.
        let for_other_name = header(&owner, "theirs", now);
        assert_eq!(check(Some(&for_other_name)), Err(AuthError::BadSignature));
        let old = now - AUTH_WINDOW_MS - 1;
        assert!(matches!(
            check(Some(&header(&owner, "mine", old))),
            Err(AuthError::Stale { .. })
        ));
        // The time is signed: moving it forward breaks the signature.
        let moved = header(&owner, "mine", old).replacen(&old.to_string(), &now.to_string(), 1);
        assert_eq!(check(Some(&moved)), Err(AuthError::BadSignature));
    }

    #[test]
    fn answered_reads_forget_what_expired_and_stay_bounded() {
        let owner = SecretKey::from_seed([1; 32]);
        // `admit` runs after the signature was checked; one signature
        // with many times keeps this test fast.
        let signature = owner.sign(b"checked before");
        let read = |time_ms: u64| SignedRead {
            signer: owner.public(),
            time_ms,
            signature,
        };
        let answered = AnsweredReads::default();
        let start = 10 * AUTH_WINDOW_MS;
        for i in 0..READS_REMEMBERED_MAX as u64 {
            assert_eq!(answered.admit(&read(start + i), start), Ok(()));
        }
        // Full: a new read waits for old ones to expire...
        let next = read(start + READS_REMEMBERED_MAX as u64);
        assert_eq!(answered.admit(&next, start), Err(AuthError::TooManyReads));
        // ...which they do once their time leaves the window, and only
        // then: the newest are still refused as copies.
        let later = start + AUTH_WINDOW_MS + 10;
        assert_eq!(answered.admit(&next, later), Ok(()));
        assert_eq!(
            answered.admit(&read(start + 100), later),
            Err(AuthError::Replayed)
        );
        let seen = answered.seen.lock().unwrap().len();
        assert_eq!(seen, READS_REMEMBERED_MAX + 1 - 10);
    }
}
