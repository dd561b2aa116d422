//! The bridge between `wasi:http` resources and [`Request`]/[`Response`].

use crate::{IntoResponse, Method, Request, Response};
use std::collections::HashMap;
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method as WasiMethod, OutgoingBody, OutgoingResponse,
    ResponseOutparam,
};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};

/// Largest write `blocking-write-and-flush` accepts.
const WRITE_CHUNK_MAX: usize = 4096;

/// Reads the request, runs the handler, writes the response.
pub fn serve<R: IntoResponse>(
    incoming: IncomingRequest,
    response_out: ResponseOutparam,
    handler: impl FnOnce(Request) -> R,
) {
    let request = match read_request(&incoming) {
        Ok(request) => request,
        Err(message) => {
            eprintln!("bonus-sdk: cannot read the request: {message}");
            write_response(response_out, Response::text(400, message));
            return;
        }
    };
    drop(incoming);
    write_response(response_out, handler(request).into_response());
}

fn read_request(incoming: &IncomingRequest) -> Result<Request, String> {
    let method = from_wasi_method(incoming.method());
    let path_and_query = incoming.path_with_query().unwrap_or_else(|| "/".into());
    let (path, query) = path_and_query
        .split_once('?')
        .map(|(p, q)| (p.to_string(), q.to_string()))
        .unwrap_or((path_and_query.clone(), String::new()));
    let headers = incoming.headers().entries();
    let body = incoming
        .consume()
        .map_err(|()| "the request body was already consumed".to_string())?;
    let body = read_body(body)?;
    Ok(Request {
        method,
        path,
        query,
        headers,
        body,
        params: HashMap::new(),
    })
}

pub(crate) fn read_body(body: IncomingBody) -> Result<Vec<u8>, String> {
    let stream = body
        .stream()
        .map_err(|()| "the body stream was already taken".to_string())?;
    let bytes = read_stream(&stream)?;
    drop(stream);
    drop(IncomingBody::finish(body));
    Ok(bytes)
}

fn read_stream(stream: &InputStream) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(bytes),
            Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
        }
    }
}

pub(crate) fn write_all(stream: &OutputStream, bytes: &[u8]) -> Result<(), String> {
    for chunk in bytes.chunks(WRITE_CHUNK_MAX) {
        stream
            .blocking_write_and_flush(chunk)
            .map_err(|e| format!("{e:?}"))?;
    }
    Ok(())
}

fn write_response(response_out: ResponseOutparam, response: Response) {
    let headers = Fields::new();
    for (name, value) in &response.headers {
        if let Err(e) = headers.append(name, value) {
            eprintln!("bonus-sdk: dropping response header {name:?}: {e:?}");
        }
    }
    let outgoing = OutgoingResponse::new(headers);
    if outgoing.set_status_code(response.status).is_err() {
        eprintln!(
            "bonus-sdk: invalid status {}; answering 500",
            response.status
        );
        let _ = outgoing.set_status_code(500);
    }
    let body = outgoing.body().expect("a new response has a body");
    ResponseOutparam::set(response_out, Ok(outgoing));
    let stream = body.write().expect("a new body has a stream");
    if let Err(e) = write_all(&stream, &response.body) {
        // The client went away or the host refused the body (too large):
        // nothing more can be said to the client.
        eprintln!("bonus-sdk: writing the response body failed: {e}");
        return;
    }
    drop(stream);
    if let Err(e) = OutgoingBody::finish(body, None) {
        eprintln!("bonus-sdk: finishing the response body failed: {e:?}");
    }
}

pub(crate) fn from_wasi_method(method: WasiMethod) -> Method {
    match method {
        WasiMethod::Get => Method::Get,
        WasiMethod::Head => Method::Head,
        WasiMethod::Post => Method::Post,
        WasiMethod::Put => Method::Put,
        WasiMethod::Delete => Method::Delete,
        WasiMethod::Patch => Method::Patch,
        WasiMethod::Options => Method::Options,
        WasiMethod::Connect => Method::Other("CONNECT".into()),
        WasiMethod::Trace => Method::Other("TRACE".into()),
        WasiMethod::Other(other) => Method::Other(other),
    }
}

pub(crate) fn to_wasi_method(method: &Method) -> WasiMethod {
    match method {
        Method::Get => WasiMethod::Get,
        Method::Head => WasiMethod::Head,
        Method::Post => WasiMethod::Post,
        Method::Put => WasiMethod::Put,
        Method::Delete => WasiMethod::Delete,
        Method::Patch => WasiMethod::Patch,
        Method::Options => WasiMethod::Options,
        Method::Other(other) => WasiMethod::Other(other.clone()),
    }
}
