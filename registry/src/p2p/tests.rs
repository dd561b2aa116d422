//! Nodes in one process on loopback: swarming, partial holders, lying and
//! hostile peers. Every wait is on a condition, with a generous deadline.

use super::held::Held;
use super::limits::SEGMENT_BYTES;
use super::wire::{self, BlobRequest, BlobResponse, STREAM_PROTOCOL};
use super::{FetchError, P2p, P2pConfig, PeerId};
use crate::{Store, StoreConfig};
use bonus_ids::ArtifactId;
use bytes::Bytes;
use futures::{AsyncReadExt, AsyncWriteExt};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

struct Node {
    p2p: P2p,
    store: Arc<Store>,
    _dir: tempfile::TempDir,
}

async fn node(seed: u8, bootstrap: &[&Node], serve_tampered: bool, serve_delay: Duration) -> Node {
    node_with(seed, bootstrap, serve_tampered, serve_delay, true).await
}

async fn node_with(
    seed: u8,
    bootstrap: &[&Node],
    serve_tampered: bool,
    serve_delay: Duration,
    direct_segments: bool,
) -> Node {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(Store::open(dir.path(), StoreConfig::default()).expect("store"));
    let config = P2pConfig {
        listen: "/ip4/127.0.0.1/tcp/0".parse().expect("address"),
        bootstrap: bootstrap.iter().flat_map(|n| n.p2p.addrs()).collect(),
        node_key_seed: [seed; 32],
        serve_tampered,
        serve_delay,
        direct_segments,
    };
    let p2p = P2p::start(config, store.clone()).await.expect("starts");
    Node {
        p2p,
        store,
        _dir: dir,
    }
}

async fn honest(seed: u8, bootstrap: &[&Node]) -> Node {
    node(seed, bootstrap, false, Duration::ZERO).await
}

/// Polls `condition` until it holds or 30 s pass.
async fn wait_until<F: Future<Output = bool>>(mut condition: impl FnMut() -> F) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

async fn connected(node: &Node, n: usize) {
    assert!(
        wait_until(|| async { node.p2p.connected_peers().await.len() >= n }).await,
        "peers did not connect"
    );
}

/// A plain TCP connection to a direct segment port on loopback.
async fn connect(port: u16) -> tokio_util::compat::Compat<tokio::net::TcpStream> {
    use tokio_util::compat::TokioAsyncReadCompatExt;
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connects")
        .compat()
}

fn blob(bytes: u64, seed: u8) -> Vec<u8> {
    (0..bytes)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 13)) as u8 ^ seed)
        .collect()
}

fn from(report: &super::FetchReport, peer: PeerId) -> u64 {
    report
        .segments_by_peer
        .iter()
        .find(|(p, _)| *p == peer)
        .map_or(0, |(_, n)| *n)
}

/// A node that has verified only some segments serves those, and a
/// fetcher pulls them from it as well as from the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_holder_serves_its_verified_segments() {
    let origin = honest(1, &[]).await;
    let data = blob(6 * SEGMENT_BYTES + 123, 1);
    let artifact_id = origin.store.put_blob(&data).expect("stores");
    let partial = honest(2, &[&origin]).await;
    // The partial node has verified segments 0..3 and nothing else.
    let whole = Held::complete(artifact_id, data.clone()).expect("whole");
    let held = partial
        .p2p
        .server
        .held
        .start_fetch(
            artifact_id,
            data.len() as u64,
            partial
                .store
                .verified_file(artifact_id, data.len() as u64)
                .expect("temp file"),
        )
        .expect("partial");
    for segment in 0..3 {
        let encoded = whole.encode(segment).expect("encodes");
        let verified = held.verify(segment, encoded.into()).expect("verifies");
        assert!(held.absorb(verified).expect("keeps"));
    }
    assert_eq!(held.encode(3), None, "not verified, not served");

    let fetcher = honest(3, &[&origin, &partial]).await;
    connected(&fetcher, 2).await;
    let have = fetcher.p2p.have(partial.p2p.peer_id(), artifact_id).await;
    assert_eq!(
        have.expect("partial holder answers").segments,
        vec![0b0000_0111]
    );
    let report = fetcher
        .p2p
        .fetch(artifact_id, &fetcher.store)
        .await
        .expect("fetches");
    assert_eq!(fetcher.store.read_blob(&artifact_id).expect("held"), data);
    assert!(from(&report, partial.p2p.peer_id()) >= 1, "{report:?}");
    assert!(from(&report, origin.p2p.peer_id()) >= 1, "{report:?}");
    assert_eq!(report.segments_retried, 0, "{report:?}");
    assert_eq!(report.direct_streams, 2, "both over plain TCP: {report:?}");
}

/// A node that serves no direct port is pulled from over libp2p, beside
/// one that does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_without_a_direct_port_is_pulled_over_libp2p() {
    let origin = node_with(1, &[], false, Duration::ZERO, false).await;
    assert_eq!(origin.p2p.direct_port(), None);
    let data = blob(3 * SEGMENT_BYTES, 7);
    let artifact_id = origin.store.put_blob(&data).expect("stores");
    let fetcher = honest(2, &[&origin]).await;
    connected(&fetcher, 1).await;
    let report = fetcher
        .p2p
        .fetch(artifact_id, &fetcher.store)
        .await
        .expect("fetches");
    assert_eq!(fetcher.store.read_blob(&artifact_id).expect("held"), data);
    assert_eq!(from(&report, origin.p2p.peer_id()), 3, "{report:?}");
    assert_eq!(report.direct_streams, 0, "{report:?}");
}

/// The direct port serves only a peer that shows the ticket an
/// authenticated Info answer gave it: a made-up ticket, another peer's
/// ticket under our id, garbage and silence are all cut off without a
/// byte served, and a hello-less connection does not hold its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_direct_port_serves_only_ticket_holders() {
    let server = honest(1, &[]).await;
    let artifact_id = server
        .store
        .put_blob(&blob(SEGMENT_BYTES, 8))
        .expect("stores");
    let client = honest(2, &[&server]).await;
    let other = honest(3, &[&server]).await;
    connected(&client, 1).await;
    connected(&other, 1).await;
    let port = server.p2p.direct_port().expect("a direct port");
    let direct = |have: Option<wire::Have>| have.expect("held").direct.expect("offered");
    let ticket = direct(client.p2p.have(server.p2p.peer_id(), artifact_id).await);
    let others = direct(other.p2p.have(server.p2p.peer_id(), artifact_id).await);
    assert_eq!(ticket.port, port);
    assert_ne!(ticket.ticket, others.ticket, "a ticket is per peer");
    let request = BlobRequest::Range {
        artifact_id,
        segment: 0,
    };
    // Asks for a segment after `hello`; whether it was served.
    let served = |peer: PeerId, ticket: [u8; 32]| {
        let request = request.clone();
        async move {
            let mut stream = connect(port).await;
            // A server at its limits closes at once: not served.
            if wire::write_hello(&mut stream, &peer, &ticket)
                .await
                .is_err()
            {
                return false;
            }
            let accepted = wire::read_hello_accepted(&mut stream);
            if !matches!(
                tokio::time::timeout(Duration::from_secs(10), accepted).await,
                Ok(Ok(()))
            ) {
                return false;
            }
            let _ = wire::write_stream_request(&mut stream, &request).await;
            let answer = wire::read_stream_response(&mut stream);
            matches!(
                tokio::time::timeout(Duration::from_secs(10), answer).await,
                Ok(Ok(BlobResponse::Segment { .. }))
            )
        }
    };
    assert!(served(client.p2p.peer_id(), ticket.ticket).await);
    assert!(!served(client.p2p.peer_id(), [0; 32]).await, "made up");
    assert!(
        !served(client.p2p.peer_id(), others.ticket).await,
        "another peer's ticket"
    );
    assert!(
        !served(other.p2p.peer_id(), ticket.ticket).await,
        "a ticket under another id"
    );
    // Garbage instead of a hello: closed.
    let mut stream = connect(port).await;
    stream.write_all(&[0xff; 64]).await.expect("writes");
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    // Silence: closed after the hello timeout, and while they wait, more
    // than DIRECT_HANDSHAKES_MAX silent connections do not lock out a
    // ticket holder for longer than that timeout.
    let mut silent = Vec::new();
    for _ in 0..super::limits::DIRECT_HANDSHAKES_MAX + 4 {
        silent.push(connect(port).await);
    }
    assert!(
        wait_until(|| served(client.p2p.peer_id(), ticket.ticket)).await,
        "served again once the silent ones time out"
    );
    let mut first = silent.swap_remove(0);
    let read = tokio::time::timeout(Duration::from_secs(20), first.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
}

/// Three nodes fetching at once from one slow origin: they pull from each
/// other, so the origin serves far fewer than three copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetchers_pull_from_each_other() {
    let origin = node(1, &[], false, Duration::from_millis(40)).await;
    let data = blob(16 * SEGMENT_BYTES, 2);
    let artifact_id = origin.store.put_blob(&data).expect("stores");
    let mut fetchers = Vec::new();
    for seed in 2..5 {
        fetchers.push(honest(seed, &[&origin]).await);
    }
    for fetcher in &fetchers {
        connected(fetcher, 1).await;
    }
    let reports =
        futures::future::join_all(fetchers.iter().map(|f| f.p2p.fetch(artifact_id, &f.store)))
            .await;
    let mut from_origin = 0;
    for (fetcher, report) in fetchers.iter().zip(reports) {
        let report = report.expect("fetches");
        assert_eq!(fetcher.store.read_blob(&artifact_id).expect("held"), data);
        from_origin += from(&report, origin.p2p.peer_id());
    }
    assert!(
        from_origin < 3 * 16,
        "{from_origin} segments from the origin"
    );
}

/// An origin holding a blob of `bytes`, and a fetcher connected to it.
async fn origin_and_fetcher(bytes: u64) -> (Node, Node, Vec<u8>) {
    let origin = honest(1, &[]).await;
    let data = blob(bytes, 4);
    origin.store.put_blob(&data).expect("stores");
    let fetcher = honest(2, &[&origin]).await;
    connected(&fetcher, 1).await;
    (origin, fetcher, data)
}

/// Fetches, expecting the fetcher's own store to fail and index nothing.
async fn fetch_fails_in_the_store(fetcher: &Node, artifact_id: ArtifactId) {
    let failed = fetcher.p2p.fetch(artifact_id, &fetcher.store).await;
    assert!(
        matches!(failed, Err(FetchError::Store(_))),
        "a store failure is ours: {failed:?}"
    );
    let index = fetcher.store.blob_info(&artifact_id).expect("index");
    assert!(index.is_none(), "indexed after a failed store: {index:?}");
}

/// A fetcher whose own disk fails (here: the blob's place in the store is
/// taken by a directory, so the final rename fails) gets a store error,
/// not a peer's fault: nothing half-written is indexed or left in `tmp/`,
/// and once the disk is fixed the same origin serves the same fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failure_mid_fetch_loses_nothing_and_blames_no_peer() {
    let (origin, fetcher, data) = origin_and_fetcher(3 * SEGMENT_BYTES + 7).await;
    let artifact_id = ArtifactId::of(&data);
    let in_the_way = fetcher.store.blob_path(&artifact_id);
    std::fs::create_dir_all(in_the_way.join("occupied")).expect("obstruction");

    fetch_fails_in_the_store(&fetcher, artifact_id).await;
    let tmp = fetcher._dir.path().join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp).expect("tmp dir").collect();
    assert!(left.is_empty(), "temp files left behind: {left:?}");

    std::fs::remove_dir_all(&in_the_way).expect("fixes the disk");
    let report = fetcher
        .p2p
        .fetch(artifact_id, &fetcher.store)
        .await
        .expect("the origin still serves");
    assert_eq!(
        from(&report, origin.p2p.peer_id()),
        4,
        "every segment from the origin"
    );
    assert_eq!(fetcher.store.read_blob(&artifact_id).expect("held"), data);
}

/// A fetcher that cannot even open a temp file fails before asking any
/// peer for a segment, with the store's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_room_for_a_temp_file_fails_the_fetch_at_once() {
    let (_origin, fetcher, data) = origin_and_fetcher(SEGMENT_BYTES + 1).await;
    let artifact_id = ArtifactId::of(&data);
    let tmp = fetcher._dir.path().join("tmp");
    std::fs::remove_dir_all(&tmp).expect("removes tmp");
    std::fs::write(&tmp, b"not a directory").expect("obstruction");

    fetch_fails_in_the_store(&fetcher, artifact_id).await;
}

/// A peer serving tampered segments is caught at its first one: that
/// segment is refetched elsewhere, the peer serves nothing more to this
/// fetch, and the artifact completes from the honest peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_peer_is_caught_per_segment_and_dropped() {
    let honest_node = honest(1, &[]).await;
    let liar = node(2, &[&honest_node], true, Duration::ZERO).await;
    let data = blob(8 * SEGMENT_BYTES, 3);
    let artifact_id = honest_node.store.put_blob(&data).expect("stores");
    liar.store
        .put_blob(&data)
        .expect("the liar holds a good copy");
    let fetcher = honest(3, &[&honest_node, &liar]).await;
    connected(&fetcher, 2).await;
    let report = fetcher
        .p2p
        .fetch(artifact_id, &fetcher.store)
        .await
        .expect("fetches");
    assert_eq!(fetcher.store.read_blob(&artifact_id).expect("held"), data);
    assert!(
        report.segments_retried >= 1,
        "the liar was asked: {report:?}"
    );
    assert_eq!(from(&report, liar.p2p.peer_id()), 0, "{report:?}");
    assert_eq!(from(&report, honest_node.p2p.peer_id()), 8, "{report:?}");

    // From a liar alone, nothing is ever kept.
    let only_the_liar_has = liar
        .store
        .put_blob(&blob(2 * SEGMENT_BYTES, 9))
        .expect("stores");
    let alone = honest(4, &[&liar]).await;
    connected(&alone, 1).await;
    let result = alone.p2p.fetch(only_the_liar_has, &alone.store).await;
    assert!(
        matches!(result, Err(FetchError::AllSourcesFailed { .. })),
        "{result:?}"
    );
    let index = alone.store.blob_info(&only_the_liar_has).expect("index");
    assert!(index.is_none());
}

/// Hostile requests on a segment stream: unknown artifacts, segments past
/// the end, a frame over the limit. None makes the server work beyond one
/// answer, and it keeps serving others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_stream_requests_are_answered_or_cut_off() {
    let server = honest(1, &[]).await;
    let data = blob(2 * SEGMENT_BYTES, 4);
    let artifact_id = server.store.put_blob(&data).expect("stores");
    let client = honest(2, &[&server]).await;
    connected(&client, 1).await;
    let peer = server.p2p.peer_id();
    let mut control = client.p2p.control.clone();
    let mut stream = control
        .open_stream(peer, STREAM_PROTOCOL)
        .await
        .expect("opens");
    for (artifact_id, segment) in [
        (ArtifactId::of(b"nobody has this"), 0),
        (artifact_id, 2),
        (artifact_id, u32::MAX),
    ] {
        let request = BlobRequest::Range {
            artifact_id,
            segment,
        };
        wire::write_stream_request(&mut stream, &request)
            .await
            .expect("asks");
        let answer = wire::read_stream_response(&mut stream)
            .await
            .expect("answers");
        assert_eq!(answer, BlobResponse::Missing { segment });
    }
    // An info request does not belong on the stream: it is cut off.
    wire::write_stream_request(&mut stream, &BlobRequest::Info(artifact_id))
        .await
        .expect("asks");
    assert!(wire::read_stream_response(&mut stream).await.is_err());

    // A frame that claims 4 GiB: cut off from its length alone.
    let mut stream = control
        .open_stream(peer, STREAM_PROTOCOL)
        .await
        .expect("opens");
    stream
        .write_all(&u32::MAX.to_be_bytes())
        .await
        .expect("writes");
    stream.flush().await.expect("flushes");
    assert!(wire::read_stream_response(&mut stream).await.is_err());

    // The server still serves.
    let report = client
        .p2p
        .fetch(artifact_id, &client.store)
        .await
        .expect("fetches");
    assert_eq!(from(&report, peer), 2);
    assert_eq!(client.store.read_blob(&artifact_id).expect("held"), data);
}

/// One peer cannot hold more than its share of the server's streams; a
/// stream it closes frees its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_cannot_take_every_stream() {
    let server = honest(1, &[]).await;
    let artifact_id = server
        .store
        .put_blob(&blob(SEGMENT_BYTES, 6))
        .expect("stores");
    let client = honest(2, &[&server]).await;
    connected(&client, 1).await;
    let peer = server.p2p.peer_id();
    let mut control = client.p2p.control.clone();
    let request = BlobRequest::Range {
        artifact_id,
        segment: 0,
    };
    let mut open = Vec::new();
    for _ in 0..super::limits::STREAMS_SERVED_PER_PEER_MAX {
        let mut stream = control
            .open_stream(peer, STREAM_PROTOCOL)
            .await
            .expect("opens");
        wire::write_stream_request(&mut stream, &request)
            .await
            .expect("asks");
        let answer = wire::read_stream_response(&mut stream)
            .await
            .expect("served");
        assert!(matches!(answer, BlobResponse::Segment { .. }));
        open.push(stream);
    }
    let served = |mut control: libp2p_stream::Control| {
        let request = request.clone();
        async move {
            let Ok(mut stream) = control.open_stream(peer, STREAM_PROTOCOL).await else {
                return false;
            };
            if wire::write_stream_request(&mut stream, &request)
                .await
                .is_err()
            {
                return false;
            }
            let answer = wire::read_stream_response(&mut stream);
            matches!(
                tokio::time::timeout(Duration::from_secs(10), answer).await,
                Ok(Ok(BlobResponse::Segment { .. }))
            )
        }
    };
    assert!(!served(control.clone()).await, "one stream too many");
    open.pop();
    assert!(wait_until(|| served(control.clone())).await, "a slot freed");
}

/// A segment that verifies must be exactly the segment: a valid encoding
/// of another segment, a truncated one or one with bytes appended is
/// refused before anything is kept.
#[test]
fn only_the_exact_segment_verifies() {
    let data = blob(3 * SEGMENT_BYTES + 5, 5);
    let artifact_id = ArtifactId::of(&data);
    let whole = Held::complete(artifact_id, data.clone()).expect("whole");
    let fetching = Held::empty(artifact_id, data.len() as u64, None).expect("empty");
    let first = Bytes::from(whole.encode(0).expect("encodes"));
    assert!(
        fetching.verify(1, first.clone()).is_err(),
        "another segment"
    );
    assert!(
        fetching.verify(0, first.slice(..first.len() - 1)).is_err(),
        "short"
    );
    let long = Bytes::from([&first[..], &[0]].concat());
    assert!(fetching.verify(0, long).is_err(), "long");
    assert!(fetching.verify(7, first.clone()).is_err(), "past the end");
    // A flipped bit in a parent's hashes (the encoding starts with the
    // root's pair), in data, and in the last byte.
    for at in [3, 100, first.len() - 1] {
        let mut flipped = first.to_vec();
        flipped[at] ^= 1;
        assert!(
            fetching.verify(0, flipped.into()).is_err(),
            "tampered at {at}"
        );
    }
    assert!(!fetching.is_complete());
    for segment in 0..4 {
        let encoded = whole.encode(segment).expect("encodes");
        let verified = fetching.verify(segment, encoded.into()).expect("verifies");
        assert!(fetching.absorb(verified).expect("keeps"));
    }
    assert!(fetching.is_complete());
    assert_eq!(
        fetching.encode(3),
        whole.encode(3),
        "serves what it verified"
    );
    // A stored blob whose bytes lie about their id is never served.
    assert!(Held::complete(ArtifactId::of(b"other"), data).is_err());
}

/// Kept encodings are verified in place and the store gets exactly the
/// blob's bytes back out of them, for sizes at every edge of bao's tree
/// (a lone chunk group that is the root, a group boundary, a segment
/// boundary, a short last segment).
#[test]
fn fetched_segments_store_exactly_the_blob() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), StoreConfig::default()).expect("store");
    let group = 16 * 1024;
    for bytes in [
        1,
        1024,
        group,
        group + 1,
        SEGMENT_BYTES - 1,
        SEGMENT_BYTES,
        SEGMENT_BYTES + 1,
        3 * SEGMENT_BYTES,
        2 * SEGMENT_BYTES + group + 7,
    ] {
        let data = blob(bytes, (bytes % 251) as u8);
        let artifact_id = ArtifactId::of(&data);
        let whole = Held::complete(artifact_id, data.clone()).expect("whole");
        let file = store.verified_file(artifact_id, bytes).expect("temp file");
        let fetching = Held::empty(artifact_id, bytes, Some(file)).expect("empty");
        for segment in (0..fetching.n_segments()).rev() {
            let encoded = whole.encode(segment).expect("encodes");
            let verified = fetching.verify(segment, encoded.clone().into());
            let verified = verified.unwrap_or_else(|e| panic!("{bytes} B: {e}"));
            assert!(fetching.absorb(verified).expect("keeps"));
            // The same segment again (a second source's answer) is not
            // written twice: the commit below counts every byte once.
            let again = fetching.verify(segment, encoded.into()).expect("verifies");
            assert!(!fetching.absorb(again).expect("keeps"));
        }
        assert!(fetching.is_complete(), "{bytes} B");
        fetching.commit(&store).expect("stores");
        assert_eq!(
            store.read_blob(&artifact_id).expect("reads"),
            data,
            "{bytes} B"
        );
        // A second fetch of the same blob finds it committed.
        fetching.commit(&store).expect("already stored");
    }
}

/// A fetch whose temp file is not complete is never committed: a commit
/// counts the bytes written.
#[test]
fn an_incomplete_fetch_is_not_committed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), StoreConfig::default()).expect("store");
    let data = blob(2 * SEGMENT_BYTES, 9);
    let artifact_id = ArtifactId::of(&data);
    let file = store
        .verified_file(artifact_id, data.len() as u64)
        .expect("temp file");
    file.write_at(0, &data[..SEGMENT_BYTES as usize])
        .expect("writes");
    assert!(
        file.write_at(SEGMENT_BYTES + 1, &data[SEGMENT_BYTES as usize..])
            .is_err(),
        "past the end"
    );
    assert!(store.commit_verified(file).is_err());
    assert!(store.blob_info(&artifact_id).expect("index").is_none());
}

#[test]
fn a_blob_beyond_the_segment_limit_is_refused() {
    let too_many = u64::from(super::limits::SEGMENTS_MAX + 1) * SEGMENT_BYTES;
    assert!(Held::empty(ArtifactId::of(b"x"), too_many, None).is_err());
}
