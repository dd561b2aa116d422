//! The blob protocol's messages and their framing: a big-endian `u32`
//! length, then the message. Requests are tiny; responses carry at most one
//! segment of bao-encoded data.

use bonus_ids::ArtifactId;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use std::io;

/// The protocol name on the wire.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/bonus/blob/1");

const REQUEST_BYTES_MAX: u32 = 1024;
/// A segment's data plus its parent hashes, with room to spare.
const RESPONSE_BYTES_MAX: u32 = 4 << 20;

/// What a peer may ask about a blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobRequest {
    /// Do you hold it, and how big is it?
    Info(ArtifactId),
    /// The bao encoding of chunks `[start, end)` (1 KiB chunks).
    Range {
        /// The blob.
        artifact_id: ArtifactId,
        /// First chunk.
        start_chunk: u64,
        /// One past the last chunk.
        end_chunk: u64,
    },
}

/// A peer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobResponse {
    /// `Some(size)` if held.
    Info(Option<u64>),
    /// Bao-encoded range: chunk data interleaved with the parent hashes
    /// needed to verify it against the root.
    Range(Vec<u8>),
    /// The peer cannot serve it (unknown, failed to read…).
    Unavailable(String),
}

/// Request-response codec for [`BlobRequest`] and [`BlobResponse`].
#[derive(Clone, Copy, Debug, Default)]
pub struct BlobCodec;

impl libp2p::request_response::Codec for BlobCodec {
    type Protocol = StreamProtocol;
    type Request = BlobRequest;
    type Response = BlobResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<BlobRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        let frame = read_frame(io, REQUEST_BYTES_MAX).await?;
        decode_request(&frame).ok_or_else(|| invalid("malformed blob request"))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<BlobResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let frame = read_frame(io, RESPONSE_BYTES_MAX).await?;
        decode_response(frame).ok_or_else(|| invalid("malformed blob response"))
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: BlobRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &encode_request(&request)).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: BlobResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &encode_response(&response)).await
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

async fn read_frame<T: AsyncRead + Unpin>(io: &mut T, bytes_max: u32) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len);
    if len > bytes_max {
        return Err(invalid("frame exceeds its limit"));
    }
    let mut frame = vec![0u8; len as usize];
    io.read_exact(&mut frame).await?;
    Ok(frame)
}

async fn write_frame<T: AsyncWrite + Unpin>(io: &mut T, frame: &[u8]) -> io::Result<()> {
    let len = u32::try_from(frame.len()).map_err(|_| invalid("frame too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(frame).await?;
    io.close().await
}

fn encode_request(request: &BlobRequest) -> Vec<u8> {
    match request {
        BlobRequest::Info(id) => [&[0u8][..], id.as_bytes()].concat(),
        BlobRequest::Range {
            artifact_id,
            start_chunk,
            end_chunk,
        } => [
            &[1u8][..],
            artifact_id.as_bytes(),
            &start_chunk.to_be_bytes(),
            &end_chunk.to_be_bytes(),
        ]
        .concat(),
    }
}

fn decode_request(frame: &[u8]) -> Option<BlobRequest> {
    let (&tag, rest) = frame.split_first()?;
    let id = ArtifactId::from_bytes(rest.get(..32)?.try_into().ok()?);
    match (tag, rest.len()) {
        (0, 32) => Some(BlobRequest::Info(id)),
        (1, 48) => Some(BlobRequest::Range {
            artifact_id: id,
            start_chunk: u64::from_be_bytes(rest[32..40].try_into().ok()?),
            end_chunk: u64::from_be_bytes(rest[40..48].try_into().ok()?),
        }),
        _ => None,
    }
}

fn encode_response(response: &BlobResponse) -> Vec<u8> {
    match response {
        BlobResponse::Info(None) => vec![0, 0],
        BlobResponse::Info(Some(size)) => [&[0u8, 1][..], &size.to_be_bytes()].concat(),
        BlobResponse::Range(bytes) => [&[1u8][..], bytes].concat(),
        BlobResponse::Unavailable(reason) => [&[2u8][..], reason.as_bytes()].concat(),
    }
}

fn decode_response(mut frame: Vec<u8>) -> Option<BlobResponse> {
    if frame.is_empty() {
        return None;
    }
    let tag = frame.remove(0);
    match (tag, frame.as_slice()) {
        (0, [0]) => Some(BlobResponse::Info(None)),
        (0, [1, size @ ..]) => Some(BlobResponse::Info(Some(u64::from_be_bytes(
            size.try_into().ok()?,
        )))),
        (1, _) => Some(BlobResponse::Range(frame)),
        (2, reason) => Some(BlobResponse::Unavailable(
            String::from_utf8_lossy(reason).into_owned(),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_rejected() {
        let id = ArtifactId::of(b"x");
        for request in [
            BlobRequest::Info(id),
            BlobRequest::Range {
                artifact_id: id,
                start_chunk: 3,
                end_chunk: 9,
            },
        ] {
            assert_eq!(decode_request(&encode_request(&request)), Some(request));
        }
        for response in [
            BlobResponse::Info(None),
            BlobResponse::Info(Some(42)),
            BlobResponse::Range(vec![1, 2, 3]),
            BlobResponse::Unavailable("no".into()),
        ] {
            assert_eq!(decode_response(encode_response(&response)), Some(response));
        }
        assert_eq!(decode_request(&[7; 33]), None);
        assert_eq!(decode_request(&[0; 5]), None);
        assert_eq!(decode_response(vec![9]), None);
    }
}
