//! A file-system-heavy job: walks the input tree at `/in` and writes a
//! transformed copy and an index to `/out`.
//!
//! For every file under `/in` (in name order, whatever order the runtime
//! lists directories in) it:
//! - writes the file's bytes reversed to `/out/copy/<same path>`, creating
//!   the directories (empty ones included);
//! - reads the file's last 4 bytes through `Seek` and appends a line to
//!   `/out/log.txt`, reopening it with `OpenOptions::append` each time;
//! - adds `path<TAB>size<TAB>fnv1a64-hex` to the index, which is written to
//!   `/out/index.txt.tmp` and renamed to `/out/index.txt`.
//!
//! It also creates, fills and removes a scratch directory under `/tmp` and
//! removes a file in `/out`, then prints counts on stdout. Exit code 1 and a
//! message on stderr on any I/O error.

use std::fmt::Display;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const INPUT: &str = "/in";
const OUTPUT: &str = "/out";
const SCRATCH: &str = "/tmp/fswalk-scratch";

/// A relative path inside the input tree, with `/` separators.
type Rel = String;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fswalk: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Attaches what was being done to an I/O error.
fn ctx<T>(result: io::Result<T>, what: impl Display) -> Result<T, String> {
    result.map_err(|e| format!("{what}: {e}"))
}

fn run() -> Result<(), String> {
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    walk(Path::new(INPUT), "", &mut dirs, &mut files)?;

    let out = Path::new(OUTPUT);
    let copy_root = out.join("copy");
    ctx(fs::create_dir_all(&copy_root), "create /out/copy")?;
    for dir in &dirs {
        let target = copy_root.join(dir);
        ctx(
            fs::create_dir_all(&target),
            format_args!("create {}", target.display()),
        )?;
    }

    let log_path = out.join("log.txt");
    let mut index = String::new();
    let mut total_bytes = 0u64;
    for rel in &files {
        let source = Path::new(INPUT).join(rel);
        let mut bytes = ctx(fs::read(&source), format_args!("read {}", source.display()))?;
        let size = bytes.len() as u64;
        total_bytes += size;
        index.push_str(&format!("{rel}\t{size}\t{:016x}\n", fnv1a64(&bytes)));

        let tail = ctx(
            last_bytes(&source, 4),
            format_args!("seek in {}", source.display()),
        )?;
        if !bytes.ends_with(&tail) {
            return Err(format!(
                "{}: the bytes read after seeking differ from the file's tail",
                source.display()
            ));
        }
        let mut log = ctx(
            OpenOptions::new().create(true).append(true).open(&log_path),
            "open /out/log.txt for append",
        )?;
        ctx(
            writeln!(log, "copied {rel} size={size} tail={}", hex(&tail)),
            "append to /out/log.txt",
        )?;

        bytes.reverse();
        let target = copy_root.join(rel);
        ctx(
            fs::write(&target, &bytes),
            format_args!("write {}", target.display()),
        )?;
    }

    let tmp = out.join("index.txt.tmp");
    ctx(fs::write(&tmp, &index), "write /out/index.txt.tmp")?;
    ctx(
        fs::rename(&tmp, out.join("index.txt")),
        "rename /out/index.txt.tmp",
    )?;

    scratch_round_trip()?;

    // Leave no trace of a file the job wrote and no longer wants.
    let doomed = out.join("remove-me.txt");
    ctx(
        fs::write(&doomed, "temporary\n"),
        "write /out/remove-me.txt",
    )?;
    ctx(fs::remove_file(&doomed), "remove /out/remove-me.txt")?;

    let log_lines = ctx(fs::read_to_string(&log_path), "read /out/log.txt")?
        .lines()
        .count();
    println!("dirs {}", dirs.len());
    println!("files {}", files.len());
    println!("bytes {total_bytes}");
    println!("log_lines {log_lines}");
    println!("index_fnv1a64 {:016x}", fnv1a64(index.as_bytes()));
    Ok(())
}

/// Collects the directories and files under `dir` (whose path relative to
/// the input root is `rel`) in name order, depth first.
fn walk(dir: &Path, rel: &str, dirs: &mut Vec<Rel>, files: &mut Vec<Rel>) -> Result<(), String> {
    let mut entries = Vec::new();
    for entry in ctx(fs::read_dir(dir), format_args!("list {}", dir.display()))? {
        let entry = ctx(entry, format_args!("list {}", dir.display()))?;
        let name = entry
            .file_name()
            .into_string()
            .map_err(|name| format!("{}: name {name:?} is not UTF-8", dir.display()))?;
        let kind = ctx(
            entry.file_type(),
            format_args!("type of {}", entry.path().display()),
        )?;
        entries.push((name, kind));
    }
    // Our order, not the runtime's: byte order of the names.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, kind) in entries {
        let child_rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let child: PathBuf = dir.join(&name);
        if kind.is_dir() {
            dirs.push(child_rel.clone());
            walk(&child, &child_rel, dirs, files)?;
        } else if kind.is_file() {
            files.push(child_rel);
        } else {
            return Err(format!(
                "{}: neither a file nor a directory",
                child.display()
            ));
        }
    }
    Ok(())
}

/// The last `n` bytes of the file at `path` (fewer if it is shorter),
/// read after seeking from the end.
fn last_bytes(path: &Path, n: u64) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let len = file.seek(SeekFrom::End(0))?;
    let take = n.min(len);
    let pos = file.seek(SeekFrom::End(-(take as i64)))?;
    debug_assert_eq!(pos, len - take);
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    Ok(tail)
}

/// Creates a scratch directory under /tmp, writes, reads and removes a file
/// in it, then removes the directory.
fn scratch_round_trip() -> Result<(), String> {
    let dir = Path::new(SCRATCH);
    ctx(fs::create_dir_all(dir), format_args!("create {SCRATCH}"))?;
    let file = dir.join("scratch.txt");
    ctx(
        fs::write(&file, "scratch\n"),
        format_args!("write {}", file.display()),
    )?;
    let back = ctx(
        fs::read_to_string(&file),
        format_args!("read {}", file.display()),
    )?;
    if back != "scratch\n" {
        return Err(format!("{}: read back {back:?}", file.display()));
    }
    ctx(
        fs::remove_file(&file),
        format_args!("remove {}", file.display()),
    )?;
    ctx(fs::remove_dir(dir), format_args!("remove {SCRATCH}"))?;
    if dir.exists() {
        return Err(format!("{SCRATCH} still exists after remove_dir"));
    }
    Ok(())
}

/// 64-bit FNV-1a.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
