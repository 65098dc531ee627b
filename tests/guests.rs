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

/// The compute guests print their reference output under canon, every
/// determinism knob on: the NaN pass and the meter change no result.
#[test]
fn compute_guests_print_their_reference_output() {
    let sandbox = canon::sandbox::Sandbox::builder().cache_dir(None).build().expect("sandbox");
    let cases: [(&str, &str, &str); 3] = [
        // The Benchmarks Game's reference output for 1 000 steps.
        ("nbody.toml", "1000", "-0.169075164\n-0.169087605\n"),
        ("mixed.toml", "2", "7366842e20c7dc34\n6:11135 5:10985 7:10845 4:10350 8:10080 9:8918 3:8790 10:7381\n"),
        // SHA-256 iterated twice from 32 zero bytes (as Python's hashlib says).
        ("sha256chain.toml", "2", "sha256chain 2 2b32db6c2c0a6235fb1397e8225ea85e0f0e6e8c7b126d0016ccbde0e667151e\n"),
    ];
    for (spec, arg, expected) in cases {
        let mut job = canon::job::Job::load(&fixture(&format!("jobs/{spec}"))).expect("job");
        job.args = vec![arg.to_string()];
        let outcome = sandbox.run(&job).unwrap_or_else(|e| panic!("{spec}: {e}"));
        assert_eq!(outcome.termination, canon::outcome::Termination::Exit(0), "{spec}");
        assert_eq!(String::from_utf8_lossy(&outcome.stdout), expected, "{spec} with {arg}");
    }
}
