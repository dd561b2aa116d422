//! Method and path routing.

use crate::{IntoResponse, Method, Request, Response};

type Handler = Box<dyn Fn(Request) -> Response>;

/// Routes requests by method and path pattern to handlers.
///
/// Patterns are `/` separated segments: a literal, `:name` (one segment,
/// captured) or a final `*name` (the rest of the path, captured). Routes are
/// tried in the order added. An unmatched path gives 404; a matched path with
/// another method gives 405 with an `allow` header.
#[derive(Default)]
pub struct Router {
    routes: Vec<(Option<Method>, Vec<Segment>, Handler)>,
}

#[derive(Debug, PartialEq)]
enum Segment {
    Literal(String),
    Param(String),
    Rest(String),
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Router::default()
    }

    /// Adds a route for `method` (`None` matches any method).
    pub fn route<R: IntoResponse>(
        mut self,
        method: Option<Method>,
        pattern: &str,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        let segments = parse_pattern(pattern);
        self.routes.push((
            method,
            segments,
            Box::new(move |request| handler(request).into_response()),
        ));
        self
    }

    /// Adds a GET route.
    pub fn get<R: IntoResponse>(
        self,
        pattern: &str,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        self.route(Some(Method::Get), pattern, handler)
    }

    /// Adds a POST route.
    pub fn post<R: IntoResponse>(
        self,
        pattern: &str,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        self.route(Some(Method::Post), pattern, handler)
    }

    /// Adds a PUT route.
    pub fn put<R: IntoResponse>(
        self,
        pattern: &str,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        self.route(Some(Method::Put), pattern, handler)
    }

    /// Adds a DELETE route.
    pub fn delete<R: IntoResponse>(
        self,
        pattern: &str,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        self.route(Some(Method::Delete), pattern, handler)
    }

    /// Dispatches a request.
    pub fn handle(&self, mut request: Request) -> Response {
        let mut allowed = Vec::new();
        for (method, segments, handler) in &self.routes {
            let Some(params) = match_path(segments, request.path()) else {
                continue;
            };
            match method {
                Some(m) if m != request.method() => allowed.push(m.as_str().to_string()),
                _ => {
                    request.params = params;
                    return handler(request);
                }
            }
        }
        if allowed.is_empty() {
            Response::not_found()
        } else {
            Response::text(405, "method not allowed").with_header("allow", allowed.join(", "))
        }
    }
}

fn parse_pattern(pattern: &str) -> Vec<Segment> {
    pattern
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| match (s.strip_prefix(':'), s.strip_prefix('*')) {
            (Some(name), _) => Segment::Param(name.to_string()),
            (_, Some(name)) => Segment::Rest(name.to_string()),
            _ => Segment::Literal(s.to_string()),
        })
        .collect()
}

fn match_path(segments: &[Segment], path: &str) -> Option<Vec<(String, String)>> {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut params = Vec::new();
    for (idx, segment) in segments.iter().enumerate() {
        match segment {
            Segment::Rest(name) => {
                params.push((name.clone(), parts.get(idx..).unwrap_or(&[]).join("/")));
                return Some(params);
            }
            Segment::Literal(literal) => {
                if parts.get(idx) != Some(&literal.as_str()) {
                    return None;
                }
            }
            Segment::Param(name) => {
                params.push((name.clone(), (*parts.get(idx)?).to_string()));
            }
        }
    }
    (parts.len() == segments.len()).then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::new()
            .get("/", |_| "index")
            .get("/users/:id", |r: Request| {
                format!("user {}", r.param("id").unwrap_or(""))
            })
            .post("/users", |_| Response::text(201, "created"))
            .get("/files/*rest", |r: Request| {
                format!("file {}", r.param("rest").unwrap_or(""))
            })
    }

    fn check(method: Method, path: &str, status: u16, body: &str) {
        let response = router().handle(Request::new(method, path, Vec::new()));
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(response.body(), body.as_bytes(), "{path}");
    }

    #[test]
    fn routes() {
        check(Method::Get, "/", 200, "index");
        check(Method::Get, "/users/42", 200, "user 42");
        check(Method::Get, "/users/42/x", 404, "not found");
        check(Method::Post, "/users", 201, "created");
        check(Method::Delete, "/users", 405, "method not allowed");
        check(Method::Get, "/files/a/b/c", 200, "file a/b/c");
        check(Method::Get, "/nope", 404, "not found");
    }
}
