//! The bridge between `wasi:http` resources and [`Request`]/[`Response`].

use crate::{IntoResponse, Method, Request, Response};
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method as WasiMethod, OutgoingBody, OutgoingResponse,
    ResponseOutparam,
};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};

/// Largest write `blocking-write-and-flush` accepts.
const WRITE_CHUNK_MAX: usize = 4096;

/// Runs the handler and writes its response. The request's parts are
/// read from the host only when the handler asks for them.
pub fn serve<R: IntoResponse>(
    incoming: IncomingRequest,
    response_out: ResponseOutparam,
    handler: impl FnOnce(Request) -> R,
) {
    let response = handler(Request::from_host(incoming)).into_response();
    write_response(response_out, response);
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
    // One host call for all the headers; per header only if one is refused,
    // to name it and keep the others.
    let headers = Fields::from_list(&response.headers).unwrap_or_else(|_| {
        let headers = Fields::new();
        for (name, value) in &response.headers {
            if let Err(e) = headers.append(name, value) {
                eprintln!("bonus-sdk: dropping response header {name:?}: {e:?}");
            }
        }
        headers
    });
    let outgoing = OutgoingResponse::new(headers);
    // A new response is 200 already: no call for the common case.
    if response.status != 200 && outgoing.set_status_code(response.status).is_err() {
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
