//! Run untrusted wasm components under fuel, memory and time limits.
//!
//! The runtime serves standard `wasi:http/proxy` components: anything that
//! runs under `wasmtime serve` or Spin runs here unchanged.
//!
//! ```no_run
//! # async fn example(wasm: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! use bonus_runtime::{Runtime, RuntimeConfig, InvokeParams, Limits, RequestId};
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let function = runtime.load(wasm)?;
//! let request = http::Request::get("http://localhost/").body(http_body_util::Empty::new())?;
//! let params = InvokeParams {
//!     request_id: RequestId::from_u128(1),
//!     random_seed: [0; 32],
//!     limits: Limits::DEFAULT,
//!     caps: Default::default(),
//! };
//! let invocation = function.invoke(request, &params).await;
//! println!("{} after {} fuel", invocation.outcome.status(), invocation.usage.fuel);
//! # Ok(()) }
//! ```
//!
//! # Core Concepts
//!
//! - [`Runtime`]: one per node. Owns the wasmtime `Engine` (cranelift,
//!   pooling allocator, copy-on-write memory images, fuel and epochs), the
//!   linker with all of WASI 0.2 and `wasi:http`, and the compiled-code cache
//!   on disk. Cheap to clone; lives as long as the node.
//! - [`Function`]: a loaded component (compiled, linked, exports checked),
//!   keyed by its [`ArtifactId`]. Shared by every request for that artifact.
//! - An invocation: [`Function::invoke`] makes a fresh `Store` and instance
//!   for one request and drops both at the end, so no state leaks between
//!   requests or tenants. It returns an [`Invocation`]: the response, its
//!   [`Usage`] (fuel, wall time, peak memory), its [`Outcome`] and the
//!   guest's captured logs.
//!
//! # Limits
//!
//! Every invocation runs under [`Limits`]: a fuel budget (deterministic, the
//! billed unit), a wall-clock deadline (epoch interruption, which also makes
//! long-running guests yield to other requests every [`limits::EPOCH_TICK`]),
//! memory and table limits (a `ResourceLimiter`), request and response body
//! sizes and captured log sizes. Guests get no preopened directories, no
//! sockets, only the environment variables passed in [`Capabilities`], and
//! outbound HTTP only to hosts its [`OutboundPolicy`] allows.
#![deny(missing_docs)]

mod cache;
pub mod child;
mod engine;
mod error;
mod fncache;
mod host;
mod invoke;
pub mod limits;
mod logs;
mod outbound;
mod rng;

pub use bonus_ids::{ArtifactId, InvalidArtifactId, RequestId};
pub use child::{CompileBudget, CompileChild};
pub use engine::{Compiler, Runtime, RuntimeConfig, RuntimeStats, Tier, check_header};
pub use error::{Error, Result};
pub use invoke::{Capabilities, Function, Invocation, InvokeParams, Outcome, Usage};
pub use limits::Limits;
pub use logs::{CapturedStream, GuestLogs};
pub use outbound::{InvalidPattern, OutboundPolicy};
