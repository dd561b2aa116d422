//! Errors of the runtime crate: loading and preparing components.
//!
//! A failed invocation is not an error of this crate: it is an [`Outcome`](crate::Outcome)
//! carried by the [`Invocation`](crate::Invocation), because the host keeps serving.

/// Result of this crate's fallible operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a component could not be loaded, compiled, cached or prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes do not start with the WebAssembly magic number.
    #[error("not a WebAssembly binary ({len} bytes, no `\\0asm` header); pass a `.wasm` component")]
    NotWasm {
        /// Length of the rejected input.
        len: u64,
    },
    /// The bytes are a core module, but a component is required.
    #[error(
        "this is a core WebAssembly module, not a component; build for `wasm32-wasip2` \
         (or wrap it with `wasm-tools component new`) so that it exports `wasi:http/incoming-handler`"
    )]
    CoreModuleNotComponent,
    /// The component failed validation or compilation.
    #[error("invalid component {artifact_id}: {reason}")]
    InvalidComponent {
        /// BLAKE3 of the rejected bytes.
        artifact_id: ArtifactId,
        /// What the validator or compiler said.
        reason: String,
    },
    /// The component is valid but is not a `wasi:http/proxy` component.
    #[error(
        "component {artifact_id} cannot serve HTTP: {reason}; it must export \
         `wasi:http/incoming-handler@0.2.x` (the `wasi:http/proxy` world)"
    )]
    NotHttpComponent {
        /// BLAKE3 of the component.
        artifact_id: ArtifactId,
        /// What the linker said.
        reason: String,
    },
    /// The engine could not be configured (for example the pooling allocator
    /// could not reserve its address space).
    #[error("cannot configure the wasm engine: {reason}")]
    Engine {
        /// What wasmtime said.
        reason: String,
    },
    /// The optimizing compiler used its whole budget on the component and
    /// was stopped.
    #[error(
        "Cranelift was stopped compiling {artifact_id}: it used its whole budget \
         ({cpu_seconds} s of CPU, {memory_mib} MiB of memory); a component this costly to \
         optimize runs only on the baseline tier (tiered compilation, the default)"
    )]
    CompileBudget {
        /// BLAKE3 of the component.
        artifact_id: ArtifactId,
        /// The CPU budget it had.
        cpu_seconds: u64,
        /// The memory budget it had.
        memory_mib: u64,
    },
    /// The compile child could not be run or answered something unusable.
    #[error("cannot compile {artifact_id} in a child process: {reason}")]
    CompileChild {
        /// BLAKE3 of the component.
        artifact_id: ArtifactId,
        /// What went wrong.
        reason: String,
    },
    /// The compiled-code cache directory could not be used.
    #[error("compiled-code cache at {path}: {source}")]
    Cache {
        /// The file or directory involved.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

use crate::ArtifactId;
