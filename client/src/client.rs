//! The client: its builder, TLS settings, and what it tells about the cluster it knows.
//! Calls go through [`crate::call`]; endpoints and the leader live in [`crate::peers`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::backoff::{entropy, RetryPolicy};
use crate::breaker::BreakerConfig;
use crate::clock::{Clock, SystemClock};
use crate::error::Error;
use crate::peers::{normalize, Peers};
use crate::session::Lanes;
use crate::{ChatRouter, HashRing};

/// Configures and builds a [`Client`].
pub struct ClientBuilder {
    endpoints: Vec<String>,
    timeout: Duration,
    attempt_timeout: Duration,
    retry: RetryPolicy,
    breaker: BreakerConfig,
    clock: Arc<dyn Clock>,
    client_id: Option<String>,
    token: Option<String>,
    tls: Option<Tls>,
    discover_members: bool,
}

/// TLS towards nodes whose client port speaks it (`clockwise node --cert`): the CA the
/// nodes' certificates chain to, and the client's own certificate for nodes that
/// require one (`--trusted-ca`).
#[derive(Clone)]
pub struct Tls {
    ca_pem: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl Tls {
    /// Trust nodes whose certificate chains to the CA in `ca_pem` (PEM).
    pub fn new(ca_pem: impl Into<Vec<u8>>) -> Self {
        Tls {
            ca_pem: ca_pem.into(),
            identity: None,
        }
    }

    /// Present this certificate and private key (PEM) to the nodes.
    pub fn identity(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.identity = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// The tonic TLS settings for a channel to a node.
    pub fn config(&self) -> ClientTlsConfig {
        let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        match &self.identity {
            Some((cert, key)) => config.identity(Identity::from_pem(cert, key)),
            None => config,
        }
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            endpoints: Vec::new(),
            timeout: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
            clock: Arc::new(SystemClock),
            client_id: None,
            token: None,
            tls: None,
            discover_members: false,
        }
    }
}

impl ClientBuilder {
    /// Nodes to talk to, as `host:port` or `http://host:port`. Only these are called
    /// unless [`ClientBuilder::discover_members`] is on: a member the cluster reports at
    /// another address is not trusted with calls (or the token) by default.
    pub fn endpoints<I, S>(mut self, endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.endpoints = endpoints.into_iter().map(Into::into).collect();
        self
    }

    /// The deadline of a whole call, retries included (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The deadline of one attempt (default 5 s); never beyond what is left of the call's.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// How often and how far apart to retry (default [`RetryPolicy::default`]).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// When each endpoint's circuit breaker opens and closes.
    pub fn breaker(mut self, breaker: BreakerConfig) -> Self {
        self.breaker = breaker;
        self
    }

    /// The clock of the breakers (tests pass a [`crate::ManualClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The identity its writes are deduplicated under (default: random per client).
    /// Two live clients must never share one.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The bearer token sent with every call, for nodes started with
    /// `--auth-token-file` (its role decides what the client may call).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Speak TLS to every node (endpoints become `https://`).
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Also call members the cluster's `Status` reports at addresses not among the
    /// endpoints (at most [`crate::MAX_LEARNED_MEMBERS`] of them; default off). A member
    /// list can be wrong or written by a compromised node, so a learned member is
    /// trusted only as far as the transport proves it: with a token, discovery needs
    /// [`ClientBuilder::tls`] (the member must hold a certificate from the CA), and
    /// `build` refuses it without.
    pub fn discover_members(mut self, discover: bool) -> Self {
        self.discover_members = discover;
        self
    }

    /// Checks the configuration and asks the cluster who leads (an unreachable cluster
    /// is not an error here: calls retry until their deadline).
    pub async fn build(self) -> Result<Client, Error> {
        if self.endpoints.is_empty() {
            return Err(Error::Config("endpoints: at least one is needed".into()));
        }
        if self.timeout.is_zero() {
            return Err(Error::InvalidConfig {
                setting: "timeout",
                reason: "must be more than zero: every call would fail at once",
            });
        }
        if self.attempt_timeout.is_zero() {
            return Err(Error::InvalidConfig {
                setting: "attempt_timeout",
                reason: "must be more than zero: every attempt would fail at once",
            });
        }
        self.retry.validate()?;
        self.breaker.validate()?;
        if self.discover_members && self.token.is_some() && self.tls.is_none() {
            return Err(Error::InvalidConfig {
                setting: "discover_members",
                reason: "with a token and no TLS, the token would go in clear text to \
                         members the cluster names: list every endpoint, or use TLS",
            });
        }
        let client_id = match self.client_id {
            Some(id)
                if id.is_empty() || id.len() > 100 || !id.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                return Err(Error::Config(
                    "client_id: 1 to 100 visible ASCII characters".into(),
                ))
            }
            Some(id) => id,
            None => format!("sdk-{:016x}", entropy()),
        };
        let token = match self.token {
            Some(token) => {
                let mut value = MetadataValue::try_from(format!("Bearer {token}"))
                    .ok()
                    .filter(|_| !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()))
                    .ok_or_else(|| Error::Config("token: visible ASCII characters only".into()))?;
                // Never entered in HPACK's dynamic table, so a compression side channel
                // cannot guess it.
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let connect_timeout = self.attempt_timeout.min(Duration::from_secs(2));
        let tls = self.tls.as_ref().map(Tls::config);
        let inner = Inner {
            peers: Peers::new(
                tls,
                connect_timeout,
                self.breaker,
                self.clock,
                self.discover_members,
            ),
            timeout: self.timeout,
            attempt_timeout: self.attempt_timeout,
            retry: self.retry,
            client_id,
            token,
            lanes: Lanes::default(),
            last_revision: AtomicU64::new(0),
        };
        for endpoint in &self.endpoints {
            let address = normalize(endpoint).ok_or_else(|| {
                Error::Config(format!("endpoints: {endpoint:?} is not host:port"))
            })?;
            inner.peers.add(&address)?;
        }
        let client = Client {
            inner: Arc::new(inner),
        };
        let deadline = Instant::now() + client.inner.attempt_timeout;
        client.refresh_leader(deadline).await;
        Ok(client)
    }
}

/// A clockwise client: cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

/// What every clone of a client shares.
pub(crate) struct Inner {
    pub(crate) peers: Peers,
    /// The deadline of a whole call, retries included.
    pub(crate) timeout: Duration,
    pub(crate) attempt_timeout: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) client_id: String,
    /// `Bearer TOKEN`, sent with every call.
    pub(crate) token: Option<MetadataValue<Ascii>>,
    /// The session lanes of writes in flight.
    pub(crate) lanes: Lanes,
    /// The highest `x-clockwise-revision` a reply carried.
    pub(crate) last_revision: AtomicU64,
}

impl Client {
    /// Starts configuring a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The HashRing namespace `ring` (`""` is `"default"`).
    pub fn hash_ring(&self, ring: impl Into<String>) -> HashRing {
        HashRing::new(self.clone(), ring.into())
    }

    /// The ChatRouter namespace `ring` (`""` is `"default"`).
    pub fn chat_router(&self, ring: impl Into<String>) -> ChatRouter {
        ChatRouter::new(self.clone(), ring.into())
    }

    /// The raft id of the leader last learned, if any.
    pub fn leader(&self) -> Option<u64> {
        Some(self.inner.peers.leader()).filter(|&id| id != 0)
    }

    /// Every endpoint called: the given ones, and those learned from the cluster when
    /// [`ClientBuilder::discover_members`] is on; as `host:port`.
    pub fn endpoints(&self) -> Vec<String> {
        self.inner
            .peers
            .all()
            .iter()
            .map(|p| p.address.clone())
            .collect()
    }

    /// Each endpoint's circuit breaker statistics.
    pub fn breaker_stats(&self) -> Vec<(String, crate::BreakerStats)> {
        self.inner
            .peers
            .all()
            .iter()
            .map(|p| (p.address.clone(), p.breaker.stats()))
            .collect()
    }

    /// Closes every circuit breaker (an operator's manual reset).
    pub fn reset_breakers(&self) {
        for peer in self.inner.peers.all() {
            peer.breaker.reset();
        }
    }

    /// The highest revision (raft index) at which one of this client's writes applied,
    /// from the replies' `x-clockwise-revision` (0 before any). Read-your-writes for a
    /// local view: `view.wait_for(client.last_write_revision())` after the write.
    pub fn last_write_revision(&self) -> u64 {
        self.inner.last_revision.load(Ordering::Acquire)
    }

    /// The id this client's writes are deduplicated under (each concurrent write uses
    /// it with a suffix of its own).
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_without_endpoints_is_refused() {
        assert!(matches!(
            Client::builder().build().await,
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Client::builder().endpoints(["nohost"]).build().await,
            Err(Error::Config(_))
        ));
    }

    #[tokio::test]
    async fn settings_that_cannot_work_are_refused_by_name() {
        let builder = || Client::builder().endpoints(["127.0.0.1:1"]);
        let retry = |f: fn(&mut RetryPolicy)| {
            let mut policy = RetryPolicy::default();
            f(&mut policy);
            policy
        };
        let breaker = |f: fn(&mut BreakerConfig)| {
            let mut config = BreakerConfig::default();
            f(&mut config);
            config
        };
        let cases: Vec<(&str, ClientBuilder)> = vec![
            ("timeout", builder().timeout(Duration::ZERO)),
            ("attempt_timeout", builder().attempt_timeout(Duration::ZERO)),
            (
                "retry.max_attempts",
                builder().retry(retry(|p| p.max_attempts = 0)),
            ),
            (
                "breaker.failure_threshold",
                builder().breaker(breaker(|b| b.failure_threshold = 0)),
            ),
            (
                "breaker.success_threshold",
                builder().breaker(breaker(|b| b.success_threshold = 0)),
            ),
            (
                "breaker.half_open_max_calls",
                builder().breaker(breaker(|b| b.half_open_max_calls = 0)),
            ),
        ];
        for (expected, builder) in cases {
            match builder.build().await {
                Err(Error::InvalidConfig { setting, reason }) => {
                    assert_eq!(setting, expected);
                    assert!(!reason.is_empty());
                }
                Err(other) => panic!("{expected}: {other}"),
                Ok(_) => panic!("{expected}: accepted"),
            }
        }
    }

    #[tokio::test]
    async fn discovery_with_a_token_needs_tls() {
        let builder = || {
            Client::builder()
                .endpoints(["127.0.0.1:1"])
                .attempt_timeout(Duration::from_millis(50))
                .discover_members(true)
        };
        match builder().token("t0k3n").build().await {
            Err(Error::InvalidConfig { setting, .. }) => assert_eq!(setting, "discover_members"),
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("a token in clear text to learned members was accepted"),
        }
        builder().build().await.expect("no token: nothing to leak");
        let tls = Tls::new(b"-----BEGIN CERTIFICATE-----\n".to_vec());
        // With TLS a learned member must prove itself with a certificate from the CA.
        assert!(!matches!(
            builder().token("t0k3n").tls(tls).build().await,
            Err(Error::InvalidConfig { .. })
        ));
    }

    #[tokio::test]
    async fn the_token_is_marked_sensitive() {
        let client = Client::builder()
            .endpoints(["127.0.0.1:1"])
            .attempt_timeout(Duration::from_millis(50))
            .token("t0k3n")
            .build()
            .await
            .unwrap();
        let request = client.authorized(());
        let header = request.metadata().get("authorization").unwrap();
        assert!(header.is_sensitive());
    }

    #[tokio::test]
    async fn the_smallest_working_settings_are_accepted() {
        Client::builder()
            .endpoints(["127.0.0.1:1"])
            .timeout(Duration::from_millis(1))
            .attempt_timeout(Duration::from_millis(1))
            .retry(RetryPolicy::none())
            .breaker(BreakerConfig {
                failure_threshold: 1,
                success_threshold: 1,
                open_timeout: Duration::ZERO,
                half_open_max_calls: 1,
            })
            .build()
            .await
            .expect("valid settings");
    }
}
