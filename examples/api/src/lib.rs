//! A small JSON API: path routing, JSON in and out, an environment variable
//! and an outbound call.
//!
//! - `GET /` lists the routes.
//! - `GET /hello/:name` greets, using `$GREETING` (default `hello`).
//! - `POST /echo` parses a JSON object and returns it with `"echoed": true`.
//! - `GET /fetch?url=…` calls another service (allowed hosts only).

use bonus_sdk::{Method, Request, Response, Router};
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct Greeting {
    greeting: String,
    name: String,
}

#[derive(Deserialize, Serialize)]
struct Echo {
    #[serde(flatten)]
    fields: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    echoed: bool,
}

fn handle(request: Request) -> Response {
    Router::new()
        .get("/", |_| {
            Response::json(200, &["GET /hello/:name", "POST /echo", "GET /fetch?url="])
        })
        .get("/hello/:name", greet)
        .post("/echo", echo)
        .get("/fetch", fetch)
        .handle(request)
}

fn greet(request: Request) -> Response {
    let greeting = bonus_sdk::env("GREETING").unwrap_or_else(|| "hello".into());
    let name = request.param("name").unwrap_or("world").to_string();
    Response::json(
        200,
        &Greeting {
            greeting: format!("{greeting}, {name}"),
            name,
        },
    )
}

fn echo(request: Request) -> Response {
    match request.json::<Echo>() {
        Ok(mut echo) => {
            echo.echoed = true;
            Response::json(200, &echo)
        }
        Err(e) => Response::json(400, &serde_json::json!({ "error": e.to_string() })),
    }
}

fn fetch(request: Request) -> Response {
    let Some(url) = request.query_param("url") else {
        return Response::json(400, &serde_json::json!({ "error": "missing ?url=" }));
    };
    match bonus_sdk::fetch(Method::Get, &url, &[], &[]) {
        Ok(upstream) => Response::json(
            200,
            &serde_json::json!({
                "status": upstream.status(),
                "body": String::from_utf8_lossy(upstream.body()),
            }),
        ),
        Err(e) => Response::json(502, &serde_json::json!({ "error": e.to_string() })),
    }
}

bonus_sdk::http_component!(handle);
