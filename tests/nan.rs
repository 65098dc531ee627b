//! The NaN pass (`canon::instrument::nan`): it rewrites exactly the escape
//! sites, its output validates, and the NaN probe prints its pinned bits on
//! every backend. Generated float-heavy modules (`canon::fuzzing::float`)
//! are run on every backend, their escaped NaNs checked, by the bounded
//! differential test (`tests/differential.rs`).

use canon::instrument::nan::{CANONICAL_F32, CANONICAL_F64, NanPassError, NanSites, canonicalize_nans, canonicalize_nans_counted};
use canon::job::CORE_FEATURES;
use canon::job::Job;
use canon::outcome::Termination;
use canon::sandbox::engine::HOST_THREAD_STACK;
use canon::sandbox::{Backend, Sandbox};
use wasm_encoder::{CodeSection, Function, FunctionSection, Instruction as I, MemArg, MemorySection, MemoryType, Module, TypeSection, ValType};
use wasmparser::{Operator, Parser, Payload, Validator};

use crate::util::fixture;

fn validate(wasm: &[u8]) {
    // A threaded module (fixtures/threads.wasm) may use the threads proposal.
    let features = if canon::job::is_threaded(wasm) { canon::job::THREADED_FEATURES } else { CORE_FEATURES };
    Validator::new_with_features(features).validate_all(wasm).unwrap_or_else(|e| panic!("output does not validate: {e}"));
}

/// A function body: its declared locals and its operators.
type Body<'a> = (Vec<(u32, wasmparser::ValType)>, Vec<Operator<'a>>);

/// Every operator of every function body, with each body's declared locals.
fn bodies(wasm: &[u8]) -> Vec<Body<'_>> {
    let mut out = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        if let Payload::CodeSectionEntry(body) = payload.expect("parse") {
            let locals = body.get_locals_reader().expect("locals").into_iter().map(|l| l.expect("local")).collect();
            let mut ops = Vec::new();
            let mut r = body.get_operators_reader().expect("ops");
            while !r.eof() {
                ops.push(r.read().expect("op"));
            }
            out.push((locals, ops));
        }
    }
    out
}

fn mem(offset: u64, align: u32) -> MemArg {
    MemArg { offset, align, memory_index: 0 }
}

/// A module with one function `(param f32 f64) (local v128)` whose body is
/// `body` (without the final `end`).
fn one_function(body: &[I<'_>]) -> Vec<u8> {
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([ValType::F32, ValType::F64], []);
    m.section(&types);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    m.section(&funcs);
    let mut mems = MemorySection::new();
    mems.memory(MemoryType { minimum: 1, maximum: None, memory64: false, shared: false, page_size_log2: None });
    m.section(&mems);
    let mut code = CodeSection::new();
    let mut f = Function::new([(1, ValType::V128)]);
    for i in body {
        f.instruction(i);
    }
    f.instruction(&I::End);
    code.function(&f);
    m.section(&code);
    m.finish()
}

const X32: u32 = 0; // the f32 param
const X64: u32 = 1; // the f64 param
const V: u32 = 2; // the v128 local
// Scratch locals the pass adds after them, in this order when all are needed.
const T32: u32 = 3;
const T64: u32 = 4;
const TV: u32 = 5;

/// Checks that `ops[at..at + 6]` is the canonicalisation sequence of the
/// given shape with scratch local `t`.
fn is_canonicalisation(ops: &[Operator<'_>], at: usize, shape: &str, t: u32) -> bool {
    let Some(s) = ops.get(at..at + 6) else { return false };
    let tee = matches!(s[0], Operator::LocalTee { local_index } if local_index == t);
    let gets = matches!(s[2], Operator::LocalGet { local_index } if local_index == t) && matches!(s[3], Operator::LocalGet { local_index } if local_index == t);
    let rest = match shape {
        "f32" => {
            matches!(s[1], Operator::F32Const { value } if value.bits() == CANONICAL_F32) && matches!(s[4], Operator::F32Eq) && matches!(s[5], Operator::Select)
        }
        "f64" => {
            matches!(s[1], Operator::F64Const { value } if value.bits() == CANONICAL_F64) && matches!(s[4], Operator::F64Eq) && matches!(s[5], Operator::Select)
        }
        "f32x4" => {
            matches!(s[1], Operator::V128Const { value } if value.bytes().chunks(4).all(|c| c == CANONICAL_F32.to_le_bytes()))
                && matches!(s[4], Operator::F32x4Eq)
                && matches!(s[5], Operator::V128Bitselect)
        }
        "f64x2" => {
            matches!(s[1], Operator::V128Const { value } if value.bytes().chunks(8).all(|c| c == CANONICAL_F64.to_le_bytes()))
                && matches!(s[4], Operator::F64x2Eq)
                && matches!(s[5], Operator::V128Bitselect)
        }
        _ => unreachable!(),
    };
    tee && gets && rest
}

#[test]
fn the_pass_canonicalises_at_every_escape_site_and_nowhere_else() {
    let g32 = I::LocalGet(X32);
    let g64 = I::LocalGet(X64);
    let gv = I::LocalGet(V);
    let z = I::I32Const(0);
    // (site, shape, before?) for each instruction that is an escape site;
    // everything else must come through untouched.
    #[rustfmt::skip]
    let body: Vec<I<'_>> = vec![
        // Not sites: arithmetic, neg/abs, comparisons, conversions, loads, select.
        g32.clone(), g32.clone(), I::F32Add, I::F32Neg, I::F32Abs, I::F32Sqrt, g32.clone(), I::F32Min, I::Drop,
        g64.clone(), g64.clone(), I::F64Div, I::I64TruncSatF64S, I::Drop, g64.clone(), g64.clone(), I::F64Ne, I::Drop,
        g64.clone(), I::F32DemoteF64, I::F64PromoteF32, I::Drop,
        z.clone(), I::F64Load(mem(0, 3)), g64.clone(), z.clone(), I::Select, I::Drop,
        gv.clone(), gv.clone(), I::F32x4PMin, gv.clone(), I::F64x2PMax, I::F32x4Neg, I::F64x2Abs, gv.clone(), I::F32x4Eq, gv.clone(), I::F32x4ExtractLane(1), I::Drop,
        I::F32x4ConvertI32x4S, I::I32x4TruncSatF32x4S, I::Drop,
        // Sites, before: stores, reinterprets, copysign sign, scalar into vector.
        z.clone(), g32.clone(), I::F32Store(mem(0, 2)),
        z.clone(), g64.clone(), I::F64Store(mem(8, 3)),
        g32.clone(), I::I32ReinterpretF32, I::Drop,
        g64.clone(), I::I64ReinterpretF64, I::Drop,
        g32.clone(), g32.clone(), I::F32Copysign, I::Drop,
        g64.clone(), g64.clone(), I::F64Copysign, I::Drop,
        g32.clone(), I::F32x4Splat, I::Drop,
        g64.clone(), I::F64x2Splat, I::Drop,
        gv.clone(), g32.clone(), I::F32x4ReplaceLane(3), I::Drop,
        gv.clone(), g64.clone(), I::F64x2ReplaceLane(1), I::Drop,
        // Sites, after: vector float results.
        gv.clone(), gv.clone(), I::F32x4Add, I::F32x4Sqrt, gv.clone(), I::F32x4Max, I::F32x4Nearest, I::F32x4DemoteF64x2Zero, I::Drop,
        gv.clone(), gv.clone(), I::F64x2Mul, I::F64x2Floor, I::F64x2PromoteLowF32x4, I::Drop,
        gv.clone(), gv.clone(), gv.clone(), I::F32x4RelaxedMadd, gv.clone(), I::F32x4RelaxedMin, I::Drop,
        gv.clone(), gv.clone(), gv.clone(), I::F64x2RelaxedNmadd, gv.clone(), I::F64x2RelaxedMax, I::Drop,
    ];
    let input = one_function(&body);
    validate(&input);
    let (output, sites) = canonicalize_nans_counted(&input).expect("pass");
    validate(&output);
    assert_eq!(sites, NanSites { stores: 2, reinterprets: 2, copysigns: 2, into_vector: 4, vector_results: 12 });

    let before = bodies(&input);
    let after = bodies(&output);
    let (in_locals, in_ops) = &before[0];
    let (out_locals, out_ops) = &after[0];
    // One scratch local per type, after the function's own.
    let mut want = in_locals.clone();
    want.extend([(1, wasmparser::ValType::F32), (1, wasmparser::ValType::F64), (1, wasmparser::ValType::V128)]);
    assert_eq!(*out_locals, want);
    // Exactly six operators per site, and the original ones in order.
    assert_eq!(out_ops.len(), in_ops.len() + 6 * sites.total());
    let mut i = 0;
    let mut seen = 0;
    for op in in_ops {
        let before_shape = match op {
            Operator::F32Store { .. } | Operator::I32ReinterpretF32 | Operator::F32Copysign | Operator::F32x4Splat | Operator::F32x4ReplaceLane { .. } => {
                Some(("f32", T32))
            }
            Operator::F64Store { .. } | Operator::I64ReinterpretF64 | Operator::F64Copysign | Operator::F64x2Splat | Operator::F64x2ReplaceLane { .. } => {
                Some(("f64", T64))
            }
            _ => None,
        };
        let after_shape = match op {
            Operator::F32x4Add
            | Operator::F32x4Sqrt
            | Operator::F32x4Max
            | Operator::F32x4Nearest
            | Operator::F32x4DemoteF64x2Zero
            | Operator::F32x4RelaxedMadd
            | Operator::F32x4RelaxedMin => Some(("f32x4", TV)),
            Operator::F64x2Mul | Operator::F64x2Floor | Operator::F64x2PromoteLowF32x4 | Operator::F64x2RelaxedNmadd | Operator::F64x2RelaxedMax => {
                Some(("f64x2", TV))
            }
            _ => None,
        };
        if let Some((shape, t)) = before_shape {
            assert!(is_canonicalisation(out_ops, i, shape, t), "no {shape} canonicalisation before {op:?} at {i}: {:?}", &out_ops[i..]);
            i += 6;
            seen += 1;
        }
        assert_eq!(&out_ops[i], op, "operator {i}");
        i += 1;
        if let Some((shape, t)) = after_shape {
            assert!(is_canonicalisation(out_ops, i, shape, t), "no {shape} canonicalisation after {op:?} at {i}");
            i += 6;
            seen += 1;
        }
    }
    assert_eq!(i, out_ops.len());
    assert_eq!(seen, sites.total());
}

#[test]
fn a_body_without_escape_sites_is_unchanged() {
    let body = [I::LocalGet(X64), I::LocalGet(X64), I::F64Div, I::F64Sqrt, I::F64Neg, I::LocalGet(X64), I::F64Lt, I::Drop, I::Drop];
    let input = one_function(&body);
    let (output, sites) = canonicalize_nans_counted(&input).expect("pass");
    assert_eq!(sites, NanSites::default());
    assert_eq!(output, input, "no site: the same bytes, no scratch locals");
}

#[test]
fn scratch_locals_are_only_the_types_a_body_needs() {
    let input = one_function(&[I::I32Const(0), I::LocalGet(X64), I::F64Store(mem(0, 3))]);
    let output = canonicalize_nans(&input).expect("pass");
    validate(&output);
    let (locals, ops) = &bodies(&output)[0];
    assert_eq!(*locals, [(1, wasmparser::ValType::V128), (1, wasmparser::ValType::F64)]);
    // The f64 scratch local follows the two params and the v128 local: 3.
    assert!(is_canonicalisation(ops, 2, "f64", 3), "{ops:?}");
}

#[test]
fn every_fixture_module_round_trips_and_validates() {
    let mut count = 0;
    for entry in std::fs::read_dir(fixture("")).expect("fixtures") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "wasm") {
            let input = std::fs::read(&path).expect("read");
            let (output, sites) = canonicalize_nans_counted(&input).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            validate(&output);
            // Only code changes: same function count, same exports.
            assert_eq!(bodies(&output).len(), bodies(&input).len(), "{}", path.display());
            let ops = |w: &[u8]| bodies(w).iter().map(|(_, o)| o.len()).sum::<usize>();
            assert_eq!(ops(&output), ops(&input) + 6 * sites.total(), "{}", path.display());
            count += 1;
        }
    }
    assert!(count >= 5, "found {count} fixture modules");
}

#[test]
fn bad_modules_are_errors_not_panics() {
    assert!(matches!(canonicalize_nans(b"not wasm"), Err(NanPassError::Parse(_))));
    let good = one_function(&[I::I32Const(0), I::LocalGet(X32), I::F32Store(mem(0, 2))]);
    for cut in [9, good.len() / 2, good.len() - 1] {
        assert!(canonicalize_nans(&good[..cut]).is_err(), "truncated at {cut}");
    }
    // A function whose type index names no type.
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    m.section(&types);
    let mut funcs = FunctionSection::new();
    funcs.function(7);
    m.section(&funcs);
    let mut code = CodeSection::new();
    let mut f = Function::new([]);
    f.instruction(&I::End);
    code.function(&f);
    m.section(&code);
    assert_eq!(canonicalize_nans(&m.finish()), Err(NanPassError::NoFunctionType(0)));
}

// ---------------------------------------------------------------------------
// The NaN probe guest on every backend.

/// The backends canon runs jobs on. Winch is refused by canon (it lacks
/// relaxed SIMD, which this probe uses too; see `engine::WINCH_UNSUPPORTED`).
const BACKENDS: [Backend; 3] = [Backend::Cranelift, Backend::CraneliftBaseline, Backend::Pulley];

/// `fixtures/nanprobe.expected`: the probe's stdout, pinned. Rewrite it with
/// `CANON_BLESS=1 cargo test nan::` after a deliberate change (and bump the
/// NaN pass version or the determinism ABI).
fn expected_probe_output() -> String {
    std::fs::read_to_string(fixture("nanprobe.expected")).expect("fixtures/nanprobe.expected")
}

#[test]
fn the_nan_probe_prints_the_pinned_bits_on_every_backend() {
    let run = std::thread::Builder::new().stack_size(HOST_THREAD_STACK).spawn(|| {
        let mut job = Job::load(&fixture("jobs/nanprobe.toml")).expect("job");
        job.timeout *= 10;
        BACKENDS
            .iter()
            .map(|b| {
                let sandbox = Sandbox::builder().cache_dir(None).backend(*b).build().expect("sandbox");
                let o = sandbox.run(&job).unwrap_or_else(|e| panic!("{b}: {e}"));
                assert_eq!(o.termination, Termination::Exit(0), "{b}: {}", String::from_utf8_lossy(&o.stderr));
                (*b, o)
            })
            .collect::<Vec<_>>()
    });
    let outcomes = run.expect("spawn").join().expect("probe thread");
    let reference = String::from_utf8(outcomes[0].1.stdout.clone()).expect("utf-8");
    if std::env::var_os("CANON_BLESS").is_some() {
        std::fs::write(fixture("nanprobe.expected"), &reference).expect("bless");
    }
    for (b, o) in &outcomes {
        assert_eq!(String::from_utf8_lossy(&o.stdout), expected_probe_output(), "{b}: the probe's output differs from fixtures/nanprobe.expected");
        assert_eq!(o.summary().outcome_digest, outcomes[0].1.summary().outcome_digest, "{b}: outcome digest differs from cranelift");
    }
}

/// One lane or scalar printed by the probe: is it a non-canonical NaN?
fn non_canonical_nan(hex: &str) -> bool {
    let hex = hex.trim_start_matches("0x");
    match hex.len() {
        8 => u32::from_str_radix(hex, 16).is_ok_and(|b| f32::from_bits(b).is_nan() && b != CANONICAL_F32),
        16 => u64::from_str_radix(hex, 16).is_ok_and(|b| f64::from_bits(b).is_nan() && b != CANONICAL_F64),
        _ => false,
    }
}

#[test]
fn the_pinned_probe_output_is_what_the_pass_promises() {
    let out = expected_probe_output();
    let mut nans = 0;
    for line in out.lines() {
        let (what, value) = line.rsplit_once(": ").unwrap_or_else(|| panic!("no value: {line}"));
        if what.ends_with("copysign(1,nan)") {
            // The sign of any NaN, copied onto 1, is +.
            assert_eq!(value, "1", "{line}");
            continue;
        }
        // Lane operations that only move bits keep them (deterministically);
        // everything else that escapes is canonical.
        let lane_op = what.strip_prefix("f32x4 ").or_else(|| what.strip_prefix("f64x2 ")).unwrap_or("");
        let moves_bits = ["pmin(", "pmax(", "neg(", "abs("].iter().any(|op| lane_op.starts_with(op));
        for lane in value.split(' ') {
            let hex = lane.trim_start_matches("0x");
            let is_nan = match hex.len() {
                8 => u32::from_str_radix(hex, 16).is_ok_and(|b| f32::from_bits(b).is_nan()),
                16 => u64::from_str_radix(hex, 16).is_ok_and(|b| f64::from_bits(b).is_nan()),
                _ => panic!("not a lane: {line}"),
            };
            nans += usize::from(is_nan);
            if !moves_bits {
                assert!(!non_canonical_nan(lane), "non-canonical NaN escaped: {line}");
            }
        }
    }
    // Not vacuous: the probe's payload NaNs survive a lane `abs` as they are...
    assert!(out.contains("f32x4 abs(payload) store: 7fc01234 7fc05678 7f800001 3f800000\n"), "{out}");
    // ...and a NaN made with neg is stored as the positive canonical NaN.
    assert!(out.contains("f64 -payload store: 0x7ff8000000000000\n"), "{out}");
    assert!(nans > 300, "only {nans} NaNs in the probe's output");
}
