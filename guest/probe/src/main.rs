//! One guest, many probes: each tries to observe one source of
//! nondeterminism and prints what it saw, one observation per line, as
//! `key value` (or `key: value` where the value has spaces).
//!
//! Usage: `probe NAME [ARGS...]`; `probe help` lists the probes. In a plain
//! runtime most outputs change from run to run; in canon every line must be a
//! function of the job.

use std::collections::HashMap;
use std::fs;
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod raw;

/// The probes, with a one-line description each.
const PROBES: &[(&str, &str)] = &[
    (
        "time",
        "SystemTime::now as unix nanos; Instant elapsed between two reads",
    ),
    (
        "sleep",
        "sleep N ms (default 250) between two monotonic clock reads",
    ),
    (
        "busywait",
        "spin on Instant until 1 ms has elapsed; count iterations",
    ),
    (
        "random",
        "32 bytes from random_get, then a default HashMap's order",
    ),
    (
        "hashmap",
        "iteration order of a HashMap with the default RandomState",
    ),
    ("env", "environment variables as given, args, current dir"),
    (
        "readdir",
        "list DIR (default /data) recursively in read_dir order",
    ),
    (
        "metadata",
        "len, kind, times, inode, dev, nlink of each PATH",
    ),
    (
        "nan",
        "bit patterns of NaNs from arithmetic, payload propagation",
    ),
    ("addresses", "heap and stack addresses of a few allocations"),
    (
        "memgrow",
        "grow linear memory a page at a time until refused",
    ),
    ("missing", "open /data/does-not-exist; print the error"),
    (
        "manyfiles",
        "write N files (default 200) to /out/many/NNNNN.txt",
    ),
    (
        "writeout",
        "write a small tree to /out: file, nested dir, empty dir, symlink",
    ),
    ("exit", "exit with code N"),
    ("trap", "execute the wasm `unreachable` instruction"),
    ("stdin", "copy stdin to stdout; byte count to stderr"),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(name) = args.get(1) else {
        usage();
        return ExitCode::from(2);
    };
    let rest = &args[2..];
    match name.as_str() {
        "time" => time(),
        "sleep" => sleep(rest),
        "busywait" => busywait(),
        "random" => {
            random();
            hashmap();
        }
        "hashmap" => hashmap(),
        "env" => env(),
        "readdir" => readdir(rest),
        "metadata" => metadata(rest),
        "nan" => nan(),
        "addresses" => addresses(),
        "memgrow" => memgrow(),
        "missing" => missing(),
        "manyfiles" => return manyfiles(rest),
        "writeout" => return writeout(),
        "exit" => exit(rest),
        "trap" => core::arch::wasm32::unreachable(),
        "stdin" => return stdin(),
        "help" | "--help" => usage(),
        other => {
            eprintln!("probe: unknown probe {other:?}");
            usage();
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

fn usage() {
    eprintln!("usage: probe NAME [ARGS...]");
    for (name, what) in PROBES {
        eprintln!("  {name:<10} {what}");
    }
}

/// Parses the optional numeric argument of a probe, or exits with code 2.
fn arg_or<T: std::str::FromStr>(rest: &[String], default: T) -> T {
    match rest.first() {
        None => default,
        Some(s) => s.parse().unwrap_or_else(|_| {
            eprintln!("probe: bad number {s:?}");
            std::process::exit(2)
        }),
    }
}

fn unix_nanos(t: SystemTime) -> String {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos().to_string(),
        Err(e) => format!("-{}", e.duration().as_nanos()),
    }
}

fn time() {
    println!("system_time_unix_ns {}", unix_nanos(SystemTime::now()));
    let a = Instant::now();
    let b = Instant::now();
    println!("instant_elapsed_ns {}", b.duration_since(a).as_nanos());
    println!("system_time_unix_ns {}", unix_nanos(SystemTime::now()));
}

fn sleep(rest: &[String]) {
    let ms: u64 = arg_or(rest, 250);
    let before = raw::monotonic_now();
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(ms));
    let elapsed = start.elapsed();
    let after = raw::monotonic_now();
    println!("requested_ms {ms}");
    print_clock("monotonic_before_ns", before);
    print_clock("monotonic_after_ns", after);
    match (before, after) {
        (Ok(b), Ok(a)) => println!("monotonic_difference_ns {}", i128::from(a) - i128::from(b)),
        _ => println!("monotonic_difference_ns unavailable"),
    }
    println!("instant_elapsed_ns {}", elapsed.as_nanos());
}

fn print_clock(key: &str, value: Result<u64, u16>) {
    match value {
        Ok(v) => println!("{key} {v}"),
        Err(errno) => println!("{key} errno {errno}"),
    }
}

fn busywait() {
    /// Gives up after this many reads, so a clock that never moves cannot
    /// make the probe spin forever in a runtime without a fuel limit.
    const MAX_ITERATIONS: u64 = 1_000_000_000;
    let start = Instant::now();
    let mut iterations = 0u64;
    let mut elapsed = Duration::ZERO;
    while elapsed < Duration::from_millis(1) && iterations < MAX_ITERATIONS {
        iterations += 1;
        elapsed = start.elapsed();
    }
    println!("iterations {iterations}");
    println!("elapsed_ns {}", elapsed.as_nanos());
    println!("reached_1ms {}", elapsed >= Duration::from_millis(1));
}

fn random() {
    let mut buf = [0u8; 32];
    match raw::random_get(&mut buf) {
        Ok(()) => println!("random_get {}", hex(&buf)),
        Err(errno) => println!("random_get errno {errno}"),
    }
}

fn hashmap() {
    let mut map = HashMap::new();
    for k in 0..20u32 {
        map.insert(k, ());
    }
    let order: Vec<String> = map.keys().map(|k| k.to_string()).collect();
    println!("hashmap_order {}", order.join(","));
}

fn env() {
    // In the order the runtime gives them: sorting would hide what we probe.
    for (k, v) in std::env::vars_os() {
        println!("env {}={}", k.to_string_lossy(), v.to_string_lossy());
    }
    for (i, arg) in std::env::args_os().enumerate() {
        println!("arg {i} {}", arg.to_string_lossy());
    }
    match std::env::current_dir() {
        Ok(dir) => println!("current_dir {}", dir.display()),
        Err(e) => println!("current_dir error {:?}", e.kind()),
    }
}

fn readdir(rest: &[String]) {
    let root = rest.first().map_or("/data", String::as_str);
    walk(Path::new(root));
}

/// Prints `d PATH`, `f PATH SIZE` or `l PATH -> TARGET` for every entry, in
/// the order read_dir returns them, descending into directories at once.
fn walk(dir: &Path) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            println!("error {} {:?}", dir.display(), e.kind());
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                println!("error {} {:?}", dir.display(), e.kind());
                continue;
            }
        };
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => {
                println!("d {}", path.display());
                walk(&path);
            }
            Ok(t) if t.is_symlink() => match fs::read_link(&path) {
                Ok(target) => println!("l {} -> {}", path.display(), target.display()),
                Err(e) => println!("l {} -> error {:?}", path.display(), e.kind()),
            },
            Ok(_) => match entry.metadata() {
                Ok(m) => println!("f {} {}", path.display(), m.len()),
                Err(e) => println!("f {} error {:?}", path.display(), e.kind()),
            },
            Err(e) => println!("? {} error {:?}", path.display(), e.kind()),
        }
    }
}

fn metadata(rest: &[String]) {
    for path in rest {
        let p = path.as_str();
        let m = match fs::metadata(p) {
            Ok(m) => m,
            Err(e) => {
                println!("{p} error {:?} {:?}", e.kind(), e.raw_os_error());
                continue;
            }
        };
        println!("{p} len {}", m.len());
        println!("{p} is_dir {}", m.is_dir());
        println!("{p} is_file {}", m.is_file());
        for (key, t) in [
            ("modified", m.modified()),
            ("accessed", m.accessed()),
            ("created", m.created()),
        ] {
            match t {
                Ok(t) => println!("{p} {key} {}", unix_nanos(t)),
                Err(e) => println!("{p} {key} error {:?}", e.kind()),
            }
        }
        // `std::os::wasi::fs::MetadataExt` (ino, dev, nlink) is nightly-only,
        // so ask the runtime directly through the open file's descriptor.
        match raw::filestat_of(p) {
            Ok(st) => {
                println!("{p} ino {}", st.ino);
                println!("{p} dev {}", st.dev);
                println!("{p} nlink {}", st.nlink);
            }
            Err(e) => println!("{p} filestat error {e}"),
        }
    }
}

// `x / x` and `x - x` are the point here: NaN from arithmetic.
#[allow(clippy::eq_op)]
fn nan() {
    // Every input goes through black_box so the compiler cannot fold the
    // arithmetic: the wasm instructions run on the engine and the CPU.
    let z64 = black_box(0.0f64);
    let inf64 = black_box(f64::INFINITY);
    let payload64 = black_box(f64::from_bits(0x7ff8_0000_0000_1234));
    let neg_payload64 = black_box(f64::from_bits(0xfff8_0000_0000_5678));
    let snan64 = black_box(f64::from_bits(0x7ff0_0000_0000_0001));
    let high_payload64 = black_box(f64::from_bits(0x7ff8_1234_5000_0000));
    let one64 = black_box(1.0f64);
    let f64s: [(&str, f64); 14] = [
        ("f64 0/0", z64 / z64),
        ("f64 sqrt(-1)", black_box(-1.0f64).sqrt()),
        ("f64 inf-inf", inf64 - inf64),
        ("f64 inf*0", inf64 * z64),
        ("f64 payload+1", payload64 + one64),
        ("f64 1+payload", one64 + payload64),
        ("f64 payload*1", payload64 * one64),
        ("f64 -payload", -payload64),
        ("f64 neg_payload+1", neg_payload64 + one64),
        ("f64 payload+neg_payload", payload64 + neg_payload64),
        ("f64 snan+0", snan64 + z64),
        ("f64 min(payload,1)", payload64.min(one64)),
        ("f64 max(1,payload)", one64.max(payload64)),
        (
            "f64 promote(f32 payload)",
            f64::from(black_box(f32::from_bits(0x7fc0_1234))),
        ),
    ];
    for (what, v) in f64s {
        println!("{what}: {:#018x}", v.to_bits());
    }

    let z32 = black_box(0.0f32);
    let inf32 = black_box(f32::INFINITY);
    let payload32 = black_box(f32::from_bits(0x7fc0_1234));
    let snan32 = black_box(f32::from_bits(0x7f80_0001));
    let one32 = black_box(1.0f32);
    let f32s: [(&str, f32); 11] = [
        ("f32 0/0", z32 / z32),
        ("f32 sqrt(-1)", black_box(-1.0f32).sqrt()),
        ("f32 inf-inf", inf32 - inf32),
        ("f32 payload+1", payload32 + one32),
        ("f32 -payload", -payload32),
        ("f32 snan+0", snan32 + z32),
        ("f32 min(payload,1)", payload32.min(one32)),
        ("f32 max(1,payload)", one32.max(payload32)),
        ("f32 demote(f64 high payload)", high_payload64 as f32),
        ("f32 demote(f64 low payload)", payload64 as f32),
        ("f32 demote(f64 snan)", snan64 as f32),
    ];
    for (what, v) in f32s {
        println!("{what}: {:#010x}", v.to_bits());
    }
}

fn addresses() {
    let small = Box::new(black_box(1u8));
    let medium = Box::new(black_box([7u8; 64]));
    let vec_kib: Vec<u8> = black_box(Vec::with_capacity(1000));
    let vec_100k: Vec<u8> = black_box(Vec::with_capacity(100_000));
    let vec_mib: Vec<u8> = black_box(Vec::with_capacity(1 << 20));
    let string = black_box(String::from("canon"));
    let local = black_box(0u64);
    println!("box_u8 {:#x}", &*small as *const u8 as usize);
    println!("box_64_bytes {:#x}", medium.as_ptr() as usize);
    println!("vec_1000 {:#x}", vec_kib.as_ptr() as usize);
    println!("vec_100000 {:#x}", vec_100k.as_ptr() as usize);
    println!("vec_1mib {:#x}", vec_mib.as_ptr() as usize);
    println!("string {:#x}", string.as_ptr() as usize);
    println!("stack_local {:#x}", &local as *const u64 as usize);
    println!("main_fn {:#x}", main as fn() -> ExitCode as usize);
}

fn memgrow() {
    use core::arch::wasm32::{memory_grow, memory_size};
    const PAGE: usize = 65536;
    let initial = memory_size(0);
    // Print before growing: stdout's buffer is allocated on first use, and
    // once memory is full the allocator cannot get more.
    println!("initial_pages {initial}");
    let mut grows = 0usize;
    while memory_grow(0, 1) != usize::MAX {
        grows += 1;
    }
    let last = memory_size(0);
    println!("grown_pages {grows}");
    println!("final_pages {last}");
    let mut sum = 0u64;
    for page in initial..last {
        let ptr = (page * PAGE) as *mut u8;
        // SAFETY: pages initial..last were just added by memory_grow and
        // nothing else allocates from them (the allocator only uses memory
        // it grew itself, and we never called it for these pages), so this
        // address is in bounds and not aliased.
        unsafe {
            ptr.write_volatile(page as u8);
            sum += u64::from(ptr.read_volatile());
        }
    }
    println!("touched_pages {}", last - initial);
    println!("touched_sum {sum}");
}

fn missing() {
    match fs::File::open("/data/does-not-exist") {
        Ok(_) => println!("opened true"),
        Err(e) => {
            println!("error_kind {:?}", e.kind());
            match e.raw_os_error() {
                Some(code) => println!("raw_os_error {code}"),
                None => println!("raw_os_error none"),
            }
        }
    }
}

fn manyfiles(rest: &[String]) -> ExitCode {
    let n: u32 = arg_or(rest, 200);
    let dir = Path::new("/out/many");
    if let Err(e) = fs::create_dir_all(dir) {
        println!("create_dir error {:?}", e.kind());
        return ExitCode::FAILURE;
    }
    for i in 0..n {
        let path = dir.join(format!("{i:05}.txt"));
        if let Err(e) = fs::write(&path, format!("{i}\n")) {
            println!("write {} error {:?}", path.display(), e.kind());
            return ExitCode::FAILURE;
        }
    }
    println!("wrote {n}");
    ExitCode::SUCCESS
}

fn writeout() -> ExitCode {
    type Step = (&'static str, fn() -> io::Result<()>);
    let steps: [Step; 5] = [
        ("file /out/file.txt", || {
            fs::write("/out/file.txt", "hello from canon\n")
        }),
        ("dir /out/nested/a/b", || {
            fs::create_dir_all("/out/nested/a/b")
        }),
        ("file /out/nested/a/b/deep.txt", || {
            fs::write("/out/nested/a/b/deep.txt", [0u8, 1, 2, 255])
        }),
        ("dir /out/empty", || fs::create_dir("/out/empty")),
        // `std::os::wasi::fs::symlink_path` is nightly-only; `soft_link` is
        // the stable (deprecated) name for the same path_symlink call.
        ("symlink /out/link -> file.txt", || {
            #[allow(deprecated)]
            fs::soft_link("file.txt", "/out/link")
        }),
    ];
    let mut ok = true;
    for (what, step) in steps {
        match step() {
            Ok(()) => println!("ok {what}"),
            Err(e) => {
                ok = false;
                println!("error {what}: {:?}", e.kind());
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn exit(rest: &[String]) {
    let code: i32 = arg_or(rest, 0);
    std::process::exit(code)
}

fn stdin() -> ExitCode {
    let mut stdin = io::stdin().lock();
    let mut stdout = io::stdout().lock();
    let mut buf = [0u8; 8192];
    let mut total = 0u64;
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("stdin error {:?}", e.kind());
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = stdout.write_all(&buf[..n]) {
            eprintln!("stdout error {:?}", e.kind());
            return ExitCode::FAILURE;
        }
        total += n as u64;
    }
    if let Err(e) = stdout.flush() {
        eprintln!("stdout error {:?}", e.kind());
        return ExitCode::FAILURE;
    }
    eprintln!("bytes {total}");
    ExitCode::SUCCESS
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
