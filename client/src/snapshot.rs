//! A node's snapshot as it streams in ([`crate::Cluster::snapshot`]): the header its
//! first chunk carries, then the body, checked against the announced size and SHA-256
//! as it arrives, so a caller that reads to the end has an intact backup body.

use std::fmt;
use std::time::Duration;

use clockwise_proto::cluster::v1 as pb;
use sha2::{Digest, Sha256};
use tonic::{Code, Streaming};

use crate::error::Error;

/// The most [`Snapshot::bytes`] reserves ahead: the announced size is the node's word,
/// not trusted for one allocation.
const MAX_RESERVE: u64 = 256 << 20;

/// A consistent snapshot of one node's state as of its applied index, streaming in.
///
/// Its header ([`Snapshot::index`], [`Snapshot::total_bytes`], [`Snapshot::sha256`], …)
/// has arrived; the body comes through [`Snapshot::chunk`] (or all at once through
/// [`Snapshot::bytes`]). The body, concatenated, is the body of a backup file
/// (`clockwise backup save`). The SDK checks it: the final `Ok(None)` of
/// [`Snapshot::chunk`] means the body had the announced size and SHA-256; a body that
/// does not is an error with code `DATA_LOSS`.
pub struct Snapshot {
    index: u64,
    term: u64,
    total_bytes: u64,
    sha256: Vec<u8>,
    state_digest: String,
    /// The header chunk's own piece of the body, handed out first.
    pending: Option<Vec<u8>>,
    stream: Streaming<pb::SnapshotChunk>,
    /// How long each chunk may take to arrive: the client's attempt timeout.
    chunk_timeout: Duration,
    received: u64,
    hasher: Sha256,
    /// Set once the stream ended, well or not: later calls answer the same again.
    end: Option<Result<(), Error>>,
}

impl Snapshot {
    pub(crate) fn new(
        header: pb::SnapshotChunk,
        stream: Streaming<pb::SnapshotChunk>,
        chunk_timeout: Duration,
    ) -> Self {
        Snapshot {
            index: header.index,
            term: header.term,
            total_bytes: header.total_bytes,
            sha256: header.sha256,
            state_digest: header.state_digest,
            pending: Some(header.data),
            stream,
            chunk_timeout,
            received: 0,
            hasher: Sha256::new(),
            end: None,
        }
    }

    /// The log index the snapshot is as of (the node's applied index then).
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The raft term of that entry.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// The size of the whole body, as the node announced it.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// The SHA-256 of the whole body, as the node announced it.
    pub fn sha256(&self) -> &[u8] {
        &self.sha256
    }

    /// The hex digest of the state at [`Snapshot::index`], as `Status` reports it there.
    pub fn state_digest(&self) -> &str {
        &self.state_digest
    }

    /// Bytes of body handed out so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The next piece of the body, or `None` once all of it arrived with the announced
    /// size and SHA-256. Each piece must arrive within the client's attempt timeout;
    /// the transfer as a whole has no deadline, since its length grows with the state.
    ///
    /// # Errors
    ///
    /// `DATA_LOSS` ([`Error::Status`]) when the node sends more than it announced, ends
    /// short, or the body does not match its SHA-256; [`Error::Retriable`] when a piece
    /// does not come in time or the connection is lost; otherwise the status the node
    /// ended the stream with. The snapshot is not resumed: open a new one.
    pub async fn chunk(&mut self) -> Result<Option<Vec<u8>>, Error> {
        if let Some(end) = &self.end {
            return end.clone().map(|()| None);
        }
        let outcome = self.next_piece().await;
        if !matches!(outcome, Ok(Some(_))) {
            self.end = Some(outcome.clone().map(|_| ()));
        }
        outcome
    }

    /// The whole body, checked as [`Snapshot::chunk`] checks it.
    ///
    /// # Errors
    ///
    /// As [`Snapshot::chunk`].
    pub async fn bytes(mut self) -> Result<Vec<u8>, Error> {
        let reserve = self.total_bytes.min(MAX_RESERVE);
        let mut body = Vec::with_capacity(usize::try_from(reserve).unwrap_or(0));
        while let Some(piece) = self.chunk().await? {
            body.extend_from_slice(&piece);
        }
        Ok(body)
    }

    async fn next_piece(&mut self) -> Result<Option<Vec<u8>>, Error> {
        loop {
            let piece = match self.pending.take() {
                Some(piece) => piece,
                None => match self.message().await? {
                    Some(chunk) => chunk.data,
                    None => return self.finish().map(|()| None),
                },
            };
            if piece.is_empty() {
                continue;
            }
            if self.received + piece.len() as u64 > self.total_bytes {
                return Err(data_loss(
                    "the node sent more than the size it announced".into(),
                ));
            }
            self.received += piece.len() as u64;
            self.hasher.update(&piece);
            return Ok(Some(piece));
        }
    }

    async fn message(&mut self) -> Result<Option<pb::SnapshotChunk>, Error> {
        tokio::time::timeout(self.chunk_timeout, self.stream.message())
            .await
            .map_err(|_| Error::Retriable {
                code: Code::DeadlineExceeded,
                message: format!("no snapshot chunk within {:?}", self.chunk_timeout),
            })?
            .map_err(Error::from)
    }

    fn finish(&mut self) -> Result<(), Error> {
        if self.received != self.total_bytes {
            return Err(data_loss(format!(
                "the stream ended after {} of {} bytes",
                self.received, self.total_bytes
            )));
        }
        if self.hasher.finalize_reset().as_slice() != self.sha256.as_slice() {
            return Err(data_loss("the snapshot does not match its checksum".into()));
        }
        Ok(())
    }
}

fn data_loss(message: String) -> Error {
    Error::Status {
        code: Code::DataLoss,
        message,
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("index", &self.index)
            .field("term", &self.term)
            .field("total_bytes", &self.total_bytes)
            .field("state_digest", &self.state_digest)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}
