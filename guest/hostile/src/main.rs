//! A guest written to misbehave: each mode attacks one limit of the sandbox.
//! canon's hostile suite (`tests/hostile.rs`) pins what each one ends with.
//!
//! Modes (`argv[1]`):
//! - `loop`: spins forever.
//! - `membomb`: grows linear memory one page at a time until refused, then
//!   writes every page and prints how many pages it got.
//! - `stackbomb`: recurses without end.
//! - `stdout`: writes to stdout forever.
//! - `manyfiles`: creates empty files in /out forever.
//! - `bigfile`: appends to one file in /out forever.
//! - `sparse`: sets the length of a file in /out to 1 TiB.
//! - `escape`: tries every way out of a preopen it knows and prints the
//!   errno each attempt got.
//! - `symlinkbomb N`: creates N symlinks with 1 MiB targets.
//! - `args`: prints the number and total size of its arguments and
//!   environment, as the guest sees them.

mod raw;

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("loop") => spin(),
        Some("membomb") => membomb(),
        Some("stackbomb") => println!("depth {}", recurse(0)),
        Some("stdout") => flood(&mut std::io::stdout()),
        Some("manyfiles") => manyfiles(),
        Some("bigfile") => bigfile(),
        Some("sparse") => sparse(),
        Some("escape") => escape(),
        Some("symlinkbomb") => symlinkbomb(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1000)),
        Some("args") => sizes(&args),
        other => {
            eprintln!("hostile: unknown mode {other:?}");
            std::process::exit(2);
        }
    }
}

fn spin() -> ! {
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

fn membomb() {
    use core::arch::wasm32::{memory_grow, memory_size};
    let before = memory_size(0);
    while memory_grow(0, 1) != usize::MAX {}
    let pages = memory_size(0);
    // Touch every byte of the new pages, one 8-byte word at a time.
    let start = before * 65536;
    let end = pages * 65536;
    let mut sum = 0u64;
    let mut at = start;
    while at < end {
        let p = at as *mut u64;
        // SAFETY: `at` is 8-aligned and lies in pages this program just grew
        // and owns exclusively; nothing else (not the allocator) uses them.
        unsafe {
            p.write_volatile(at as u64);
            sum = sum.wrapping_add(p.read_volatile());
        }
        at += 8;
    }
    println!("initial_pages {before} final_pages {pages} touched_bytes {} sum {sum}", end - start);
}

/// Recursion whose frames hold only wasm locals (no shadow-stack frame), so
/// it exhausts the engine's native stack, not the linear-memory one.
#[allow(unconditional_recursion)]
fn recurse(n: u64) -> u64 {
    let below = recurse(std::hint::black_box(n + 1));
    below.wrapping_mul(31) ^ n
}

fn flood(out: &mut impl Write) {
    let chunk = vec![b'y'; 64 << 10];
    loop {
        if out.write_all(&chunk).is_err() {
            std::process::exit(3);
        }
    }
}

fn manyfiles() {
    for i in 0u64.. {
        if let Err(e) = std::fs::File::create(format!("/out/f{i}")) {
            println!("create f{i}: {:?}", e.kind());
            std::process::exit(3);
        }
    }
}

fn bigfile() {
    let mut f = std::fs::File::create("/out/big").expect("create /out/big");
    flood(&mut f);
}

fn sparse() {
    let f = std::fs::File::create("/out/sparse").expect("create /out/sparse");
    match f.set_len(1 << 40) {
        Ok(()) => println!("set_len 1 TiB: ok"),
        Err(e) => println!("set_len 1 TiB: {:?}", e.kind()),
    }
}

fn sizes(args: &[String]) {
    let arg_bytes: usize = args.iter().map(|a| a.len() + 1).sum();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let env_bytes: usize = env.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    println!("argc {} arg_bytes {arg_bytes} envc {} env_bytes {env_bytes}", args.len(), env.len());
}

fn symlinkbomb(n: u32) {
    let out = raw::preopen("/out");
    let target = "x/".repeat(512 << 10);
    for i in 0..n {
        let e = raw::symlink(&target, out, &format!("l{i}"));
        if e != 0 {
            println!("symlink {i} with a 1 MiB target: errno {e} ({})", raw::errno_name(e));
            return;
        }
    }
    println!("created {n} symlinks with 1 MiB targets");
}

/// Every attempt to leave /out, with what it got. None may succeed.
fn escape() {
    let out = raw::preopen("/out");
    let mut refused = 0;
    let mut escaped = 0;
    let mut report = |what: &str, errno: u16| {
        println!("{what}: {}", if errno == 0 { "OK".to_string() } else { format!("errno {errno} ({})", raw::errno_name(errno)) });
        if errno == 0 {
            escaped += 1;
        } else {
            refused += 1;
        }
    };
    // Set-up that must succeed (inside /out).
    assert_eq!(raw::mkdir(out, "a"), 0, "mkdir a");
    assert_eq!(raw::symlink("../../../../escape", out, "up-link"), 0, "symlink up-link");
    assert_eq!(raw::symlink("..", out, "parent-link"), 0, "symlink parent-link");
    assert_eq!(raw::symlink("loop-b", out, "loop-a"), 0, "symlink loop-a");
    assert_eq!(raw::symlink("loop-a", out, "loop-b"), 0, "symlink loop-b");
    assert_eq!(raw::symlink("self", out, "self"), 0, "symlink self");
    assert_eq!(raw::symlink("../../escape", out, "a/sneaky"), 0, "symlink a/sneaky");

    // An absolute target can only point out: refused when made (following
    // one, as an input may hold, is refused too: vfs.rs's tests).
    report("symlink abs-link (-> /etc/passwd)", raw::symlink("/etc/passwd", out, "abs-link"));
    report("open ../escape (create)", raw::create(out, "../escape"));
    report("open /etc/passwd", raw::open_read(out, "/etc/passwd"));
    report("open /out/escape (absolute, create)", raw::create(out, "/out/escape"));
    report("open a/../../escape (create)", raw::create(out, "a/../../escape"));
    report("open ../tmp/escape (sibling preopen, create)", raw::create(out, "../tmp/escape"));
    report("open .. (directory)", raw::open_read(out, ".."));
    report("mkdir ../escape-dir", raw::mkdir(out, "../escape-dir"));
    report("open up-link (create through ../../../../escape)", raw::create(out, "up-link"));
    report("open parent-link/escape (create through ..)", raw::create(out, "parent-link/escape"));
    report("open a/sneaky (create through ../../escape from a/)", raw::create(out, "a/sneaky"));
    report("open loop-a (loop of two)", raw::open_read(out, "loop-a"));
    report("open self (loop of one)", raw::open_read(out, "self"));
    report("mkdir parent-link/escape-dir", raw::mkdir(out, "parent-link/escape-dir"));
    report("rename a -> ../stolen", raw::rename(out, "a", out, "../stolen"));
    report("link up-link -> ../hard", raw::link(out, "up-link", out, "../hard"));
    report("symlink at ../escape-link", raw::symlink("x", out, "../escape-link"));
    report("unlink ../tmp", raw::unlink(out, "../tmp"));
    report("open nul\\0name (create)", raw::create(out, "nul\0name"));
    report("symlink with a 64 KiB target", raw::symlink(&"x/".repeat(32 << 10), out, "long-link"));
    println!("refused {refused} escaped {escaped}");
    if escaped != 0 {
        std::process::exit(1);
    }
}
