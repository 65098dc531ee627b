//! WASI-call programs: modules that make a given sequence of WASI preview 1
//! calls with given arguments, and then print what the host did.
//!
//! wasm-smith's modules almost never reach the WASI host with interesting
//! arguments; these do. A [`Program`] is a list of [`Call`]s (any function
//! of [`WASI_FUNCTIONS`], any argument values) over a memory whose first
//! [`SCRATCH_LEN`] bytes hold prepared structures (paths, iovec arrays,
//! poll subscriptions: [`layout`]). `_start` makes the calls in order,
//! stores each call's errno, and finally writes the scratch memory and the
//! errnos to stdout, so everything the host wrote into the guest's memory
//! is part of the outcome. [`Program::generate`] draws calls from fuzzer
//! bytes with boundary arguments (0, 1, -1, 2^31, 2^32, 2^63, i64::MAX,
//! misaligned and out-of-bounds pointers, overlapping buffers); the same
//! builder makes the hand-written regression programs of the WASI tests and
//! the endless loops that measure what a host call costs.

use arbitrary::Unstructured;
use wasm_encoder::{
    CodeSection, EntityType, ExportKind, ExportSection, Function, FunctionSection, ImportSection, Instruction as I, MemArg, MemorySection, MemoryType, Module,
    TypeSection, ValType as WasmVal,
};

use crate::abi::{self, ValType, WASI_FUNCTIONS, WASI_MODULE};

/// Pages of memory the program starts with (128 KiB): the scratch area,
/// the errnos, and room past them for large buffers.
pub const MEMORY_PAGES: u64 = 2;

/// Bytes of memory the program starts with.
pub const MEMORY_BYTES: u32 = (MEMORY_PAGES * 65536) as u32;

/// The scratch area, `0..SCRATCH_LEN`: printed at the end.
pub const SCRATCH_LEN: u32 = 4096;

/// Where the errno of call `i` is stored (`i32`, at `ERRNOS + 4 i`).
pub const ERRNOS: u32 = 8192;

/// Most calls in one program (the errno area holds this many).
pub const MAX_CALLS: usize = 256;

/// Where `_start` builds the iovecs of its final report (after the calls,
/// which may have clobbered anything).
const REPORT: u32 = ERRNOS + 4 * MAX_CALLS as u32;

/// Offsets in the scratch area of what [`layout`] prepares.
pub mod at {
    /// NUL-separated path strings, see [`super::PATHS`].
    pub const PATHS: u32 = 0;
    /// Four valid iovecs into `BUFFER`, then two that overlap it, then one
    /// of length 0.
    pub const IOVECS: u32 = 512;
    /// 256 bytes that reads fill and writes send.
    pub const BUFFER: u32 = 1024;
    /// Poll subscriptions: a relative clock, an absolute clock, fd 0 read,
    /// fd 1 write, a bad tag.
    pub const SUBSCRIPTIONS: u32 = 2048;
    /// Where results (filestat, fdstat, prestat, dirents, fds) land.
    pub const OUT: u32 = 3072;
}

/// The paths prepared at [`at::PATHS`], each at a fixed offset (its index
/// times 32): names that exist in the job's mounts, that do not, that climb
/// out, absolute ones, and a symlink name.
pub const PATHS: [&str; 12] = ["f", "d", "d/e", "..", ".", "x/../f", "/abs", "new", "l", "d/../../..", "f/", "dir/"];

/// One call: a WASI function and its arguments (an `i32` parameter takes
/// the low 32 bits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The function, a name in [`WASI_FUNCTIONS`].
    pub name: &'static str,
    /// One value per parameter.
    pub args: Vec<i64>,
}

impl Call {
    /// `name` with `args`; the caller must give one per parameter.
    pub fn new(name: &'static str, args: &[i64]) -> Call {
        Call { name, args: args.to_vec() }
    }
}

/// A sequence of calls over the prepared memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// The calls, in order (at most [`MAX_CALLS`]).
    pub calls: Vec<Call>,
    /// Bytes written over the prepared memory before the calls (offset, bytes).
    pub patches: Vec<(u32, Vec<u8>)>,
    /// Make the calls again and again until the job's fuel runs out, with
    /// no report (for measuring what calls cost).
    pub forever: bool,
}

/// Why a program cannot be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    /// No such WASI function.
    #[error("{0}: not a WASI preview 1 function")]
    Unknown(String),
    /// Wrong number of arguments.
    #[error("{name}: takes {want} arguments, given {given}")]
    Arity {
        /// The function.
        name: String,
        /// Its parameter count.
        want: usize,
        /// The arguments given.
        given: usize,
    },
    /// More than [`MAX_CALLS`].
    #[error("{0} calls: at most {MAX_CALLS}")]
    TooLong(usize),
}

/// The prepared scratch memory (see [`at`]).
pub fn layout() -> Vec<(u32, Vec<u8>)> {
    let mut data = Vec::new();
    let mut paths = vec![0u8; 32 * PATHS.len()];
    for (i, p) in PATHS.iter().enumerate() {
        paths[32 * i..32 * i + p.len()].copy_from_slice(p.as_bytes());
    }
    data.push((at::PATHS, paths));
    let iov = |ptr: u32, len: u32| [ptr.to_le_bytes(), len.to_le_bytes()].concat();
    let b = at::BUFFER;
    let iovecs = [iov(b, 64), iov(b + 64, 64), iov(b + 128, 64), iov(b + 192, 64), iov(b, 256), iov(b + 32, 128), iov(b, 0)].concat();
    data.push((at::IOVECS, iovecs));
    data.push((at::BUFFER, (0..=255u8).collect()));
    let mut subs = Vec::new();
    // userdata u64, tag u8 (+7 pad), then the union at 8..48.
    let clock = |userdata: u64, clock: u32, timeout: u64, abstime: bool| {
        let mut s = vec![0u8; 48];
        s[..8].copy_from_slice(&userdata.to_le_bytes());
        s[16..20].copy_from_slice(&clock.to_le_bytes());
        s[24..32].copy_from_slice(&timeout.to_le_bytes());
        s[40..42].copy_from_slice(&u16::from(abstime).to_le_bytes());
        s
    };
    let fd = |userdata: u64, tag: u8, fd: u32| {
        let mut s = vec![0u8; 48];
        s[..8].copy_from_slice(&userdata.to_le_bytes());
        s[8] = tag;
        s[16..20].copy_from_slice(&fd.to_le_bytes());
        s
    };
    subs.extend(clock(1, 1, 1_000_000, false));
    subs.extend(clock(2, 0, u64::MAX, true));
    subs.extend(fd(3, 1, 0));
    subs.extend(fd(4, 2, 1));
    subs.extend(fd(5, 9, 1));
    data.push((at::SUBSCRIPTIONS, subs));
    data
}

impl Program {
    /// The module: imports each WASI function it calls, exports `memory`
    /// and `_start`.
    pub fn encode(&self) -> Result<Vec<u8>, ProgramError> {
        if self.calls.len() > MAX_CALLS {
            return Err(ProgramError::TooLong(self.calls.len()));
        }
        // Imports: every function called, plus fd_write for the report.
        let mut imported: Vec<&'static abi::Signature> = Vec::new();
        let mut index_of = |name: &str| -> Result<u32, ProgramError> {
            let sig = abi::lookup(WASI_MODULE, name).ok_or_else(|| ProgramError::Unknown(name.to_string()))?;
            Ok(match imported.iter().position(|s| s.0 == sig.0) {
                Some(i) => i as u32,
                None => {
                    imported.push(sig);
                    imported.len() as u32 - 1
                }
            })
        };
        let report_write = index_of("fd_write")?;
        let mut body: Vec<I<'static>> = Vec::new();
        let mem = |offset: u64| MemArg { offset, align: 2, memory_index: 0 };
        if self.forever {
            body.push(I::Loop(wasm_encoder::BlockType::Empty));
        }
        for (i, call) in self.calls.iter().enumerate() {
            let f = index_of(call.name)?;
            let sig = abi::lookup(WASI_MODULE, call.name).ok_or_else(|| ProgramError::Unknown(call.name.to_string()))?;
            if sig.1.len() != call.args.len() {
                return Err(ProgramError::Arity { name: call.name.to_string(), want: sig.1.len(), given: call.args.len() });
            }
            let returns = !sig.2.is_empty();
            if returns {
                body.push(I::I32Const((ERRNOS + 4 * i as u32) as i32));
            }
            for (ty, &v) in sig.1.iter().zip(&call.args) {
                body.push(match ty {
                    ValType::I32 => I::I32Const(v as i32),
                    ValType::I64 => I::I64Const(v),
                });
            }
            body.push(I::Call(f));
            if returns {
                body.push(I::I32Store(mem(0)));
            }
        }
        if self.forever {
            body.push(I::Br(0));
            body.push(I::End);
        } else {
            // The report: scratch, then errnos, with the count written after.
            let words = [0, SCRATCH_LEN, ERRNOS, 4 * self.calls.len() as u32];
            for (k, w) in words.iter().enumerate() {
                body.extend([I::I32Const((REPORT + 4 * k as u32) as i32), I::I32Const(*w as i32), I::I32Store(mem(0))]);
            }
            body.extend([I::I32Const(1), I::I32Const(REPORT as i32), I::I32Const(2), I::I32Const((REPORT + 16) as i32), I::Call(report_write), I::Drop]);
        }
        body.push(I::End);

        let mut types = TypeSection::new();
        let mut imports = ImportSection::new();
        let val = |t: &ValType| match t {
            ValType::I32 => WasmVal::I32,
            ValType::I64 => WasmVal::I64,
        };
        for (i, sig) in imported.iter().enumerate() {
            types.ty().function(sig.1.iter().map(val), sig.2.iter().map(val));
            imports.import(WASI_MODULE, sig.0, EntityType::Function(i as u32));
        }
        let start_type = imported.len() as u32;
        types.ty().function([], []);
        let mut funcs = FunctionSection::new();
        funcs.function(start_type);
        let mut memories = MemorySection::new();
        memories.memory(MemoryType { minimum: MEMORY_PAGES, maximum: None, memory64: false, shared: false, page_size_log2: None });
        let mut exports = ExportSection::new();
        exports.export("memory", ExportKind::Memory, 0);
        exports.export("_start", ExportKind::Func, imported.len() as u32);
        let mut code = CodeSection::new();
        let mut func = Function::new([]);
        for ins in &body {
            func.instruction(ins);
        }
        code.function(&func);
        let mut data = wasm_encoder::DataSection::new();
        for (offset, bytes) in layout().into_iter().chain(self.patches.iter().cloned()) {
            data.active(0, &wasm_encoder::ConstExpr::i32_const(offset as i32), bytes);
        }
        let mut module = Module::new();
        module.section(&types).section(&imports).section(&funcs).section(&memories).section(&exports).section(&code).section(&data);
        Ok(module.finish())
    }

    /// A program from fuzzer bytes: [`Program::prelude`], then 1 to 48
    /// calls, each to any function but `proc_exit` (which may end the
    /// program, rarely), with arguments drawn from [`boundary_value`], and a
    /// few patches to the prepared memory.
    pub fn generate(u: &mut Unstructured<'_>) -> arbitrary::Result<Program> {
        let n = u.int_in_range(1..=48)?;
        let mut calls = Program::prelude();
        for _ in 0..n {
            let sig = &WASI_FUNCTIONS[u.choose_index(WASI_FUNCTIONS.len())?];
            if sig.0 == "proc_exit" && u.ratio(7, 8)? {
                continue;
            }
            let takes_fd = !FIRST_NOT_FD.contains(&sig.0);
            let args = sig.1.iter().enumerate().map(|(i, ty)| argument(u, *ty, i == 0 && takes_fd)).collect::<arbitrary::Result<_>>()?;
            calls.push(Call { name: sig.0, args });
        }
        let mut patches = Vec::new();
        for _ in 0..u.int_in_range(0..=3)? {
            let offset = u.int_in_range(0..=SCRATCH_LEN - 8)?;
            let len = u.int_in_range(1..=8)?;
            patches.push((offset, (0..len).map(|_| u.arbitrary()).collect::<arbitrary::Result<_>>()?));
        }
        Ok(Program { calls, patches, forever: false })
    }
}

impl Program {
    /// What every generated program starts with, so that the small
    /// descriptor numbers the calls draw name open files and directories:
    /// in a job with [`crate::sandbox::differential::DiffJob::inputs`] the
    /// preopens are `/in` 3, `/w` 4, `/out` 5 and `/tmp` 6, and these open
    /// `/w/f` for reading and writing (7), create `/out/new` (8), and open
    /// the directory `/in/d` (9).
    pub fn prelude() -> Vec<Call> {
        let rw = (1 << 1) | (1 << 6);
        let out = i64::from(at::OUT);
        vec![
            Call::new("path_open", &[4, 0, 0, 1, 0, rw, 0, 0, out]),
            Call::new("path_open", &[5, 0, 32 * 7, 3, 1, rw, 0, 0, out]),
            Call::new("path_open", &[3, 0, 32, 1, 2, 0, 0, 0, out]),
        ]
    }
}

/// The functions whose first parameter is not a descriptor.
const FIRST_NOT_FD: [&str; 11] = [
    "args_get",
    "args_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "environ_get",
    "environ_sizes_get",
    "path_symlink",
    "poll_oneoff",
    "proc_exit",
    "proc_raise",
    "random_get",
];

/// The 64-bit boundaries: sizes, offsets, lengths, timestamps and rights
/// are `i64`/`u64`, and these are where signed and unsigned readings part,
/// where `off_t` ends and where sums wrap.
const EDGES_64: [i64; 12] = [0, 1, -1, 1 << 31, 1 << 32, 1 << 62, i64::MIN, i64::MAX, i64::MAX - 63, 4096, 65536, -4096];

/// An argument of type `ty`: a descriptor (mostly open ones) when `fd`,
/// a 64-bit boundary (mostly) for an `i64`, else [`boundary_value`].
pub fn argument(u: &mut Unstructured<'_>, ty: ValType, fd: bool) -> arbitrary::Result<i64> {
    if fd && u.ratio(4, 5)? {
        return u.int_in_range(0..=10);
    }
    if ty == ValType::I64 && u.ratio(7, 10)? {
        return Ok(EDGES_64[u.choose_index(EDGES_64.len())?]);
    }
    boundary_value(u)
}

/// An argument value: mostly boundaries and pointers into the prepared
/// memory, sometimes anything.
pub fn boundary_value(u: &mut Unstructured<'_>) -> arbitrary::Result<i64> {
    const EDGES: [i64; 17] = [
        0,
        1,
        -1,
        1 << 31,
        (1 << 31) - 1,
        1 << 32,
        (1 << 32) - 1,
        1 << 62,
        i64::MIN,
        i64::MAX,
        MEMORY_BYTES as i64,
        MEMORY_BYTES as i64 - 1,
        MEMORY_BYTES as i64 - 4,
        -8,
        -16,
        4096,
        65536,
    ];
    Ok(match u.int_in_range(0..=9)? {
        // Descriptors: stdio, the preopens, what opens return.
        0..=2 => u.int_in_range(0..=10)?,
        3 => EDGES[u.choose_index(EDGES.len())?],
        // A prepared path with its length (as two arguments are rare
        // together, the length is a small number on its own).
        4 => i64::from(at::PATHS + 32 * u.int_in_range(0..=PATHS.len() as u32 - 1)?),
        5 => u.int_in_range(0..=16)?,
        6 => i64::from([at::IOVECS, at::IOVECS + 32, at::BUFFER, at::SUBSCRIPTIONS, at::OUT, at::OUT + 1][u.choose_index(6)?]),
        7 => i64::from(u.int_in_range(0..=MEMORY_BYTES + 8)?),
        8 => u.arbitrary::<i64>()?,
        _ => i64::from(u.int_in_range(0u32..=0x1ff)?),
    })
}

/// For every WASI function but `proc_exit`, an endless program of it with
/// the arguments that make it do the most work canon allows in one call
/// (64 KiB reads, writes and `random_get`; a 4 001-byte path of `./`
/// components; a file grown and truncated; renames back and forth; …),
/// each in a job with [`crate::sandbox::differential::DiffJob::inputs`].
/// What [`measure`] runs to check that fuel bounds wall time.
pub fn cost_probes() -> Vec<(&'static str, Program)> {
    let big: i64 = 65536;
    let iov = 60000i64;
    // One iovec at 60000 naming the 64 KiB at 65536.
    let iovec = vec![(60000u32, [(big as u32).to_le_bytes(), (big as u32).to_le_bytes()].concat())];
    let (fd_in, fd_w, file) = (3i64, 4i64, 7i64); // /in, /w; the first file opened
    let out = i64::from(at::OUT);
    let dots = "./".repeat(2000) + "f";
    let long = vec![(61000u32, dots.as_bytes().to_vec())];
    let long_len = dots.len() as i64;
    let rw = (1 << 1) | (1 << 6);
    let open_f = Call::new("path_open", &[fd_w, 0, 0, 1, 0, rw, 0, 0, out]);
    let pwrite = Call::new("fd_pwrite", &[file, iov, 1, 0, out]);
    let seek0 = Call::new("fd_seek", &[file, 0, 0, out]);
    let probe = |calls: Vec<Call>, patches: &[(u32, Vec<u8>)]| Program { calls, patches: patches.to_vec(), forever: true };
    let mut probes = vec![
        ("random_get", probe(vec![Call::new("random_get", &[big, big])], &[])),
        ("fd_write", probe(vec![open_f.clone(), seek0.clone(), Call::new("fd_write", &[file, iov, 1, out])], &iovec)),
        ("fd_pwrite", probe(vec![open_f.clone(), pwrite.clone()], &iovec)),
        ("fd_read", probe(vec![open_f.clone(), pwrite.clone(), seek0, Call::new("fd_read", &[file, iov, 1, out])], &iovec)),
        ("fd_pread", probe(vec![open_f.clone(), pwrite, Call::new("fd_pread", &[file, iov, 1, 0, out])], &iovec)),
        ("fd_readdir", probe(vec![Call::new("fd_readdir", &[fd_in, big, big, 0, out])], &[])),
        ("fd_readdir (cookie)", probe(vec![Call::new("fd_readdir", &[fd_in, big, big, i64::MAX, out])], &[])),
        ("path_filestat_get", probe(vec![Call::new("path_filestat_get", &[fd_in, 1, 61000, long_len, out])], &long)),
        ("path_open", probe(vec![Call::new("path_open", &[fd_in, 1, 61000, long_len, 0, 2, 0, 0, out]), Call::new("fd_close", &[file])], &long)),
        ("path_readlink", probe(vec![Call::new("path_readlink", &[fd_in, 32 * 8, 1, big, big, out])], &[])),
        ("poll_oneoff", probe(vec![Call::new("poll_oneoff", &[i64::from(at::SUBSCRIPTIONS), big, 4, out])], &[])),
        ("args_get", probe(vec![Call::new("args_get", &[big, big + 4096])], &[])),
        (
            "fd_filestat_set_size",
            probe(vec![open_f.clone(), Call::new("fd_filestat_set_size", &[file, 60000]), Call::new("fd_filestat_set_size", &[file, 0])], &[]),
        ),
        ("fd_allocate", probe(vec![open_f, Call::new("fd_allocate", &[file, 0, 60000]), Call::new("fd_filestat_set_size", &[file, 0])], &[])),
        ("path_rename", probe(vec![Call::new("path_rename", &[fd_w, 32, 1, fd_w, 32 * 7, 3]), Call::new("path_rename", &[fd_w, 32 * 7, 3, fd_w, 32, 1])], &[])),
    ];
    // Every other function, with plain arguments: a descriptor, then
    // pointers to the result area.
    for sig in WASI_FUNCTIONS {
        if sig.0 == "proc_exit" || probes.iter().any(|(n, _)| *n == sig.0) {
            continue;
        }
        let args: Vec<i64> = (0..sig.1.len()).map(|i| if i == 0 { fd_in } else { out }).collect();
        probes.push((sig.0, probe(vec![Call { name: sig.0, args }], &[])));
    }
    probes
}

/// Wall time per unit of fuel of an endless `program` given `fuel`, in
/// nanoseconds, on `sandbox`, in a job with
/// [`crate::sandbox::differential::DiffJob::inputs`]; it must end
/// `out_of_fuel` (see [`ns_per_fuel`]).
pub fn measure(sandbox: &crate::sandbox::Sandbox, program: &Program, fuel: u64) -> Result<f64, String> {
    use crate::outcome::{Termination, TrapKind};
    let module = program.encode().map_err(|e| e.to_string())?;
    let mut job = crate::sandbox::differential::DiffJob { inputs: true, ..Default::default() }.to_job(&module);
    job.limits.fuel = fuel;
    let (ns, termination) = ns_per_fuel(sandbox, &job)?;
    if termination != Termination::Trap(TrapKind::OutOfFuel) {
        return Err(format!("ended {termination} instead of running out of fuel"));
    }
    Ok(ns)
}

/// Wall time per unit of the fuel `job` consumes, in nanoseconds, on
/// `sandbox`, and how it ended: compiled first, then timed three times,
/// the fastest kept (what the work takes when the machine lets it).
pub fn ns_per_fuel(sandbox: &crate::sandbox::Sandbox, job: &crate::job::Job) -> Result<(f64, crate::outcome::Termination), String> {
    sandbox.run(job).map_err(|e| e.to_string())?;
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let o = sandbox.run(job).map_err(|e| e.to_string())?;
        best = best.min(started.elapsed().as_nanos() as f64);
        last = Some(o);
    }
    let o = last.ok_or("no run")?;
    Ok((best / o.fuel_consumed.max(1) as f64, o.termination))
}
