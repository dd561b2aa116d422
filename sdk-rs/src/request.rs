//! The incoming request as the handler sees it.

use crate::wasi_glue::{from_wasi_method, read_body};
use std::sync::{Arc, OnceLock};
use wasip2::http::types::IncomingRequest;

/// An HTTP method.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// PATCH
    Patch,
    /// OPTIONS
    Options,
    /// Any other method, as sent.
    Other(String),
}

impl Method {
    /// The method as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Other(other) => other,
        }
    }
}

/// An incoming request.
///
/// Each part (method and path, headers, body) is read from the host the
/// first time the handler asks for it, and only then: a handler that never
/// looks at the headers or the body makes no host call for them. Reading
/// the whole request up front cost hello 3 µs of its ~8 µs call and 20 % of
/// its requests per second (bench/HISTORY.md, session 20).
#[derive(Clone, Debug)]
pub struct Request {
    source: Arc<Source>,
    pub(crate) params: Vec<(String, String)>,
}

type Headers = Vec<(String, Vec<u8>)>;

/// The request line: what every router looks at first.
#[derive(Clone, Debug)]
struct Line {
    method: Method,
    path: String,
    query: String,
}

impl Line {
    fn new(method: Method, path_and_query: &str) -> Line {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        Line {
            method,
            path: path.to_string(),
            query: query.to_string(),
        }
    }
}

enum Source {
    /// From the host, each part read on first use. Clones share the parts,
    /// so the body (which the host hands out once) is read at most once.
    Host {
        request: IncomingRequest,
        line: OnceLock<Line>,
        headers: OnceLock<Headers>,
        body: OnceLock<Result<Vec<u8>, BodyError>>,
    },
    /// Built by [`Request::new`], for tests of handlers outside a host.
    Local {
        line: Line,
        headers: Headers,
        body: Vec<u8>,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Host {
                line,
                headers,
                body,
                ..
            } => f
                .debug_struct("Host")
                .field("line", &line.get())
                .field("headers", &headers.get())
                .field("body_bytes", &body.get().map(|b| b.as_ref().map(Vec::len)))
                .finish(),
            Source::Local {
                line,
                headers,
                body,
            } => f
                .debug_struct("Local")
                .field("line", line)
                .field("headers", headers)
                .field("body_bytes", &body.len())
                .finish(),
        }
    }
}

/// The request body could not be read (the client went away mid-body, or
/// the host refused it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyError(String);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot read the request body: {}", self.0)
    }
}

impl std::error::Error for BodyError {}

impl Request {
    /// Builds a request, for tests of handlers outside a host.
    pub fn new(method: Method, path_and_query: &str, body: impl Into<Vec<u8>>) -> Self {
        Request {
            source: Arc::new(Source::Local {
                line: Line::new(method, path_and_query),
                headers: Vec::new(),
                body: body.into(),
            }),
            params: Vec::new(),
        }
    }

    /// Adds a header, for tests of handlers outside a host.
    pub fn with_header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        // A request shared with clones, or from the host, gets parts of
        // its own first.
        if !matches!(Arc::get_mut(&mut self.source), Some(Source::Local { .. })) {
            self.source = Arc::new(self.to_local());
        }
        if let Some(Source::Local { headers, .. }) = Arc::get_mut(&mut self.source) {
            headers.push((name.to_string(), value.as_ref().to_vec()));
        }
        self
    }

    fn to_local(&self) -> Source {
        Source::Local {
            line: self.line().clone(),
            headers: self.headers().to_vec(),
            body: self.body().to_vec(),
        }
    }

    pub(crate) fn from_host(request: IncomingRequest) -> Self {
        Request {
            source: Arc::new(Source::Host {
                request,
                line: OnceLock::new(),
                headers: OnceLock::new(),
                body: OnceLock::new(),
            }),
            params: Vec::new(),
        }
    }

    fn line(&self) -> &Line {
        match &*self.source {
            Source::Host { request, line, .. } => line.get_or_init(|| {
                let method = from_wasi_method(request.method());
                let path_and_query = request.path_with_query();
                Line::new(method, path_and_query.as_deref().unwrap_or("/"))
            }),
            Source::Local { line, .. } => line,
        }
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.line().method
    }

    /// The path, without the query string.
    pub fn path(&self) -> &str {
        &self.line().path
    }

    /// The raw query string, without `?`.
    pub fn query(&self) -> &str {
        &self.line().query
    }

    /// The first value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query()
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(key, _)| percent_decode(key) == name)
            .map(|(_, value)| percent_decode(value))
    }

    /// A parameter captured by a [`Router`](crate::Router) pattern (`:id`, `*rest`).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The first value of a header (names are case-insensitive), if UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }

    /// All headers, in order.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        match &*self.source {
            Source::Host {
                request, headers, ..
            } => headers.get_or_init(|| request.headers().entries()),
            Source::Local { headers, .. } => headers,
        }
    }

    /// The body bytes, or why they could not be read.
    pub fn try_body(&self) -> Result<&[u8], &BodyError> {
        match &*self.source {
            Source::Host { request, body, .. } => body
                .get_or_init(|| {
                    let body = request
                        .consume()
                        .map_err(|()| BodyError("the request body was already consumed".into()))?;
                    read_body(body).map_err(BodyError)
                })
                .as_deref(),
            Source::Local { body, .. } => Ok(body),
        }
    }

    /// The body bytes.
    ///
    /// # Panics
    ///
    /// If the body cannot be read (the client went away mid-body): the
    /// function stops there, and the host answers 500 and logs why. Use
    /// [`Request::try_body`] to answer otherwise. Under Bonus the host
    /// holds the whole body before the function starts, so this cannot
    /// happen there.
    pub fn body(&self) -> &[u8] {
        match self.try_body() {
            Ok(body) => body,
            Err(e) => panic!("bonus-sdk: {e}"),
        }
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(self.body())
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(self.body())
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_percent_decoded() {
        let request = Request::new(
            Method::Get,
            "/p?url=http%3A%2F%2Fa%2Fb&x=1+2&flag&bad=%zz%",
            "",
        );
        assert_eq!(request.path(), "/p");
        assert_eq!(request.query_param("url").as_deref(), Some("http://a/b"));
        assert_eq!(request.query_param("x").as_deref(), Some("1 2"));
        assert_eq!(request.query_param("flag").as_deref(), Some(""));
        assert_eq!(request.query_param("bad").as_deref(), Some("%zz%"));
        assert_eq!(request.query_param("missing"), None);
    }

    #[test]
    fn a_request_can_move_between_threads_and_clones_share_its_parts() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Request>();
        let request = Request::new(Method::Post, "/a?b=c", "body")
            .with_header("X-One", "1")
            .with_header("x-two", "2");
        let copy = request.clone().with_header("x-three", "3");
        assert_eq!(request.headers().len(), 2);
        assert_eq!(copy.headers().len(), 3);
        assert_eq!(copy.header("x-one"), Some("1"));
        assert_eq!(copy.path(), "/a");
        assert_eq!(copy.query(), "b=c");
        assert_eq!(copy.method(), &Method::Post);
        assert_eq!(copy.body(), b"body");
        assert_eq!(request.try_body(), Ok(&b"body"[..]));
    }
}
