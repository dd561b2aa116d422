//! Write Bonus HTTP functions in Rust: a handler in a few lines, compiled to a
//! standard `wasi:http/proxy` component.
//!
//! ```no_run
//! use bonus_sdk::{Request, Response};
//!
//! fn handle(request: Request) -> Response {
//!     Response::text(200, format!("hello from {}", request.path()))
//! }
//!
//! bonus_sdk::http_component!(handle);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` in
//! `target/wasm32-wasip2/release/` runs under `bonus serve` and, unchanged,
//! under `wasmtime serve` or Spin.
//!
//! # Core Concepts
//!
//! - [`Request`]: the incoming request; each part (method and path,
//!   headers, body) is read from the host when the handler first asks for
//!   it, the body whole into memory (the host bounds its size).
//! - [`Response`]: status, headers and body, written back when the handler
//!   returns. Anything that implements [`IntoResponse`] may be returned:
//!   `Response`, `String`, `&str`, or `Result<_, E: Display>` (an `Err`
//!   becomes a 500 whose body is the error and which is logged to stderr).
//! - [`Router`]: method + path patterns (`/users/:id`, `/files/*rest`) to
//!   handlers, with 404 and 405 answers.
//! - [`fetch`]: outbound HTTP, allowed only to the hosts the function's
//!   manifest (or `bonus serve --allow-outbound`) lists.
#![deny(missing_docs)]

mod outbound;
mod request;
mod response;
mod router;
mod wasi_glue;

pub use outbound::{FetchError, fetch};
pub use request::{BodyError, Method, Request};
pub use response::{IntoResponse, Response};
pub use router::Router;

/// Reads an environment variable given to the function (`bonus serve --env`,
/// or the manifest's `env`). The host passes no others.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[doc(hidden)]
pub mod __private {
    pub use crate::wasi_glue::serve;
    pub use wasip2;
    pub use wasip2::exports::http::incoming_handler::Guest;
    pub use wasip2::http::types::{IncomingRequest, ResponseOutparam};
}

/// Exports `handler` as the component's `wasi:http/incoming-handler`.
///
/// `handler` is any `fn(Request) -> impl IntoResponse`.
#[macro_export]
macro_rules! http_component {
    ($handler:path) => {
        struct __BonusHttpComponent;

        impl $crate::__private::Guest for __BonusHttpComponent {
            fn handle(
                request: $crate::__private::IncomingRequest,
                response_out: $crate::__private::ResponseOutparam,
            ) {
                $crate::__private::serve(request, response_out, $handler)
            }
        }

        $crate::__private::wasip2::http::proxy::export!(
            __BonusHttpComponent with_types_in $crate::__private::wasip2
        );
    };
}
