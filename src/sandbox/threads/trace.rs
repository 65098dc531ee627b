//! Schedules as data: the decisions of one threaded run, recorded by
//! `canon run --trace FILE` and followed by `canon replay`, which reports
//! the first step where a run departs from them (docs/THREADS.md).
//!
//! # The encoding, `canon/trace/v1`
//!
//! | field | bytes |
//! | --- | --- |
//! | tag `canon/trace/v1` and `\n` | 15 |
//! | job digest | 32 |
//! | number of steps | `u64`, little-endian |
//! | each step: why the scheduler decided (0 start, 1 slice, 2 wait, 3 notify, 4 spawn, 5 yield, 6 exit), then the thread it chose, as unsigned LEB128 | 2 or more |
//!
//! A step is one decision of the scheduler: the reason is how the thread
//! that ran before stopped (`start` for the first decision; `exit` when it
//! ended), the thread the one that runs next. Nothing follows the last
//! step.

use crate::digest::{Digest, JobDigest};

/// The version tag of the trace encoding.
pub const TRACE_TAG: &str = "canon/trace/v1";

/// Why the scheduler made a decision: how the thread that ran stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The first decision of the run.
    Start,
    /// The thread used up its slice.
    Slice,
    /// It waits.
    Wait,
    /// It notified.
    Notify,
    /// It spawned a thread.
    Spawn,
    /// It called `sched_yield`.
    Yield,
    /// It ended.
    Exit,
}

impl Reason {
    const ALL: [Reason; 7] = [Reason::Start, Reason::Slice, Reason::Wait, Reason::Notify, Reason::Spawn, Reason::Yield, Reason::Exit];

    /// The byte in the encoding.
    pub fn code(self) -> u8 {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(0) as u8
    }

    /// The name, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Start => "start",
            Reason::Slice => "slice",
            Reason::Wait => "wait",
            Reason::Notify => "notify",
            Reason::Spawn => "spawn",
            Reason::Yield => "yield",
            Reason::Exit => "exit",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Why it was made.
    pub reason: Reason,
    /// The thread chosen to run next.
    pub thread: u32,
}

/// A run's schedule: every decision, in order, for one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// The job it is a schedule of.
    pub job: JobDigest,
    /// The decisions.
    pub steps: Vec<Step>,
}

/// Why bytes are not a trace.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    /// The bytes do not start with `canon/trace/v1\n`.
    #[error("not a canon trace: it does not start with `{TRACE_TAG}`")]
    Tag,
    /// The bytes end early or go on past the last step, or a field is out
    /// of range.
    #[error("malformed trace at byte {0}")]
    Malformed(usize),
}

impl Trace {
    /// The `canon/trace/v1` bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(15 + 32 + 8 + 2 * self.steps.len());
        out.extend_from_slice(TRACE_TAG.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(self.job.digest().as_bytes());
        out.extend_from_slice(&(self.steps.len() as u64).to_le_bytes());
        for s in &self.steps {
            out.push(s.reason.code());
            let mut t = s.thread;
            loop {
                let byte = (t & 0x7f) as u8;
                t >>= 7;
                if t == 0 {
                    out.push(byte);
                    break;
                }
                out.push(byte | 0x80);
            }
        }
        out
    }

    /// Reads `canon/trace/v1` bytes.
    pub fn decode(bytes: &[u8]) -> Result<Trace, TraceError> {
        let head = TRACE_TAG.len() + 1;
        if bytes.len() < head || &bytes[..TRACE_TAG.len()] != TRACE_TAG.as_bytes() || bytes[TRACE_TAG.len()] != b'\n' {
            return Err(TraceError::Tag);
        }
        let mut at = head;
        let take = |at: &mut usize, n: usize| -> Result<&[u8], TraceError> {
            let s = bytes.get(*at..*at + n).ok_or(TraceError::Malformed(*at))?;
            *at += n;
            Ok(s)
        };
        let mut job = [0u8; 32];
        job.copy_from_slice(take(&mut at, 32)?);
        let mut n = [0u8; 8];
        n.copy_from_slice(take(&mut at, 8)?);
        let n = u64::from_le_bytes(n);
        // Each step takes at least 2 bytes: a count beyond what is left is malformed.
        if n > (bytes.len() - at) as u64 / 2 {
            return Err(TraceError::Malformed(at));
        }
        let mut steps = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let code = take(&mut at, 1)?[0];
            let reason = *Reason::ALL.get(code as usize).ok_or(TraceError::Malformed(at - 1))?;
            let mut thread: u64 = 0;
            let mut shift = 0;
            loop {
                let b = take(&mut at, 1)?[0];
                thread |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
                if shift > 28 {
                    return Err(TraceError::Malformed(at));
                }
            }
            let thread = u32::try_from(thread).map_err(|_| TraceError::Malformed(at))?;
            steps.push(Step { reason, thread });
        }
        if at != bytes.len() {
            return Err(TraceError::Malformed(at));
        }
        Ok(Trace { job: JobDigest::new(Digest::from_bytes(job)), steps })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_round_trip_and_bad_bytes_are_refused() {
        let t = Trace {
            job: JobDigest::new(Digest::of(b"job")),
            steps: vec![
                Step { reason: Reason::Start, thread: 0 },
                Step { reason: Reason::Spawn, thread: 300 },
                Step { reason: Reason::Exit, thread: crate::abi::MAX_THREAD_ID },
            ],
        };
        let bytes = t.encode();
        assert_eq!(&bytes[..15], b"canon/trace/v1\n");
        assert_eq!(bytes.len(), 15 + 32 + 8 + 2 + 3 + 6);
        assert_eq!(Trace::decode(&bytes), Ok(t));
        assert_eq!(Trace::decode(b"canon/trace/v2\n"), Err(TraceError::Tag));
        assert!(Trace::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Trace::decode(&longer).is_err());
        let mut bad_reason = bytes;
        bad_reason[55] = 9;
        assert!(Trace::decode(&bad_reason).is_err());
    }
}
