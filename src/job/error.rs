//! Why a job spec or a module was refused.
//!
//! Every variant names the spec file (as the caller named it) and the field
//! at fault, in the dotted form a person would search the spec for:
//! `limits.memory`, `input[2].guest`, `env.PATH`. Messages say what was
//! found and what was expected, so a spec can be fixed from the message alone.

use std::io;
use std::path::PathBuf;

use crate::digest::Digest;
use crate::tree::TreeError;

/// Why a module cannot be run by canon. Checked before anything runs, both
/// for job specs and for ad-hoc modules given to `canon exec`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    /// The bytes do not start with the WebAssembly magic `\0asm`.
    #[error("not a WebAssembly module (the file does not start with \"\\0asm\")")]
    NotWasm,
    /// The bytes are a WebAssembly component; canon runs core modules only.
    #[error("a WebAssembly component, not a core module: canon runs WASI preview 1 core modules")]
    Component,
    /// wasmparser refused the module: malformed, or uses a feature canon's
    /// engine does not enable.
    #[error("invalid WebAssembly module: {message} (at byte offset {offset:#x})")]
    Invalid {
        /// wasmparser's message.
        message: String,
        /// Byte offset in the module where the problem was found.
        offset: usize,
    },
    /// An imported function canon does not provide.
    #[error(
        "imports `{module}::{name}`, which canon does not provide (canon provides the functions of `wasi_snapshot_preview1` and the exports of preloaded modules; set `unknown_imports = \"trap\"` to link it as a function that traps when called)"
    )]
    UnknownImport {
        /// The import's module name.
        module: String,
        /// The import's field name.
        name: String,
    },
    /// An import from a preloaded module that the module does not export.
    #[error("imports `{module}::{name}`, but the preloaded module `{module}` exports no `{name}`")]
    MissingExport {
        /// The import's module name: the preload's name.
        module: String,
        /// The import's field name.
        name: String,
    },
    /// An import from `canon`, the module name reserved for canon's
    /// instrumentation (its fuel and depth counters): a guest may not touch
    /// them.
    #[error("imports `{module}::{name}`: the import module `canon` is reserved for canon's own instrumentation (fuel and call-depth counters)")]
    ReservedImport {
        /// The import's module name.
        module: String,
        /// The import's field name.
        name: String,
    },
    /// An import nobody provides that is not a function (a memory, table,
    /// global or tag): canon's host provides functions only, and only
    /// functions can be stubbed.
    #[error(
        "imports {kind} `{module}::{name}`, which nobody provides; canon's host provides functions only, and only functions can be linked as trapping stubs"
    )]
    NonFunctionImport {
        /// The import's module name.
        module: String,
        /// The import's field name.
        name: String,
        /// What kind of import it is (`memory`, `table`, `global`, `tag`).
        kind: &'static str,
    },
    /// An import canon provides, but declared with another signature.
    #[error("imports `{module}::{name}` as {found}, but canon provides it as {expected}")]
    ImportSignature {
        /// The import's module name.
        module: String,
        /// The import's field name.
        name: String,
        /// The signature canon provides, e.g. `(i32, i32) -> (i32)`.
        expected: String,
        /// The signature the module declares.
        found: String,
    },
    /// No function exported as `_start`, the WASI command entry point.
    #[error("no function exported as `_start` (a WASI command must export `_start: () -> ()`)")]
    MissingStart,
    /// `_start` is exported but is not a `() -> ()` function.
    #[error("`_start` must be a function of type () -> (), found {found}")]
    StartSignature {
        /// What `_start` is, e.g. `(i32) -> ()` or `a global`.
        found: String,
    },
    /// No memory exported as `memory`, through which WASI passes data.
    #[error("no memory exported as `memory` (WASI passes all data through it)")]
    MissingMemory,
    /// The exported `memory` is a 64-bit or shared memory, which WASI
    /// preview 1 cannot address.
    #[error("the exported `memory` is {found}; WASI preview 1 needs a 32-bit, unshared memory")]
    MemoryKind {
        /// What the memory is (`a 64-bit memory`, `a shared memory`).
        found: &'static str,
    },
    /// A threaded module (it imports `wasi::thread-spawn` or uses a shared
    /// memory) that does not import its shared memory as `env.memory`:
    /// canon gives every thread's instance that one memory.
    #[error(
        "the module is threaded but does not import a shared memory as `env.memory` (as wasm32-wasip1-threads builds do): canon gives every thread that one memory"
    )]
    ThreadedMemory,
}

/// Why a job spec, or what a [`JobBuilder`](super::JobBuilder) was given,
/// could not be turned into a [`Job`](super::Job). `file` names the spec
/// (or the builder's source) and indices count inputs and preloads from 0,
/// in the order given.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The spec file could not be read.
    #[error("{file}: cannot read the job spec: {source}")]
    Read {
        /// The spec file.
        file: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The spec is not valid TOML, or a value has the wrong type.
    #[error("{file}:{line}:{col}: {message}")]
    Toml {
        /// The spec file.
        file: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column (in characters) of the error.
        col: usize,
        /// The TOML parser's message.
        message: String,
    },
    /// A key the spec format does not have (often a typo).
    #[error("{file}:{line}:{col}: unknown key `{key}`; expected {expected}")]
    UnknownKey {
        /// The spec file.
        file: String,
        /// 1-based line of the key.
        line: usize,
        /// 1-based column of the key.
        col: usize,
        /// The unknown key.
        key: String,
        /// The keys allowed where it was found, as serde lists them
        /// (`one of \`a\`, \`b\``).
        expected: String,
    },
    /// A required field is absent.
    #[error("{file}: missing required field `{field}`")]
    MissingField {
        /// The spec file.
        file: String,
        /// The field, e.g. `module` or `input[0].guest`.
        field: String,
    },
    /// A field has a value outside what it accepts (empty name, NUL bytes, ...).
    #[error("{file}: `{field}` is {found}; expected {expected}")]
    InvalidField {
        /// The spec file.
        file: String,
        /// The field, e.g. `name`, `args[2]`, `env.PATH`.
        field: String,
        /// What was found, e.g. `empty`.
        found: String,
        /// What is accepted.
        expected: String,
    },
    /// The module file could not be read.
    #[error("{file}: `module`: cannot read {path}: {source}")]
    ModuleRead {
        /// The spec file.
        file: String,
        /// The module's host path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The module cannot be run by canon.
    #[error("{file}: `module` {path}: {source}")]
    Module {
        /// The spec file.
        file: String,
        /// The module's host path.
        path: PathBuf,
        /// What is wrong with it (boxed to keep `JobError` small).
        source: Box<ModuleError>,
    },
    /// `module_sha256` is not a SHA-256 digest.
    #[error("{file}: `module_sha256` is {value:?}; expected 64 lowercase hex digits, optionally prefixed by \"sha256:\"")]
    MalformedSha256 {
        /// The spec file.
        file: String,
        /// The value as written.
        value: String,
    },
    /// The module's SHA-256 is not the one the spec pins.
    #[error("{file}: `module_sha256` is {expected} but module {path} has SHA-256 {actual}")]
    Sha256Mismatch {
        /// The spec file.
        file: String,
        /// The module's host path.
        path: PathBuf,
        /// The digest the spec pins.
        expected: Digest,
        /// The digest of the module's bytes.
        actual: Digest,
    },
    /// A limit is malformed or out of bounds.
    #[error("{file}: `limits.{field}` is {found}; expected {expected}")]
    Limit {
        /// The spec file.
        file: String,
        /// The limit, e.g. `memory`.
        field: &'static str,
        /// The value as written.
        found: String,
        /// What is accepted.
        expected: String,
    },
    /// `commit` is not a git commit id.
    #[error("{file}: `commit` is {value:?}; expected a git commit id of 40 (SHA-1) or 64 (SHA-256) hex digits")]
    Commit {
        /// The spec file.
        file: String,
        /// The value as written.
        value: String,
    },
    /// Both `stdin` and `stdin_file` are given.
    #[error("{file}: `stdin` and `stdin_file` are both given; give at most one")]
    StdinConflict {
        /// The spec file.
        file: String,
    },
    /// `stdin_file` could not be read.
    #[error("{file}: `stdin_file`: cannot read {path}: {source}")]
    StdinRead {
        /// The spec file.
        file: String,
        /// The host path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// An input's host path does not exist or cannot be read.
    #[error("{file}: `input[{index}].host`: cannot read {path}: {source}")]
    InputMissing {
        /// The spec file.
        file: String,
        /// Index of the `[[input]]` table, from 0.
        index: usize,
        /// The host path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// An input that must be a directory (`canon exec --dir`) is not one.
    #[error("{file}: `input[{index}].host`: {path} is not a directory")]
    NotADirectory {
        /// The spec file, or the command.
        file: String,
        /// Index of the input, from 0.
        index: usize,
        /// The host path.
        path: PathBuf,
    },
    /// An input could not be loaded into a tree.
    #[error("{file}: `input[{index}].host`: {source}")]
    InputLoad {
        /// The spec file.
        file: String,
        /// Index of the `[[input]]` table, from 0.
        index: usize,
        /// The underlying error.
        source: TreeError,
    },
    /// argv and the environment together exceed
    /// [`MAX_ARGS_ENV_BYTES`](super::MAX_ARGS_ENV_BYTES).
    #[error(
        "{file}: `{field}` takes argv and environment past the limit of {limit} bytes (counting a NUL after each argument and each NAME=value, as the guest receives them)"
    )]
    ArgsTooLarge {
        /// The spec file.
        file: String,
        /// The field where the limit was crossed: `argv0`, `args[N]` or `env.NAME`.
        field: super::ArgsEnvField,
        /// The limit in bytes.
        limit: u64,
    },
    /// Inputs and stdin together exceed [`MAX_INPUT_BYTES`](super::MAX_INPUT_BYTES).
    #[error("{file}: inputs and stdin exceed the limit of {limit} bytes in total (at {field})")]
    InputsTooLarge {
        /// The spec file.
        file: String,
        /// The field where the limit was crossed.
        field: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// A guest path is not absolute and normalised, or is `/`.
    #[error("{file}: `input[{index}].guest` is {guest:?}: {reason}")]
    GuestPath {
        /// The spec file.
        file: String,
        /// Index of the `[[input]]` table, from 0.
        index: usize,
        /// The guest path as written.
        guest: String,
        /// What is wrong, and what is expected.
        reason: String,
    },
    /// An input uses a path the sandbox reserves (`/tmp`, or below `/out`).
    #[error("{file}: `input[{index}].guest` is {guest:?}: {reason}")]
    Reserved {
        /// The spec file.
        file: String,
        /// Index of the `[[input]]` table, from 0.
        index: usize,
        /// The guest path as written.
        guest: String,
        /// Why it is reserved.
        reason: &'static str,
    },
    /// An input at `/out` is not writable.
    #[error(
        "{file}: `input[{index}]` mounts {guest:?} read-only; an input that seeds /out must set `writable = true`, since /out is where the job's outputs go"
    )]
    OutReadOnly {
        /// The spec file.
        file: String,
        /// Index of the `[[input]]` table, from 0.
        index: usize,
        /// The guest path.
        guest: String,
    },
    /// Two preopens are equal or nested, or two file inputs name the same file.
    #[error("{file}: `input[{first}]` ({first_dir:?}) and `input[{second}]` ({second_dir:?}) {relation}")]
    Overlap {
        /// The spec file.
        file: String,
        /// Index of one input.
        first: usize,
        /// The preopen it makes.
        first_dir: String,
        /// Index of the other input.
        second: usize,
        /// The preopen it makes.
        second_dir: String,
        /// How they collide, and the rule they break.
        relation: &'static str,
    },
    /// File inputs sharing a preopen disagree on `writable`.
    #[error("{file}: `input[{first}]` and `input[{second}]` both put files in {dir:?} but disagree on `writable`")]
    WritableConflict {
        /// The spec file.
        file: String,
        /// Index of one input.
        first: usize,
        /// Index of the other input.
        second: usize,
        /// The preopen they share.
        dir: String,
    },
    /// A `[[preload]]`'s name is empty, reserved, or another preload's.
    #[error("{file}: `preload[{index}].name` is {name:?}; expected {expected}")]
    PreloadName {
        /// The spec file.
        file: String,
        /// Index of the `[[preload]]` table, from 0.
        index: usize,
        /// The name as given.
        name: String,
        /// What a name must be.
        expected: &'static str,
    },
    /// A `[[preload]]`'s module could not be read, is not a module canon
    /// can link, or does not match its `module_sha256`.
    #[error("{file}: `preload[{index}].module` {path}: {message}")]
    Preload {
        /// The spec file.
        file: String,
        /// Index of the `[[preload]]` table, from 0.
        index: usize,
        /// The module's host path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}
