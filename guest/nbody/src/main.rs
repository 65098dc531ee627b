//! Float-heavy benchmark guest: the n-body simulation of the Computer
//! Language Benchmarks Game (Jovian planets, symplectic integrator, f64).
//!
//! Usage: `nbody [STEPS]` (default 1 000 000). Prints the system's energy
//! before and after, with `{:.9}`, as the benchmark's reference output does:
//! for 1 000 steps `-0.169075164` then `-0.169087605`.

// The constants are the benchmark's, digit for digit, and the loops keep
// its shape (index over the three axes).
#![allow(clippy::excessive_precision, clippy::needless_range_loop)]

use std::f64::consts::PI;
use std::process::ExitCode;

const DEFAULT_STEPS: u64 = 1_000_000;
const SOLAR_MASS: f64 = 4.0 * PI * PI;
const DAYS_PER_YEAR: f64 = 365.24;
const DT: f64 = 0.01;

#[derive(Clone, Copy)]
struct Body {
    pos: [f64; 3],
    vel: [f64; 3],
    mass: f64,
}

fn bodies() -> [Body; 5] {
    let planet = |pos: [f64; 3], vel: [f64; 3], mass: f64| Body {
        pos,
        vel: vel.map(|v| v * DAYS_PER_YEAR),
        mass: mass * SOLAR_MASS,
    };
    [
        // Sun
        Body {
            pos: [0.0; 3],
            vel: [0.0; 3],
            mass: SOLAR_MASS,
        },
        // Jupiter
        planet(
            [
                4.84143144246472090e+00,
                -1.16032004402742839e+00,
                -1.03622044471123109e-01,
            ],
            [
                1.66007664274403694e-03,
                7.69901118419740425e-03,
                -6.90460016972063023e-05,
            ],
            9.54791938424326609e-04,
        ),
        // Saturn
        planet(
            [
                8.34336671824457987e+00,
                4.12479856412430479e+00,
                -4.03523417114321381e-01,
            ],
            [
                -2.76742510726862411e-03,
                4.99852801234917238e-03,
                2.30417297573763929e-05,
            ],
            2.85885980666130812e-04,
        ),
        // Uranus
        planet(
            [
                1.28943695621391310e+01,
                -1.51111514016986312e+01,
                -2.23307578892655734e-01,
            ],
            [
                2.96460137564761618e-03,
                2.37847173959480950e-03,
                -2.96589568540237556e-05,
            ],
            4.36624404335156298e-05,
        ),
        // Neptune
        planet(
            [
                1.53796971148509165e+01,
                -2.59193146099879641e+01,
                1.79258772950371181e-01,
            ],
            [
                2.68067772490389322e-03,
                1.62824170038242295e-03,
                -9.51592254519715870e-05,
            ],
            5.15138902046611451e-05,
        ),
    ]
}

/// Gives the sun the momentum that makes the system's total zero.
fn offset_momentum(bodies: &mut [Body; 5]) {
    let mut p = [0.0; 3];
    for b in bodies.iter() {
        for k in 0..3 {
            p[k] += b.vel[k] * b.mass;
        }
    }
    for k in 0..3 {
        bodies[0].vel[k] = -p[k] / SOLAR_MASS;
    }
}

fn energy(bodies: &[Body; 5]) -> f64 {
    let mut e = 0.0;
    for (i, b) in bodies.iter().enumerate() {
        e += 0.5 * b.mass * (b.vel[0] * b.vel[0] + b.vel[1] * b.vel[1] + b.vel[2] * b.vel[2]);
        for b2 in &bodies[i + 1..] {
            let d: [f64; 3] = std::array::from_fn(|k| b.pos[k] - b2.pos[k]);
            e -= b.mass * b2.mass / (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
        }
    }
    e
}

fn advance(bodies: &mut [Body; 5], dt: f64) {
    for i in 0..bodies.len() {
        let (left, right) = bodies.split_at_mut(i + 1);
        let b = &mut left[i];
        for b2 in right.iter_mut() {
            let d: [f64; 3] = std::array::from_fn(|k| b.pos[k] - b2.pos[k]);
            let d2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
            let mag = dt / (d2 * d2.sqrt());
            for k in 0..3 {
                b.vel[k] -= d[k] * b2.mass * mag;
                b2.vel[k] += d[k] * b.mass * mag;
            }
        }
    }
    for b in bodies.iter_mut() {
        for k in 0..3 {
            b.pos[k] += dt * b.vel[k];
        }
    }
}

fn main() -> ExitCode {
    let steps = match std::env::args().nth(1) {
        None => DEFAULT_STEPS,
        Some(arg) => match arg.parse::<u64>() {
            Ok(n) => n,
            Err(e) => {
                eprintln!("nbody: bad step count {arg:?}: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let mut system = bodies();
    offset_momentum(&mut system);
    println!("{:.9}", energy(&system));
    for _ in 0..steps {
        advance(&mut system, DT);
    }
    println!("{:.9}", energy(&system));
    ExitCode::SUCCESS
}
