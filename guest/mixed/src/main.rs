//! Mixed integer and float benchmark guest: an image pipeline.
//!
//! Each round makes a 256×256 greyscale image from an integer generator
//! (xorshift32), blurs it with a separable 5-tap Gaussian in f32, takes the
//! Sobel gradient magnitude (`sqrt`), quantises it back to bytes (clamped
//! float→int conversion), and folds the bytes into a histogram and an
//! FNV-1a hash that seeds the next round. Integer work (generation,
//! hashing, histogram, indexing) and float work (blur, gradient) are of
//! similar weight, and every float result is stored to memory, where canon's
//! NaN pass canonicalises it.
//!
//! Usage: `mixed [ROUNDS]` (default 40). Prints the final hash and the
//! histogram's eight most common bins; for 2 rounds the hash is
//! `7366842e20c7dc34`.

use std::process::ExitCode;

const W: usize = 256;
const H: usize = 256;
const DEFAULT_ROUNDS: u32 = 40;
/// Binomial 5-tap kernel (1 4 6 4 1) / 16.
const KERNEL: [f32; 5] = [0.0625, 0.25, 0.375, 0.25, 0.0625];

struct Pipeline {
    pixels: Vec<u8>,
    a: Vec<f32>,
    b: Vec<f32>,
    histogram: [u32; 256],
}

impl Pipeline {
    fn new() -> Pipeline {
        Pipeline { pixels: vec![0; W * H], a: vec![0.0; W * H], b: vec![0.0; W * H], histogram: [0; 256] }
    }

    /// Integer: fill the image from xorshift32, with a gradient so edges exist.
    fn generate(&mut self, mut state: u32) {
        for y in 0..H {
            for x in 0..W {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let noise = (state >> 24) as usize & 0x3f;
                let ramp = ((x ^ y) & 0x80) + ((x + 2 * y) & 0x3f);
                self.pixels[y * W + x] = (ramp + noise).min(255) as u8;
            }
        }
    }

    /// Float: bytes to f32, blurred horizontally into `b`, vertically into `a`.
    fn blur(&mut self) {
        for (f, &p) in self.a.iter_mut().zip(&self.pixels) {
            *f = f32::from(p) * (1.0 / 255.0);
        }
        for y in 0..H {
            for x in 0..W {
                let mut acc = 0.0f32;
                for (k, w) in KERNEL.iter().enumerate() {
                    let xx = (x + k).saturating_sub(2).min(W - 1);
                    acc += w * self.a[y * W + xx];
                }
                self.b[y * W + x] = acc;
            }
        }
        for y in 0..H {
            for x in 0..W {
                let mut acc = 0.0f32;
                for (k, w) in KERNEL.iter().enumerate() {
                    let yy = (y + k).saturating_sub(2).min(H - 1);
                    acc += w * self.b[yy * W + x];
                }
                self.a[y * W + x] = acc;
            }
        }
    }

    /// Float: Sobel gradient magnitude of `a` into `b`.
    fn sobel(&mut self) {
        let at = |x: usize, y: usize| self.a[y.min(H - 1) * W + x.min(W - 1)];
        for y in 0..H {
            for x in 0..W {
                let (xm, ym) = (x.saturating_sub(1), y.saturating_sub(1));
                let gx = at(x + 1, ym) + 2.0 * at(x + 1, y) + at(x + 1, y + 1) - at(xm, ym) - 2.0 * at(xm, y) - at(xm, y + 1);
                let gy = at(xm, y + 1) + 2.0 * at(x, y + 1) + at(x + 1, y + 1) - at(xm, ym) - 2.0 * at(x, ym) - at(x + 1, ym);
                self.b[y * W + x] = (gx * gx + gy * gy).sqrt();
            }
        }
    }

    /// Float to integer: quantise `b` to bytes; integer: histogram and hash.
    fn fold(&mut self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for (p, &g) in self.pixels.iter_mut().zip(&self.b) {
            // `as` saturates, and maps NaN to 0: defined on every platform.
            let q = (g * 255.0 * 0.25) as u8;
            *p = q;
            self.histogram[usize::from(q)] += 1;
            hash = (hash ^ u64::from(q)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash
    }
}

fn main() -> ExitCode {
    let rounds = match std::env::args().nth(1).map(|a| a.parse::<u32>()) {
        None => DEFAULT_ROUNDS,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("mixed: ROUNDS must be a number: {e}");
            return ExitCode::from(2);
        }
    };
    let mut p = Pipeline::new();
    let mut hash: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..rounds {
        p.generate((hash as u32) | 1);
        p.blur();
        p.sobel();
        hash ^= p.fold();
    }
    let mut bins: Vec<(u32, usize)> = p.histogram.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    bins.sort_by(|a, b| b.cmp(a));
    println!("{hash:016x}");
    let top: Vec<String> = bins.iter().take(8).map(|(n, i)| format!("{i}:{n}")).collect();
    println!("{}", top.join(" "));
    ExitCode::SUCCESS
}
