//! The rules that pick the next guest thread at a switch point: seeded
//! random, round-robin and PCT. Each is a function of the job's scheduler
//! seed and of the sequence of decisions alone.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::Digest as _;

use crate::job::Policy;

/// Decisions within which PCT places its priority change points: 10 000.
/// A test-sized threaded run makes thousands of decisions; a change point
/// past the end of a run never fires, so a longer run is explored less
/// deeply, never differently from one node to another.
pub const PCT_HORIZON: u64 = 10_000;

/// The scheduler's stream: ChaCha20 keyed by
/// SHA-256(`canon/sched/v1\n` ‖ seed, little-endian).
pub fn stream(seed: u64) -> ChaCha20Rng {
    let mut h = sha2::Sha256::new();
    h.update(b"canon/sched/v1\n");
    h.update(seed.to_le_bytes());
    ChaCha20Rng::from_seed(h.finalize().into())
}

/// A uniform index below `n` (`n > 0`) from `rng`: the low 64 bits modulo
/// `n` (the bias is far below anything a schedule could show, and fixed).
fn below(rng: &mut ChaCha20Rng, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

/// One policy's state.
pub enum Chooser {
    /// [`Policy::Random`].
    Random(ChaCha20Rng),
    /// [`Policy::RoundRobin`].
    RoundRobin,
    /// [`Policy::Pct`].
    Pct {
        /// The stream (new threads' priorities).
        rng: ChaCha20Rng,
        /// Thread ids, highest priority first.
        order: Vec<u32>,
        /// Decisions at which the running thread drops to the lowest
        /// priority.
        changes: Vec<u64>,
        /// Decisions made so far.
        step: u64,
    },
}

impl Chooser {
    /// The state of `policy` seeded with `seed`, with the main thread
    /// (id 0) alive.
    pub fn new(policy: Policy, seed: u64) -> Chooser {
        let mut rng = stream(seed);
        match policy {
            Policy::Random => Chooser::Random(rng),
            Policy::RoundRobin => Chooser::RoundRobin,
            Policy::Pct { depth } => {
                let mut changes = Vec::new();
                while changes.len() + 1 < depth as usize && (changes.len() as u64) < PCT_HORIZON {
                    let at = 1 + rng.next_u64() % PCT_HORIZON;
                    if !changes.contains(&at) {
                        changes.push(at);
                    }
                }
                Chooser::Pct { rng, order: vec![0], changes, step: 0 }
            }
        }
    }

    /// A thread was spawned.
    pub fn spawned(&mut self, tid: u32) {
        if let Chooser::Pct { rng, order, .. } = self {
            let at = below(rng, order.len() + 1);
            order.insert(at, tid);
        }
    }

    /// The thread to run next, among `runnable` (sorted by id, not empty),
    /// after `current` ran.
    pub fn choose(&mut self, runnable: &[u32], current: u32) -> u32 {
        match self {
            Chooser::Random(rng) => runnable[below(rng, runnable.len())],
            Chooser::RoundRobin => runnable.iter().copied().find(|&t| t > current).unwrap_or(runnable[0]),
            Chooser::Pct { order, changes, step, .. } => {
                *step += 1;
                if changes.contains(step)
                    && let Some(at) = order.iter().position(|&t| t == current)
                {
                    let t = order.remove(at);
                    order.push(t);
                }
                order.iter().copied().find(|t| runnable.contains(t)).unwrap_or(runnable[0])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_takes_the_next_id_and_wraps() {
        let mut c = Chooser::new(Policy::RoundRobin, 0);
        assert_eq!(c.choose(&[0, 1, 2], 0), 1);
        assert_eq!(c.choose(&[0, 1, 2], 2), 0);
        assert_eq!(c.choose(&[0, 2], 1), 2);
    }

    #[test]
    fn random_is_a_function_of_the_seed() {
        let run = |seed| {
            let mut c = Chooser::new(Policy::Random, seed);
            (0..64).map(|i| c.choose(&[0, 1, 2, 3], i % 4)).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn pct_runs_the_highest_priority_thread_until_a_change_point() {
        let mut c = Chooser::new(Policy::Pct { depth: 1 }, 7);
        c.spawned(1);
        c.spawned(2);
        let first = c.choose(&[0, 1, 2], 0);
        // Depth 1: no change points, so the same thread while it can run.
        for _ in 0..100 {
            assert_eq!(c.choose(&[0, 1, 2], first), first);
        }
    }
}
