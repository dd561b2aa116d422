//! The blob protocols' messages and their framing: a big-endian `u32`
//! length, then the message. Every frame is checked against its limit
//! before a byte of it is allocated.
//!
//! Two protocols carry them:
//! - [`PROTOCOL`], request-response: [`BlobRequest::Info`] answered by
//!   [`BlobResponse::Info`], the peer's have-bitmap of verified segments
//!   and, if it serves segments directly, a [`Direct`] ticket.
//! - A segment stream, one long-lived stream per fetching peer: the
//!   fetcher pipelines [`BlobRequest::Range`] frames, the server answers
//!   each, in order, with [`BlobResponse::Segment`] (bao-encoded, verified
//!   by the fetcher against the root) or [`BlobResponse::Missing`]. It is
//!   a plain TCP connection to the [`Direct`] port, opened with a
//!   [hello](write_hello) that names the fetcher and shows its ticket (one
//!   byte from the server accepts it), or,
//!   where that cannot connect, a libp2p stream of [`STREAM_PROTOCOL`].
//!
//! Why plain TCP for the bulk: every segment is verified against the
//! artifact id, so libp2p's encryption adds no integrity, and on loopback
//! it cost most of a fetch's CPU (50 MiB to 3 nodes took 11× one plain TCP
//! copy). Who may open a direct stream is still decided over libp2p: the
//! ticket is a MAC of the fetcher's peer id that only an authenticated
//! Info answer hands out, so the per-peer stream limits hold on both
//! paths.

use super::limits::{
    HELLO_FRAME_BYTES_MAX, INFO_FRAME_BYTES_MAX, REASON_BYTES_MAX, REQUEST_FRAME_BYTES_MAX,
    SEGMENT_FRAME_BYTES_MAX, SEGMENTS_MAX,
};
use bonus_ids::ArtifactId;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{PeerId, StreamProtocol};
use std::io;

/// The have-bitmap query, request-response.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/bonus/blob/3");
/// Segments streamed to a fetcher.
pub const STREAM_PROTOCOL: StreamProtocol = StreamProtocol::new("/bonus/blob-stream/1");

/// What a peer may ask about a blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobRequest {
    /// How big is it, and which segments of it have you verified?
    Info(ArtifactId),
    /// The bao encoding of one segment (on the stream only).
    Range {
        /// The blob.
        artifact_id: ArtifactId,
        /// Which segment: chunks `[segment × SEGMENT_CHUNKS, …)`.
        segment: u32,
    },
}

/// Which segments of a blob a peer has verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Have {
    /// The blob's size (which the bao root later proves).
    pub bytes: u64,
    /// Bit `i` (LSB first in byte `i / 8`) is set if segment `i` is held;
    /// exactly `n_segments(bytes).div_ceil(8)` bytes.
    pub segments: Vec<u8>,
    /// Where and how to open a direct segment stream to the peer.
    pub direct: Option<Direct>,
}

/// A direct segment stream: a TCP port on the address the peer is
/// connected from, and the asker's ticket for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Direct {
    /// The TCP port.
    pub port: u16,
    /// MAC of the asker's peer id under the server's key: shown in the
    /// hello, it lets the server count the stream against that peer.
    pub ticket: [u8; 32],
}

/// Bytes a [`Direct`] adds to an Info answer.
pub(crate) const DIRECT_BYTES: usize = 2 + 32;

/// A peer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobResponse {
    /// `Some` if any of it is held.
    Info(Option<Have>),
    /// Bao-encoded segment: chunk data interleaved with the parent hashes
    /// needed to verify it against the root.
    Segment {
        /// Which segment.
        segment: u32,
        /// The encoding.
        encoded: bytes::Bytes,
    },
    /// The peer has not verified this segment (yet).
    Missing {
        /// Which segment.
        segment: u32,
    },
    /// The peer cannot serve it (failed to read…), at most
    /// `REASON_BYTES_MAX` bytes of reason.
    Unavailable(String),
}

/// How many segments a blob of `bytes` has (an empty blob has one).
pub fn n_segments(bytes: u64) -> u64 {
    bytes
        .div_ceil(1024)
        .max(1)
        .div_ceil(super::limits::SEGMENT_CHUNKS)
}

/// Request-response codec for [`BlobRequest::Info`] and [`BlobResponse`].
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
        let frame = read_frame(io, REQUEST_FRAME_BYTES_MAX).await?;
        decode_request(&frame).ok_or_else(|| invalid("malformed blob request"))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<BlobResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let frame = read_frame(io, INFO_FRAME_BYTES_MAX).await?;
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
        write_frame(io, &encode_request(&request)).await?;
        io.close().await
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
        write_frame(io, &encode_response(&response)).await?;
        io.close().await
    }
}

/// Reads one request from a stream; `None` at a clean end of stream.
pub(crate) async fn read_stream_request<T: AsyncRead + Unpin>(
    io: &mut T,
) -> io::Result<Option<BlobRequest>> {
    let mut len = [0u8; 4];
    match io.read_exact(&mut len).await {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        other => other?,
    }
    let frame = read_body(io, u32::from_be_bytes(len), REQUEST_FRAME_BYTES_MAX).await?;
    decode_request(&frame)
        .map(Some)
        .ok_or_else(|| invalid("malformed blob request"))
}

/// Reads one segment answer from a stream.
#[cfg(test)]
pub(crate) async fn read_stream_response<T: AsyncRead + Unpin>(
    io: &mut T,
) -> io::Result<BlobResponse> {
    let mut buffer = Vec::new();
    Ok(match read_stream_answer(io, &mut buffer).await? {
        StreamAnswer::Segment(segment) => BlobResponse::Segment {
            segment,
            encoded: bytes::Bytes::copy_from_slice(&buffer[SEGMENT_HEAD..]),
        },
        StreamAnswer::Other(response) => response,
    })
}

/// An answer on a segment stream, read by [`read_stream_answer`].
#[derive(Debug)]
pub(crate) enum StreamAnswer {
    /// A segment, whose encoding is in the buffer from [`SEGMENT_HEAD`] on.
    Segment(u32),
    /// Anything else.
    Other(BlobResponse),
}

/// Bytes before a segment's encoding in its frame: tag and number.
pub(crate) const SEGMENT_HEAD: usize = 5;

/// Reads one answer from a segment stream into `buffer`, reusing its
/// allocation: a puller reads many, and a fresh megabyte for each costs
/// page faults.
pub(crate) async fn read_stream_answer<T: AsyncRead + Unpin>(
    io: &mut T,
    buffer: &mut Vec<u8>,
) -> io::Result<StreamAnswer> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len);
    if len > SEGMENT_FRAME_BYTES_MAX {
        return Err(invalid("frame exceeds its limit"));
    }
    if buffer.capacity() < len as usize {
        // Zeroed by the allocator (fresh pages are zero already) rather
        // than by a fill.
        *buffer = vec![0; len as usize];
    } else {
        // Only what grows is zeroed; the rest is overwritten by the read.
        buffer.resize(len as usize, 0);
    }
    io.read_exact(&mut buffer[..]).await?;
    if let [1, a, b, c, d, ..] = buffer[..] {
        return Ok(StreamAnswer::Segment(u32::from_be_bytes([a, b, c, d])));
    }
    decode_response(buffer.clone())
        .map(StreamAnswer::Other)
        .ok_or_else(|| invalid("malformed blob response"))
}

/// Writes one request to a stream (without closing it).
pub(crate) async fn write_stream_request<T: AsyncWrite + Unpin>(
    io: &mut T,
    request: &BlobRequest,
) -> io::Result<()> {
    write_frame(io, &encode_request(request)).await?;
    io.flush().await
}

/// Writes one answer to a stream (without closing it).
pub(crate) async fn write_stream_response<T: AsyncWrite + Unpin>(
    io: &mut T,
    response: &BlobResponse,
) -> io::Result<()> {
    match response {
        BlobResponse::Segment { segment, encoded } => write_segment(io, *segment, encoded).await,
        other => {
            write_frame(io, &encode_response(other)).await?;
            io.flush().await
        }
    }
}

/// Writes a [`BlobResponse::Segment`] of `encoded`: the bulk of the
/// traffic, written as it is, not copied into a frame.
pub(crate) async fn write_segment<T: AsyncWrite + Unpin>(
    io: &mut T,
    segment: u32,
    encoded: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(encoded.len() + 5).map_err(|_| invalid("frame too large"))?;
    let mut head = [0u8; 9];
    head[..4].copy_from_slice(&len.to_be_bytes());
    head[4] = 1;
    head[5..].copy_from_slice(&segment.to_be_bytes());
    io.write_all(&head).await?;
    io.write_all(encoded).await?;
    io.flush().await
}

/// Opens a direct segment stream: who asks (a libp2p peer id) and its
/// ticket from that peer's Info answer.
pub(crate) async fn write_hello<T: AsyncWrite + Unpin>(
    io: &mut T,
    peer: &PeerId,
    ticket: &[u8; 32],
) -> io::Result<()> {
    write_frame(io, &[&peer.to_bytes()[..], &ticket[..]].concat()).await?;
    io.flush().await
}

/// The server's answer to a hello it accepts (it closes the connection
/// on any other): until it comes, a fetcher can still go over libp2p.
const HELLO_ACCEPTED: u8 = 1;

/// Accepts a direct segment stream's hello.
pub(crate) async fn write_hello_accepted<T: AsyncWrite + Unpin>(io: &mut T) -> io::Result<()> {
    io.write_all(&[HELLO_ACCEPTED]).await?;
    io.flush().await
}

/// Waits for the server to accept our hello.
pub(crate) async fn read_hello_accepted<T: AsyncRead + Unpin>(io: &mut T) -> io::Result<()> {
    let mut answer = [0u8; 1];
    io.read_exact(&mut answer).await?;
    if answer[0] != HELLO_ACCEPTED {
        return Err(invalid("hello not accepted"));
    }
    Ok(())
}

/// Reads the hello of a direct segment stream.
pub(crate) async fn read_hello<T: AsyncRead + Unpin>(io: &mut T) -> io::Result<(PeerId, [u8; 32])> {
    let frame = read_frame(io, HELLO_FRAME_BYTES_MAX).await?;
    let split = frame
        .len()
        .checked_sub(32)
        .ok_or_else(|| invalid("short hello"))?;
    let peer = PeerId::from_bytes(&frame[..split]).map_err(|_| invalid("malformed peer id"))?;
    let ticket = frame[split..]
        .try_into()
        .map_err(|_| invalid("malformed ticket"))?;
    Ok((peer, ticket))
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

async fn read_frame<T: AsyncRead + Unpin>(io: &mut T, bytes_max: u32) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    read_body(io, u32::from_be_bytes(len), bytes_max).await
}

async fn read_body<T: AsyncRead + Unpin>(
    io: &mut T,
    len: u32,
    bytes_max: u32,
) -> io::Result<Vec<u8>> {
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
    io.write_all(frame).await
}

fn encode_request(request: &BlobRequest) -> Vec<u8> {
    match request {
        BlobRequest::Info(id) => [&[0u8][..], id.as_bytes()].concat(),
        BlobRequest::Range {
            artifact_id,
            segment,
        } => [&[1u8][..], artifact_id.as_bytes(), &segment.to_be_bytes()].concat(),
    }
}

fn decode_request(frame: &[u8]) -> Option<BlobRequest> {
    let (&tag, rest) = frame.split_first()?;
    let id = ArtifactId::from_bytes(rest.get(..32)?.try_into().ok()?);
    match (tag, rest.len()) {
        (0, 32) => Some(BlobRequest::Info(id)),
        (1, 36) => Some(BlobRequest::Range {
            artifact_id: id,
            segment: u32::from_be_bytes(rest[32..36].try_into().ok()?),
        }),
        _ => None,
    }
}

fn encode_response(response: &BlobResponse) -> Vec<u8> {
    match response {
        BlobResponse::Info(None) => vec![0, 0],
        BlobResponse::Info(Some(have)) => {
            let mut frame = [&[0u8, 1][..], &have.bytes.to_be_bytes(), &have.segments].concat();
            if let Some(direct) = &have.direct {
                frame.extend_from_slice(&direct.port.to_be_bytes());
                frame.extend_from_slice(&direct.ticket);
            }
            frame
        }
        BlobResponse::Segment { segment, encoded } => {
            [&[1u8][..], &segment.to_be_bytes(), encoded].concat()
        }
        BlobResponse::Missing { segment } => [&[3u8][..], &segment.to_be_bytes()].concat(),
        BlobResponse::Unavailable(reason) => {
            let mut end = reason.len().min(REASON_BYTES_MAX);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            [&[2u8][..], &reason.as_bytes()[..end]].concat()
        }
    }
}

fn decode_response(frame: impl Into<bytes::Bytes>) -> Option<BlobResponse> {
    let frame: bytes::Bytes = frame.into();
    let (&tag, rest) = frame.split_first()?;
    match (tag, rest) {
        (0, [0]) => Some(BlobResponse::Info(None)),
        (0, [1, size @ ..]) => {
            let bytes = u64::from_be_bytes(size.get(..8)?.try_into().ok()?);
            let n = n_segments(bytes);
            if n > u64::from(SEGMENTS_MAX) {
                return None;
            }
            let bitmap_len = n.div_ceil(8) as usize;
            let rest = &size[8..];
            let direct = match rest.len().checked_sub(bitmap_len)? {
                0 => None,
                DIRECT_BYTES => {
                    let direct = &rest[bitmap_len..];
                    Some(Direct {
                        port: u16::from_be_bytes([direct[0], direct[1]]),
                        ticket: direct[2..].try_into().ok()?,
                    })
                }
                _ => return None,
            };
            Some(BlobResponse::Info(Some(Have {
                bytes,
                segments: rest[..bitmap_len].to_vec(),
                direct,
            })))
        }
        (1, [a, b, c, d, ..]) => {
            let segment = u32::from_be_bytes([*a, *b, *c, *d]);
            Some(BlobResponse::Segment {
                segment,
                encoded: frame.slice(5..),
            })
        }
        (3, [a, b, c, d]) => Some(BlobResponse::Missing {
            segment: u32::from_be_bytes([*a, *b, *c, *d]),
        }),
        (2, reason) if reason.len() <= REASON_BYTES_MAX => Some(BlobResponse::Unavailable(
            String::from_utf8_lossy(reason).into_owned(),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    #[test]
    fn messages_round_trip_and_garbage_is_rejected() {
        let id = ArtifactId::of(b"x");
        for request in [
            BlobRequest::Info(id),
            BlobRequest::Range {
                artifact_id: id,
                segment: 9,
            },
        ] {
            assert_eq!(decode_request(&encode_request(&request)), Some(request));
        }
        for response in [
            BlobResponse::Info(None),
            BlobResponse::Info(Some(Have {
                bytes: 42,
                segments: vec![1],
                direct: None,
            })),
            BlobResponse::Info(Some(Have {
                bytes: 9 << 20,
                segments: vec![0xff, 1],
                direct: Some(Direct {
                    port: 4001,
                    ticket: [9; 32],
                }),
            })),
            BlobResponse::Segment {
                segment: 3,
                encoded: bytes::Bytes::from_static(&[1, 2, 3]),
            },
            BlobResponse::Missing { segment: 7 },
            BlobResponse::Unavailable("no".into()),
        ] {
            assert_eq!(decode_response(encode_response(&response)), Some(response));
        }
        assert_eq!(decode_request(&[7; 33]), None);
        assert_eq!(decode_request(&[0; 5]), None);
        assert_eq!(decode_request(&[1; 40]), None);
        assert_eq!(decode_response(vec![9]), None);
        assert_eq!(decode_response(vec![1, 0, 0]), None);
        assert_eq!(decode_response(vec![3, 0, 0, 0, 0, 0]), None);
    }

    /// Segments go out without being copied into a frame; they read back
    /// as one.
    #[test]
    fn a_streamed_segment_reads_back() {
        let answer = BlobResponse::Segment {
            segment: 11,
            encoded: bytes::Bytes::from(vec![7u8; 3000]),
        };
        let mut out = Cursor::new(Vec::new());
        futures::executor::block_on(write_stream_response(&mut out, &answer)).expect("writes");
        let mut io = Cursor::new(out.into_inner());
        let read = futures::executor::block_on(read_stream_response(&mut io)).expect("reads");
        assert_eq!(read, answer);
    }

    /// A have-bitmap must have exactly the length its size implies, and a
    /// size beyond `SEGMENTS_MAX` segments is refused: a peer cannot make
    /// us track more segments than the limit.
    #[test]
    fn a_hostile_have_bitmap_is_refused() {
        let info = |bytes: u64, segments: Vec<u8>| {
            encode_response(&BlobResponse::Info(Some(Have {
                bytes,
                segments,
                direct: None,
            })))
        };
        assert_eq!(decode_response(info(9 << 20, vec![0xff])), None, "short");
        assert_eq!(decode_response(info(1, vec![1, 0])), None, "long");
        // Neither a bitmap nor a bitmap and a direct ticket.
        assert_eq!(decode_response(info(1, vec![1; 1 + 5])), None, "odd tail");
        let huge = u64::from(SEGMENTS_MAX + 1) << 20;
        let bitmap = vec![0xff; n_segments(huge).div_ceil(8) as usize];
        assert_eq!(decode_response(info(huge, bitmap)), None, "too many");
        assert_eq!(decode_response(info(u64::MAX, vec![])), None);
    }

    /// A frame that claims more than its limit is refused from its length
    /// alone, before anything is allocated or read.
    #[test]
    fn an_oversized_frame_is_refused_before_allocation() {
        let check = |bytes_max: u32, claimed: u32| {
            let mut io = Cursor::new(claimed.to_be_bytes().to_vec());
            futures::executor::block_on(read_frame(&mut io, bytes_max))
        };
        let error = check(SEGMENT_FRAME_BYTES_MAX, u32::MAX).expect_err("refused");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        let error =
            check(REQUEST_FRAME_BYTES_MAX, REQUEST_FRAME_BYTES_MAX + 1).expect_err("refused");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        // Within the limit, a short body is an early end, not a hang.
        let error = check(SEGMENT_FRAME_BYTES_MAX, 10).expect_err("truncated");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        let mut io = Cursor::new(((REQUEST_FRAME_BYTES_MAX + 1).to_be_bytes()).to_vec());
        let error = futures::executor::block_on(read_stream_request(&mut io)).expect_err("big");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        let mut io = Cursor::new(Vec::new());
        let end = futures::executor::block_on(read_stream_request(&mut io)).expect("clean end");
        assert_eq!(end, None);
        let mut io = Cursor::new((HELLO_FRAME_BYTES_MAX + 1).to_be_bytes().to_vec());
        let error = futures::executor::block_on(read_hello(&mut io)).expect_err("big hello");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    /// A hello reads back; one whose peer id does not parse is refused.
    #[test]
    fn a_hello_reads_back_and_garbage_is_refused() {
        let peer = PeerId::random();
        let mut out = Cursor::new(Vec::new());
        futures::executor::block_on(write_hello(&mut out, &peer, &[3; 32])).expect("writes");
        let mut io = Cursor::new(out.into_inner());
        let hello = futures::executor::block_on(read_hello(&mut io)).expect("reads");
        assert_eq!(hello, (peer, [3; 32]));
        for garbage in [vec![0u8; 10], vec![0xff; 70]] {
            let mut frame = (garbage.len() as u32).to_be_bytes().to_vec();
            frame.extend(garbage);
            let mut io = Cursor::new(frame);
            let error = futures::executor::block_on(read_hello(&mut io)).expect_err("garbage");
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        }
    }
}
