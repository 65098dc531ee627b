//! What more than one bench needs.

use std::time::{Duration, Instant};

/// Runs `side` and `baseline` alternately `iters` times (which goes first
/// alternates too) and returns `iters` × (time of `side` ÷ time of
/// `baseline`) as seconds, so that criterion's per-iteration figure is the
/// ratio.
pub fn ratio(iters: u64, mut side: impl FnMut(), mut baseline: impl FnMut()) -> Duration {
    let (mut a, mut b) = (Duration::ZERO, Duration::ZERO);
    for i in 0..iters {
        let time = |f: &mut dyn FnMut()| {
            let t = Instant::now();
            f();
            t.elapsed()
        };
        if i % 2 == 0 {
            a += time(&mut side);
            b += time(&mut baseline);
        } else {
            b += time(&mut baseline);
            a += time(&mut side);
        }
    }
    Duration::from_secs_f64(iters as f64 * a.as_secs_f64() / b.as_secs_f64().max(1e-9))
}
