//! Plain values the typed calls answer.

/// One result of a batch call that was not the drill's `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchResult {
    /// A store/assign or route: the node (server) the key (request) is on or routes to.
    Placed(String),
    /// A remove: whether the key (request) was there.
    Removed(bool),
}

/// Where a stored key (or chat request) lives now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The node (or server) holding it.
    pub owner: String,
    /// Its last access time (the timestamp of its last store/assign).
    pub last_access: i64,
    /// 1 for a key; the request's size in MB for a chat request.
    pub size: i64,
    /// When it expires, if it has a TTL.
    pub expires_at: Option<i64>,
}
