//! Sending to one peer: the messages queued for it, in batches, on one long-lived
//! `Stream` call.
//!
//! A stream saves what a `Send` call per batch cost: the call's set-up on both sides,
//! and the wait for its answer before the next batch could go (the timeline of
//! `scripts/bench.sh --timeline` put ~150–200 µs on each hop that way). A few batches
//! may be on their way at once; past that the task waits (the peer's queue fills, and
//! the driver's new messages are dropped for raft to resend). The stream is replaced
//! when it ends or fails, when a batch waits [`SEND_TIMEOUT`] for room (the peer is not
//! reading: a stuck connection), and after [`STREAM_LIFETIME`] (well before the peer
//! port's request timeout would cut it). A peer that answers `UNIMPLEMENTED` (an older
//! version) is sent to with a `Send` per batch from then on.

use std::time::{Duration, Instant};

use clockwise_proto::raft::v1 as pb;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::{Code, Request, Status};

use super::{send_snapshot, Origin, PeerClient, MAX_BATCH, MAX_BATCH_BYTES, SEND_TIMEOUT};

/// Batches handed to a stream and not yet taken by the connection.
const STREAM_AHEAD: usize = 4;

/// How long one stream is used before a new one replaces it.
const STREAM_LIFETIME: Duration = Duration::from_secs(60);

/// Sends what is queued for `peer` until its queue closes.
pub(super) async fn send_loop(
    origin: Origin,
    peer: u64,
    client: PeerClient,
    mut outbox: mpsc::Receiver<Message>,
) {
    let mut link = Link {
        origin,
        peer,
        client,
        stream: None,
        unary: false,
    };
    let mut queued = Vec::with_capacity(MAX_BATCH);
    while outbox.recv_many(&mut queued, MAX_BATCH).await > 0 {
        // One batch carries at most MAX_BATCH_BYTES: a message to a lagging peer holds
        // up to raft's max_size_per_msg of entries, and the server refuses larger ones.
        let mut messages = Vec::new();
        let mut bytes = 0;
        for message in queued.drain(..) {
            if message.get_msg_type() == MessageType::MsgSnapshot {
                // Its own call, so heartbeats keep flowing meanwhile.
                tokio::spawn(send_snapshot(
                    link.origin.clone(),
                    link.client.clone(),
                    message,
                ));
                continue;
            }
            let Ok(encoded) = message.write_to_bytes() else {
                continue;
            };
            if bytes + encoded.len() > MAX_BATCH_BYTES && !messages.is_empty() {
                link.send(std::mem::take(&mut messages)).await;
                bytes = 0;
            }
            bytes += encoded.len();
            messages.push(encoded);
        }
        if !messages.is_empty() {
            link.send(messages).await;
        }
    }
}

/// An open `Stream` call: where its batches go, and the call itself.
struct Stream {
    batches: mpsc::Sender<pb::RaftMessageBatch>,
    call: JoinHandle<Result<(), Status>>,
    opened: Instant,
}

/// The way to one peer.
struct Link {
    origin: Origin,
    peer: u64,
    client: PeerClient,
    stream: Option<Stream>,
    /// The peer does not serve `Stream`: a `Send` per batch.
    unary: bool,
}

impl Link {
    /// Sends one batch; one that cannot go is lost, and raft resends what matters.
    async fn send(&mut self, messages: Vec<Vec<u8>>) {
        let batch = pb::RaftMessageBatch {
            from: self.origin.id,
            messages,
            from_address: self.origin.address.clone(),
        };
        if self
            .stream
            .as_ref()
            .is_some_and(|s| s.call.is_finished() || s.opened.elapsed() >= STREAM_LIFETIME)
        {
            self.close(false).await;
        }
        if self.unary {
            return self.send_unary(batch).await;
        }
        let stream = self.stream.get_or_insert_with(|| open(self.client.clone()));
        crate::timeline!("peer.send", to = self.peer);
        match tokio::time::timeout(SEND_TIMEOUT, stream.batches.send(batch)).await {
            Ok(Ok(())) => {}
            // The call ended meanwhile: its outcome says how to send from now on; this
            // batch goes once more that way.
            Ok(Err(mpsc::error::SendError(batch))) => {
                self.close(true).await;
                if self.unary {
                    return self.send_unary(batch).await;
                }
                let stream = self.stream.insert(open(self.client.clone()));
                if stream.batches.try_send(batch).is_err() {
                    self.origin.send_failed(self.peer);
                }
            }
            // No room for that long: the peer is not reading. A new stream starts over.
            Err(_) => {
                if let Some(stream) = self.stream.take() {
                    stream.call.abort();
                }
                self.origin.send_failed(self.peer);
            }
        }
    }

    /// Ends the current stream: its sender closes, so a live call finishes by itself.
    /// A call that ended tells whether the peer serves `Stream` at all. `ending`: the
    /// call dropped its batches, so its answer is due; it is awaited (for at most
    /// [`SEND_TIMEOUT`]) so that an `UNIMPLEMENTED` is not missed and one more batch
    /// lost on a new stream.
    async fn close(&mut self, ending: bool) {
        let Some(mut stream) = self.stream.take() else {
            return;
        };
        drop(stream.batches);
        if !ending && !stream.call.is_finished() {
            return; // its answer arrives once the peer took the rest; no one waits
        }
        let outcome = match tokio::time::timeout(SEND_TIMEOUT, &mut stream.call).await {
            Ok(outcome) => outcome,
            Err(_) => {
                stream.call.abort();
                self.origin.send_failed(self.peer);
                return;
            }
        };
        match outcome {
            Ok(Err(status)) if status.code() == Code::Unimplemented => {
                tracing::info!(
                    peer = self.peer,
                    "peer does not serve RaftTransport.Stream (an older version): using Send"
                );
                self.unary = true;
            }
            Ok(Err(status)) => {
                tracing::debug!(peer = self.peer, error = %status.message(), "raft stream ended");
                self.origin.send_failed(self.peer);
            }
            _ => {}
        }
    }

    /// One `Send` call; a failed one loses the batch.
    async fn send_unary(&mut self, batch: pb::RaftMessageBatch) {
        let mut request = Request::new(batch);
        request.set_timeout(SEND_TIMEOUT);
        crate::timeline!("peer.send", to = self.peer);
        if self.client.send(request).await.is_err() {
            self.origin.send_failed(self.peer);
        }
    }
}

/// Opens a `Stream` call on its own task: it runs until the batches' sender closes or
/// the peer ends it.
fn open(mut client: PeerClient) -> Stream {
    let (batches, receiver) = mpsc::channel(STREAM_AHEAD);
    let call = tokio::spawn(async move {
        let request = Request::new(tokio_stream::wrappers::ReceiverStream::new(receiver));
        client.stream(request).await.map(|_| ())
    });
    Stream {
        batches,
        call,
        opened: Instant::now(),
    }
}
