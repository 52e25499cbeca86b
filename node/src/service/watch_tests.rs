//! The stream's rules against a feed driven by hand: the whole topology first, changes
//! in revision order once, progress only past the last revision, a resync for a watcher
//! past the buffer or after a snapshot, the end on drain.

use super::*;
use clockwise_engine::TopologyNode;
use clockwise_proto::hashring::v1::{watch_response::Event, WatchResponse};
use futures::StreamExt as _;

use crate::machine::topology_feed::LIVE_BUFFER;

struct Fixture {
    feed: Arc<TopologyFeed>,
    source: WatchSource,
    drain: watch::Sender<bool>,
    counters: Arc<WatchCounters>,
}

fn fixture() -> Fixture {
    let feed = Arc::new(TopologyFeed::default());
    let (drain, draining) = watch::channel(false);
    let counters = Arc::new(WatchCounters::default());
    let source = WatchSource::new(
        Arc::new(RwLock::new(Engine::new())),
        feed.clone(),
        draining,
        counters.clone(),
    );
    Fixture {
        feed,
        source,
        drain,
        counters,
    }
}

fn added(id: &str) -> TopologyChange {
    TopologyChange::NodeAdded(TopologyNode {
        id: id.into(),
        replicas: 1,
        positions: vec![7],
        limit: -1,
    })
}

/// An apply at `index` that changed ring `ring` (or, with `None`, nothing watched).
fn apply(feed: &TopologyFeed, index: u64, ring: Option<&str>) {
    if let Some(ring) = ring {
        feed.publish(index, RingKind::HashRing, ring, added(&format!("n{index}")));
    }
    feed.applied(index);
}

async fn next(stream: &mut WatchStream<WatchResponse>) -> WatchResponse {
    stream
        .next()
        .await
        .expect("the stream goes on")
        .expect("a message, not an error")
}

fn kind(message: &WatchResponse) -> &'static str {
    match message.event {
        Some(Event::Topology(_)) if message.resync => "resync",
        Some(Event::Topology(_)) => "topology",
        Some(Event::Change(_)) => "change",
        Some(Event::Progress(_)) => "progress",
        None => "none",
    }
}

#[tokio::test(start_paused = true)]
async fn a_watch_sends_the_topology_then_its_rings_changes_and_progress_past_them() {
    let f = fixture();
    apply(&f.feed, 3, None);
    let mut stream = f
        .source
        .open::<WatchResponse>(RingKind::HashRing, "r", 0)
        .await
        .unwrap();
    let first = next(&mut stream).await;
    assert_eq!((kind(&first), first.revision), ("topology", 3));
    apply(&f.feed, 4, Some("r"));
    apply(&f.feed, 5, Some("other ring"));
    apply(&f.feed, 6, Some("r"));
    let (a, b) = (next(&mut stream).await, next(&mut stream).await);
    assert_eq!((kind(&a), a.revision), ("change", 4));
    assert_eq!((kind(&b), b.revision), ("change", 6));
    // Other writes apply: one progress message, at the newest revision.
    for index in 7..=9 {
        apply(&f.feed, index, None);
    }
    let progress = next(&mut stream).await;
    assert_eq!((kind(&progress), progress.revision), ("progress", 9));
    assert_eq!(f.counters.open.load(Ordering::Relaxed), 1);
    drop(stream);
    assert_eq!(f.counters.open.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn progress_never_overtakes_a_change_published_before_it() {
    let f = fixture();
    let mut stream = f
        .source
        .open::<WatchResponse>(RingKind::HashRing, "r", 0)
        .await
        .unwrap();
    next(&mut stream).await;
    // The applied index moves first as the stream sees it: a progress is due; the
    // change of revision 2 must still come before any message at revision >= 2.
    apply(&f.feed, 1, None);
    apply(&f.feed, 2, Some("r"));
    apply(&f.feed, 3, None);
    let mut seen = Vec::new();
    while seen.last().map(|(_, revision)| *revision) != Some(3) {
        let message = next(&mut stream).await;
        seen.push((kind(&message), message.revision));
    }
    assert_eq!(seen, vec![("change", 2), ("progress", 3)]);
}

#[tokio::test(start_paused = true)]
async fn a_watcher_past_the_buffer_is_resynced_with_the_whole_topology() {
    let f = fixture();
    let mut stream = f
        .source
        .open::<WatchResponse>(RingKind::HashRing, "r", 0)
        .await
        .unwrap();
    next(&mut stream).await;
    let last = LIVE_BUFFER as u64 + 10;
    for index in 1..=last {
        apply(&f.feed, index, Some("r"));
    }
    let message = next(&mut stream).await;
    assert_eq!((kind(&message), message.revision), ("resync", last));
    assert_eq!(f.counters.resyncs.load(Ordering::Relaxed), 1);
    // Nothing at or below the resync's revision follows it.
    apply(&f.feed, last + 1, Some("r"));
    let message = next(&mut stream).await;
    assert_eq!((kind(&message), message.revision), ("change", last + 1));
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_install_resyncs_every_watcher() {
    let f = fixture();
    let mut stream = f
        .source
        .open::<WatchResponse>(RingKind::HashRing, "r", 0)
        .await
        .unwrap();
    next(&mut stream).await;
    f.feed.reset(50);
    let message = next(&mut stream).await;
    assert_eq!((kind(&message), message.revision), ("resync", 50));
}

#[tokio::test(start_paused = true)]
async fn a_resumed_watch_gets_the_changes_after_its_revision_then_progress() {
    let f = fixture();
    for index in 1..=7 {
        apply(&f.feed, index, (index % 2 == 0).then_some("r"));
    }
    let mut stream = f
        .source
        .open::<WatchResponse>(RingKind::HashRing, "r", 3)
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let message = next(&mut stream).await;
        seen.push((kind(&message), message.revision));
    }
    assert_eq!(seen, [("change", 4), ("change", 6), ("progress", 7)]);
}

#[tokio::test(start_paused = true)]
async fn a_start_revision_this_node_lacks_waits_then_is_unavailable() {
    let f = fixture();
    apply(&f.feed, 2, None);
    let refused = f
        .source
        .open::<WatchResponse>(RingKind::HashRing, "r", 9)
        .await
        .err()
        .expect("revision 9 never applies here");
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert!(refused.message().contains("start_revision"), "{refused:?}");
    // Caught up within the wait: served.
    let feed = f.feed.clone();
    let opened = tokio::spawn({
        let source = f.source.clone();
        async move {
            source
                .open::<WatchResponse>(RingKind::HashRing, "r", 9)
                .await
                .map(|_| ())
        }
    });
    tokio::task::yield_now().await;
    apply(&feed, 9, None);
    opened.await.unwrap().expect("served once applied");
}

#[tokio::test(start_paused = true)]
async fn a_drain_ends_every_watch_with_unavailable() {
    let f = fixture();
    let mut stream = f
        .source
        .open::<WatchResponse>(RingKind::HashRing, "r", 0)
        .await
        .unwrap();
    next(&mut stream).await;
    f.drain.send_replace(true);
    let end = stream.next().await.expect("a last message");
    assert_eq!(end.unwrap_err().code(), tonic::Code::Unavailable);
    assert!(stream.next().await.is_none(), "then the stream is over");
    let refused = f
        .source
        .open::<WatchResponse>(RingKind::HashRing, "r", 0)
        .await
        .err()
        .expect("no new watch while draining");
    assert_eq!(refused.code(), tonic::Code::Unavailable);
}
