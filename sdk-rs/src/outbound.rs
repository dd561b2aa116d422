//! Outbound HTTP from a function.

use crate::wasi_glue::{read_body, to_wasi_method, write_all};
use crate::{Method, Response};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, OutgoingBody, OutgoingRequest, Scheme};

/// Why an outbound request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The URL is not `http(s)://host[:port]/path`.
    InvalidUrl(String),
    /// The host refused or failed the request; for a destination not in the
    /// function's allowed outbound hosts this is `HttpRequestDenied`.
    Http(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::InvalidUrl(url) => write!(f, "invalid url {url:?}"),
            FetchError::Http(code) => write!(f, "outbound request failed: {code}"),
        }
    }
}

impl std::error::Error for FetchError {}

/// Sends a request and waits for the whole response.
pub fn fetch(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, FetchError> {
    let invalid = || FetchError::InvalidUrl(url.to_string());
    let (scheme, rest) = url.split_once("://").ok_or_else(invalid)?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err(invalid()),
    };
    let (authority, path) = match rest.find('/') {
        Some(idx) => (&rest[..idx], &rest[idx..]),
        None => (rest, "/"),
    };
    let fields = Fields::new();
    for (name, value) in headers {
        fields
            .append(name, value.as_bytes())
            .map_err(|e| FetchError::Http(format!("header {name}: {e:?}")))?;
    }
    let request = OutgoingRequest::new(fields);
    let set = request
        .set_method(&to_wasi_method(&method))
        .and(request.set_scheme(Some(&scheme)))
        .and(request.set_authority(Some(authority)))
        .and(request.set_path_with_query(Some(path)));
    set.map_err(|()| invalid())?;
    let outgoing_body = request.body().expect("a new request has a body");
    let future = outgoing_handler::handle(request, None)
        .map_err(|code| FetchError::Http(format!("{code:?}")))?;
    {
        let stream = outgoing_body.write().expect("a new body has a stream");
        write_all(&stream, body).map_err(FetchError::Http)?;
    }
    OutgoingBody::finish(outgoing_body, None)
        .map_err(|code| FetchError::Http(format!("{code:?}")))?;
    future.subscribe().block();
    let incoming = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(FetchError::Http(format!("{code:?}"))),
        Some(Err(())) | None => return Err(FetchError::Http("response already taken".into())),
    };
    let status = incoming.status();
    let headers = incoming.headers().entries();
    let body = incoming
        .consume()
        .map_err(|()| FetchError::Http("response body already taken".into()))?;
    let body = read_body(body).map_err(FetchError::Http)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}
