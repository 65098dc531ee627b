//! The guest programs under guest/ and their prebuilt modules in fixtures/.
//!
//! The modules are checked in so that tests and users need no wasm
//! toolchain, and they are the input of every job digest, so they must be
//! exactly what the sources build to. This rebuilds them from scratch with
//! scripts/build-guests.sh and compares bytes. It needs the wasm32-wasip1
//! target (`rustup target add wasm32-wasip1`); the script says so if it is
//! missing.

use std::fs;
use std::process::Command;

use crate::util::{fixture, root, scratch};

#[test]
fn guests_rebuild_bit_for_bit() {
    let dir = scratch();
    let target = dir.path().join("target");
    let out = dir.path().join("out");
    let result = Command::new("bash")
        .arg(root().join("scripts").join("build-guests.sh"))
        .env("GUEST_TARGET_DIR", &target)
        .env("GUEST_OUT_DIR", &out)
        .output()
        .expect("run bash scripts/build-guests.sh");
    assert!(result.status.success(), "scripts/build-guests.sh failed ({}):\n{}", result.status, String::from_utf8_lossy(&result.stderr));

    let mut rebuilt: Vec<_> = fs::read_dir(&out)
        .expect("list the rebuilt modules")
        .map(|entry| entry.expect("list the rebuilt modules").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
        .collect();
    rebuilt.sort();
    assert!(!rebuilt.is_empty(), "scripts/build-guests.sh produced no .wasm in {}", out.display());

    let mut problems = Vec::new();
    for path in &rebuilt {
        let name = path.file_name().expect("a file name").to_string_lossy().into_owned();
        let fresh = fs::read(path).expect("read a rebuilt module");
        match fs::read(fixture(&name)) {
            Err(e) => problems.push(format!("fixtures/{name}: cannot read it ({e}), but the guest workspace builds it")),
            Ok(committed) if committed != fresh => problems.push(describe_difference(&name, &committed, &fresh)),
            Ok(_) => {}
        }
    }
    assert!(
        problems.is_empty(),
        "the committed guest modules differ from a fresh build; if the guest sources changed on purpose, \
         run scripts/build-guests.sh and commit fixtures/*.wasm:\n  {}",
        problems.join("\n  ")
    );
}

/// One line saying how `committed` and `fresh` differ.
fn describe_difference(name: &str, committed: &[u8], fresh: &[u8]) -> String {
    let first = committed.iter().zip(fresh).position(|(a, b)| a != b).unwrap_or(committed.len().min(fresh.len()));
    format!("fixtures/{name} differs: committed {} bytes, rebuilt {} bytes, first difference at byte {first}", committed.len(), fresh.len())
}
