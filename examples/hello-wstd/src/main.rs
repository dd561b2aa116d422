//! A `wasi:http/proxy` component written with `wstd`, not with Bonus' SDK:
//! it proves that any standard component runs on Bonus unchanged.

use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let path = request.uri().path().to_string();
    Ok(Response::new(format!("hello from wstd at {path}").into()))
}
