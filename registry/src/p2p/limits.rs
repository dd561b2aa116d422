//! Every bound of the P2P layer, named once, with their relations checked
//! at compile time.

use std::time::Duration;

/// One segment is this many 1 KiB chunks (1 MiB): the unit a fetcher
/// verifies, a node announces in its have-bitmap and a peer serves.
pub(crate) const SEGMENT_CHUNKS: u64 = 1024;
/// Bytes of one segment.
pub(crate) const SEGMENT_BYTES: u64 = SEGMENT_CHUNKS * 1024;
/// Segments of the largest artifact the protocol can describe (64 GiB):
/// bounds a have-bitmap to 8 KiB.
pub(crate) const SEGMENTS_MAX: u32 = 1 << 16;

/// A request: a tag, an artifact id and a segment number.
pub(crate) const REQUEST_FRAME_BYTES_MAX: u32 = 64;
/// An `Unavailable` reason.
pub(crate) const REASON_BYTES_MAX: usize = 256;
/// An info answer: tags, size, the have-bitmap and a direct ticket.
pub(crate) const INFO_FRAME_BYTES_MAX: u32 = 16 + SEGMENTS_MAX / 8 + 64;
/// A direct stream's hello: a peer id (38 bytes for an ed25519 key) and a
/// 32-byte ticket, with room for longer peer ids.
pub(crate) const HELLO_FRAME_BYTES_MAX: u32 = 128;
/// A segment answer: its data, at most 127 parent pairs (63 inside the
/// segment, at most 64 above it), tag and number, with room to spare.
pub(crate) const SEGMENT_FRAME_BYTES_MAX: u32 = SEGMENT_BYTES as u32 + (64 << 10);

/// Segments requested and not yet answered on one peer's stream. The
/// stream's yamux window grows towards the bandwidth-delay product on its
/// own (yamux ≥ 0.13 auto-tunes it up to the connection's receive window);
/// this keeps enough requests queued at the server for that window to stay
/// full: 4 MiB in flight covers 100 ms at 320 Mbit/s.
pub(crate) const SEGMENTS_IN_FLIGHT_PER_PEER: usize = 4;
/// Peers one fetch pulls from at once.
pub(crate) const SOURCES_MAX: usize = 32;
/// Yamux streams per connection (both directions). Bounds what a peer can
/// make us buffer: yamux gives each stream a 256 KiB window to start with.
pub(crate) const YAMUX_STREAMS_MAX: usize = 64;
/// Inbound segment streams served at once; more are dropped.
pub(crate) const STREAMS_SERVED_MAX: usize = 64;
/// Of which one peer may hold (a fetch uses one per source): no peer can
/// take every slot.
pub(crate) const STREAMS_SERVED_PER_PEER_MAX: usize = 4;
/// Direct connections that have not yet shown a valid hello; more are
/// closed at once.
pub(crate) const DIRECT_HANDSHAKES_MAX: usize = 64;
/// A direct connection that sends no complete hello within this is closed.
pub(crate) const DIRECT_HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Blobs kept in memory (with their bao outboards) to serve from, besides
/// the ones being fetched.
pub(crate) const SERVE_CACHE_ENTRIES_MAX: usize = 8;

/// How often a fetch asks its candidates which segments they have.
pub(crate) const HAVE_REFRESH: Duration = Duration::from_millis(50);
/// How often a fetch looks up new providers (nodes announce an artifact
/// as soon as they have verified one segment of it).
pub(crate) const PROVIDERS_REFRESH: Duration = Duration::from_millis(250);
/// A segment asked for and not answered within this is a failure of the
/// peer (its other segments go elsewhere).
pub(crate) const SEGMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// A fetch that verifies nothing for this long, with nothing in flight,
/// gives up.
pub(crate) const FETCH_STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A served stream with no request for this long is closed.
pub(crate) const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

const _: () = assert!(SEGMENT_BYTES as u32 + 5 + 127 * 64 <= SEGMENT_FRAME_BYTES_MAX);
const _: () = assert!(REQUEST_FRAME_BYTES_MAX >= 1 + 32 + 4);
const _: () = assert!(SEGMENTS_MAX.is_multiple_of(8));
const _: () = assert!((REASON_BYTES_MAX as u32) < INFO_FRAME_BYTES_MAX);
const _: () =
    assert!(16 + SEGMENTS_MAX / 8 + super::wire::DIRECT_BYTES as u32 <= INFO_FRAME_BYTES_MAX);
const _: () = assert!(HELLO_FRAME_BYTES_MAX >= 64 + 32);
// A connection carries a segment stream each way, kad, identify and info.
const _: () = assert!(YAMUX_STREAMS_MAX >= 8);
const _: () = assert!(SEGMENTS_IN_FLIGHT_PER_PEER >= 1);
const _: () = assert!(STREAMS_SERVED_PER_PEER_MAX * 4 <= STREAMS_SERVED_MAX);
const _: () = assert!(HAVE_REFRESH.as_millis() < PROVIDERS_REFRESH.as_millis());
