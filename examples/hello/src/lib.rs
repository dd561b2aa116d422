//! The smallest Bonus function: answers every request with `hello`.

use bonus_sdk::{Request, Response};

fn handle(_request: Request) -> Response {
    Response::text(200, "hello")
}

bonus_sdk::http_component!(handle);
