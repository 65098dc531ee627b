//! The NaN probe: makes NaNs every way WebAssembly can (0/0, sqrt(-1),
//! inf-inf, inf*0, min/max, demote/promote, arithmetic on NaNs with
//! payloads and signs, signalling NaNs, bit operations) and lets their bits
//! out every way a guest can (f32/f64 store then integer load, reinterpret,
//! copysign's sign, SIMD store, integer lane extract, a v128 bitcast, splat
//! and replace_lane of a scalar NaN, results of float lane operations,
//! relaxed SIMD). Prints one `what: bits` line per observation.
//!
//! In a plain runtime the bits differ between CPUs and backends; in canon
//! every line is the same everywhere. SIMD code is compiled with
//! `#[target_feature(enable = "simd128")]` per function, as
//! scripts/build-guests.sh ignores RUSTFLAGS.

use core::arch::wasm32::*;
use std::hint::black_box;
use std::ptr::{read_volatile, write_volatile};

// `x / x` and `x - x` are the point here: NaN from arithmetic.
#[allow(clippy::eq_op)]
fn main() {
    scalar_f64();
    scalar_f32();
    simd();
}

/// NaNs of f64 made every way, by name.
#[allow(clippy::eq_op)]
fn f64_nans() -> Vec<(&'static str, f64)> {
    let z = black_box(0.0f64);
    let one = black_box(1.0f64);
    let inf = black_box(f64::INFINITY);
    let payload = black_box(f64::from_bits(0x7ff8_0000_0000_1234));
    let neg_payload = black_box(f64::from_bits(0xfff8_0000_0000_5678));
    let snan = black_box(f64::from_bits(0x7ff0_0000_0000_0001));
    vec![
        ("0/0", z / z),
        ("sqrt(-1)", black_box(-1.0f64).sqrt()),
        ("inf-inf", inf - inf),
        ("inf*0", inf * z),
        ("payload+1", payload + one),
        ("1+payload", one + payload),
        ("neg_payload*1", neg_payload * one),
        ("payload+neg_payload", payload + neg_payload),
        ("snan+0", snan + z),
        ("min(payload,1)", payload.min(one)),
        ("max(1,neg_payload)", one.max(neg_payload)),
        ("promote(f32 payload)", f64::from(black_box(f32::from_bits(0x7fc0_1234)))),
        ("promote(f32 snan)", f64::from(black_box(f32::from_bits(0xff80_0001)))),
        ("-(0/0)", -(z / z)),
        ("-payload", -payload),
        ("abs(neg_payload)", neg_payload.abs()),
        ("loaded payload", payload),
    ]
}

/// NaNs of f32 made every way, by name.
#[allow(clippy::eq_op)]
fn f32_nans() -> Vec<(&'static str, f32)> {
    let z = black_box(0.0f32);
    let one = black_box(1.0f32);
    let inf = black_box(f32::INFINITY);
    let payload = black_box(f32::from_bits(0x7fc0_1234));
    let neg_payload = black_box(f32::from_bits(0xffc0_5678));
    let snan = black_box(f32::from_bits(0x7f80_0001));
    let payload64 = black_box(f64::from_bits(0x7ff8_1234_5000_0000));
    vec![
        ("0/0", z / z),
        ("sqrt(-1)", black_box(-1.0f32).sqrt()),
        ("inf-inf", inf - inf),
        ("payload+1", payload + one),
        ("neg_payload*1", neg_payload * one),
        ("snan+0", snan + z),
        ("min(payload,1)", payload.min(one)),
        ("max(1,neg_payload)", one.max(neg_payload)),
        ("demote(f64 payload)", payload64 as f32),
        ("demote(f64 neg snan)", black_box(f64::from_bits(0xfff0_0000_0000_0001)) as f32),
        ("-payload", -payload),
        ("loaded payload", payload),
    ]
}

fn scalar_f64() {
    for (what, v) in f64_nans() {
        // f64.store, then an integer load of the same bytes.
        let mut slot = 0u64;
        unsafe { write_volatile((&raw mut slot).cast::<f64>(), v) };
        let stored = unsafe { read_volatile(&raw const slot) };
        println!("f64 {what} store: {stored:#018x}");
        println!("f64 {what} reinterpret: {:#018x}", black_box(v).to_bits());
        println!("f64 {what} copysign(1,nan): {}", 1.0f64.copysign(black_box(v)));
    }
}

fn scalar_f32() {
    for (what, v) in f32_nans() {
        let mut slot = 0u32;
        unsafe { write_volatile((&raw mut slot).cast::<f32>(), v) };
        let stored = unsafe { read_volatile(&raw const slot) };
        println!("f32 {what} store: {stored:#010x}");
        println!("f32 {what} reinterpret: {:#010x}", black_box(v).to_bits());
        println!("f32 {what} copysign(1,nan): {}", 1.0f32.copysign(black_box(v)));
    }
}

/// The four 32-bit lanes of `v`, read three ways: an integer lane extract,
/// a v128 store read back as integers, and a bitcast.
#[target_feature(enable = "simd128")]
fn lanes32(what: &str, v: v128) {
    let v = black_box(v);
    let extracted = [u32x4_extract_lane::<0>(v), u32x4_extract_lane::<1>(v), u32x4_extract_lane::<2>(v), u32x4_extract_lane::<3>(v)];
    let mut stored = [0u32; 4];
    unsafe { v128_store(stored.as_mut_ptr().cast::<v128>(), v) };
    let stored = black_box(stored);
    let cast: [u32; 4] = unsafe { core::mem::transmute(v) };
    println!("{what} extract: {:08x} {:08x} {:08x} {:08x}", extracted[0], extracted[1], extracted[2], extracted[3]);
    println!("{what} store: {:08x} {:08x} {:08x} {:08x}", stored[0], stored[1], stored[2], stored[3]);
    println!("{what} bitcast: {:08x} {:08x} {:08x} {:08x}", cast[0], cast[1], cast[2], cast[3]);
}

/// The two 64-bit lanes of `v`, read the same three ways.
#[target_feature(enable = "simd128")]
fn lanes64(what: &str, v: v128) {
    let v = black_box(v);
    let extracted = [u64x2_extract_lane::<0>(v), u64x2_extract_lane::<1>(v)];
    let mut stored = [0u64; 2];
    unsafe { v128_store(stored.as_mut_ptr().cast::<v128>(), v) };
    let stored = black_box(stored);
    let cast: [u64; 2] = unsafe { core::mem::transmute(v) };
    println!("{what} extract: {:016x} {:016x}", extracted[0], extracted[1]);
    println!("{what} store: {:016x} {:016x}", stored[0], stored[1]);
    println!("{what} bitcast: {:016x} {:016x}", cast[0], cast[1]);
}

#[target_feature(enable = "simd128")]
#[target_feature(enable = "relaxed-simd")]
fn simd() {
    let z4 = black_box(f32x4_splat(0.0));
    let one4 = black_box(f32x4_splat(1.0));
    let inf4 = black_box(f32x4_splat(f32::INFINITY));
    let payload4 = black_box(u32x4(0x7fc0_1234, 0xffc0_5678, 0x7f80_0001, 0x3f80_0000));
    let z2 = black_box(f64x2_splat(0.0));
    let one2 = black_box(f64x2_splat(1.0));
    let inf2 = black_box(f64x2_splat(f64::INFINITY));
    let payload2 = black_box(u64x2(0x7ff8_0000_0000_1234, 0xfff0_0000_0000_0001));

    // Float lane operations that make NaNs.
    lanes32("f32x4 0/0", f32x4_div(z4, z4));
    lanes32("f32x4 sqrt(-1)", f32x4_sqrt(f32x4_neg(one4)));
    lanes32("f32x4 inf-inf", f32x4_sub(inf4, inf4));
    lanes32("f32x4 inf*0", f32x4_mul(inf4, z4));
    lanes32("f32x4 payload+1", f32x4_add(payload4, one4));
    lanes32("f32x4 min(payload,1)", f32x4_min(payload4, one4));
    lanes32("f32x4 max(1,payload)", f32x4_max(one4, payload4));
    lanes32("f32x4 ceil(payload)", f32x4_ceil(payload4));
    lanes32("f32x4 nearest(payload)", f32x4_nearest(payload4));
    lanes32("f32x4 demote(f64x2 payload)", f32x4_demote_f64x2_zero(payload2));
    lanes32("f32x4 relaxed_madd(payload,1,0)", f32x4_relaxed_madd(payload4, one4, z4));
    lanes32("f32x4 relaxed_min(payload,1)", f32x4_relaxed_min(payload4, one4));
    lanes64("f64x2 0/0", f64x2_div(z2, z2));
    lanes64("f64x2 inf-inf", f64x2_sub(inf2, inf2));
    lanes64("f64x2 payload*1", f64x2_mul(payload2, one2));
    lanes64("f64x2 sqrt(payload)", f64x2_sqrt(payload2));
    lanes64("f64x2 max(payload,1)", f64x2_max(payload2, one2));
    lanes64("f64x2 floor(payload)", f64x2_floor(payload2));
    lanes64("f64x2 promote(f32x4 payload)", f64x2_promote_low_f32x4(payload4));
    lanes64("f64x2 relaxed_nmadd(payload,1,0)", f64x2_relaxed_nmadd(payload2, one2, z2));
    // Lane operations that only move bits: deterministic as they are.
    lanes32("f32x4 pmin(payload,1)", f32x4_pmin(payload4, one4));
    lanes64("f64x2 pmax(1,payload)", f64x2_pmax(one2, payload2));
    lanes32("f32x4 neg(0/0)", f32x4_neg(f32x4_div(z4, z4)));
    lanes32("f32x4 abs(payload)", f32x4_abs(payload4));
    // Scalar NaNs entering a vector.
    for (what, v) in f64_nans() {
        lanes64(&format!("f64x2 splat(f64 {what})"), f64x2_splat(v));
        lanes64(&format!("f64x2 replace_lane(f64 {what})"), f64x2_replace_lane::<1>(one2, v));
    }
    for (what, v) in f32_nans() {
        lanes32(&format!("f32x4 splat(f32 {what})"), f32x4_splat(v));
        lanes32(&format!("f32x4 replace_lane(f32 {what})"), f32x4_replace_lane::<2>(one4, v));
    }
    // A float lane read back as a scalar, then out through a store.
    let lane = black_box(f32x4_extract_lane::<0>(f32x4_div(z4, z4)));
    println!("f32x4 extract_lane(0/0) reinterpret: {:#010x}", lane.to_bits());
}
