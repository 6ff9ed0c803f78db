//! What every runtime adapter shares, so that each adapter only does what is specific to its
//! executor: the agent's core with its store and the rules for carrying out its outputs
//! ([`state`]), the async driver written once for every executor ([`driver`], feature `async`),
//! the HTTP executor, Agent Connect's calls ([`connect`]), the clock ([`clock`]), OS randomness, and the
//! common error type.
//!
//! # Dependencies
//! ureq (with rustls and ring, the project's one TLS stack) makes the few HTTP calls the
//! protocol needs; async runtimes run it on their blocking pool, which costs a thread per call
//! in flight and saves a second HTTP client and its dependency tree. tungstenite provides the
//! WebSocket error type every adapter's client wraps. rand seeds the state machines from the
//! operating system. zeroize wipes the bearer header of Agent Connect's calls. With `async`, futures-util and futures-channel (executor-neutral) carry the
//! driver. With `sqlite`, the SQLite store ([`durable`]) that the clients' `Client::new` opens.
//! With `stderr-log`, tracing-subscriber, for the SDK's own programs' logs (`logging`).

#![forbid(unsafe_code)]

pub mod clock;
pub mod connect;
#[cfg(feature = "async")]
pub mod driver;
#[cfg(feature = "sqlite")]
pub mod durable;
#[cfg(feature = "stderr-log")]
pub mod logging;
pub mod metrics;
pub mod state;

pub use clock::{Clock, SharedClock, SystemClock};
use pacerelle_core::config::ConfigError;
use pacerelle_core::wire::{HttpMethod, HttpRequest, HttpResponse};
use pacerelle_core::{Rng, Timestamp};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest HTTP response body read (blobs included).
pub const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
/// How long one HTTP call may take in all.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long opening the WebSocket may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The current wall-clock time as the core counts it (the system clock; an agent reads its
/// own [`Clock`], this one unless one was injected).
pub fn now() -> Timestamp {
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    Timestamp::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// How long from now until `at` (zero if past).
pub fn until(at: Timestamp) -> Duration {
    at.saturating_since(now())
}

/// A generator seeded from the operating system.
pub fn os_rng() -> Box<Rng> {
    Box::new(rand::make_rng::<rand::rngs::StdRng>())
}

/// Makes the relay's HTTP calls: adds the base URL, bearer token and `User-Agent`. Clones
/// share the token, so that [`HttpExecutor::set_token`] reaches every call made after it.
#[derive(Clone)]
pub struct HttpExecutor {
    agent: ureq::Agent,
    base_url: String,
    authorization: Arc<RwLock<String>>,
}

impl std::fmt::Debug for HttpExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpExecutor").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

impl HttpExecutor {
    /// An executor for `base_url` authenticating with `token`.
    pub fn new(base_url: &str, token: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            // 4xx/5xx answers carry the relay's JSON error; the core reads them.
            .http_status_as_error(false)
            .timeout_global(Some(HTTP_TIMEOUT))
            .user_agent(pacerelle_core::config::user_agent())
            .build()
            .into();
        HttpExecutor {
            agent,
            base_url: base_url.trim_end_matches('/').to_owned(),
            authorization: Arc::new(RwLock::new(format!("Bearer {token}"))),
        }
    }

    /// Authenticates every call made from now on (by this executor and its clones) with
    /// `token`.
    pub fn set_token(&self, token: &str) {
        *self.authorization.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = format!("Bearer {token}");
    }

    /// Performs `request`, blocking. `Err` means the relay was not reached or the answer could not
    /// be read; HTTP error statuses are `Ok` responses.
    pub fn execute(&self, request: &HttpRequest) -> Result<HttpResponse, String> {
        let url = format!("{}{}", self.base_url, request.path);
        let authorization = self.authorization.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        tracing::debug!(method = request.method.as_str(), path = %request.path, bytes = request.body.len(), "HTTP request");
        let result = match request.method {
            HttpMethod::Get => self.agent.get(&url).header("Authorization", &authorization).call(),
            HttpMethod::Post | HttpMethod::Put => {
                let builder =
                    if request.method == HttpMethod::Post { self.agent.post(&url) } else { self.agent.put(&url) };
                let builder = builder.header("Authorization", &authorization);
                let builder = match request.content_type {
                    Some(content_type) => builder.content_type(content_type),
                    None => builder,
                };
                builder.send(&request.body[..])
            }
        };
        let mut response = result.map_err(|error| error.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|error| error.to_string())?;
        tracing::debug!(status, bytes = body.len(), "HTTP response");
        Ok(HttpResponse { status, body })
    }
}

/// A handler's failure: any error. The message is then not acknowledged and comes back when
/// the relay replays it.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// What a handler returns.
pub type HandlerResult = Result<(), HandlerError>;

/// Errors of the runtime clients.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The agent could not be created.
    #[error(transparent)]
    Agent(#[from] pacerelle_core::agent::ConfigError),
    /// A message could not be sent.
    #[error(transparent)]
    Send(#[from] pacerelle_core::agent::SendError),
    /// An identity could not be trusted.
    #[error(transparent)]
    Trust(#[from] pacerelle_core::agent::TrustError),
    /// A person's command was refused.
    #[error(transparent)]
    Person(#[from] pacerelle_core::human::PersonError),
    /// The store failed, and the agent stopped at the failed write rather than act on state the
    /// store does not hold: nothing the core asked for after it was carried out (no frame,
    /// acknowledgement, HTTP call or handler call) and its socket closed. `connect` returns this
    /// with the store's own error; a send or other command made after it returns this with a
    /// [`state::StoreStopped`]. Start the agent again from the same store once it works: the
    /// relay replays what was not acknowledged. See [`state`].
    #[error("store failed: {0}")]
    Store(HandlerError),
    /// The agent's store is open in another process (a second copy of the agent running):
    /// `Client::new` refuses rather than run on a store that would forget.
    #[error("the agent's store {} is in use by another process", .0.display())]
    StoreInUse(std::path::PathBuf),
    /// The agent's store could not be opened or created (an unwritable folder, a file written
    /// by a newer SDK, a corrupt file). `Client::new` never falls back to memory.
    #[error("cannot open the agent's store in {}: {source}", path.display())]
    StoreOpen {
        /// The folder or file it tried.
        path: std::path::PathBuf,
        /// The store's reason.
        #[source]
        source: HandlerError,
    },
    /// No folder for the store: none was configured (`PACERELLE_STORE_ROOT`,
    /// `ClientConfig::store_root`) and the user has no home folder for the default.
    #[error("no folder for the agent's store: set PACERELLE_STORE_ROOT (no home folder for ~/.myagents)")]
    NoStoreRoot,
    /// The WebSocket failed.
    #[error("WebSocket: {0}")]
    WebSocket(#[from] Box<tungstenite::Error>),
    /// An HTTP call failed.
    #[error("HTTP {status}: {message}")]
    Http {
        /// The status (0 when the relay was not reached).
        status: u16,
        /// The relay's error or the transport's reason.
        message: String,
    },
    /// The relay refused the agent's token (HTTP 401 or 403) at the socket handshake or at
    /// prekey publication: `connect` ends at once rather than retry what cannot succeed until
    /// the token changes (see `set_token` on the agent's handle). Carries the relay's reason,
    /// never the token.
    #[error("the relay refused the agent's token at {step} (HTTP {status}){}", reason.as_ref().map(|reason| format!(": {reason}")).unwrap_or_default())]
    Unauthorized {
        /// Where it was refused.
        step: pacerelle_core::agent::AuthStep,
        /// The HTTP status: 401 or 403.
        status: u16,
        /// The relay's reason, when it gave one.
        reason: Option<String>,
    },
    /// The relay refused the agent's prekeys in a way retrying cannot fix (a malformed body;
    /// a refused token is [`ClientError::Unauthorized`]): an agent with end-to-end encryption
    /// cannot serve without them.
    #[error("prekey publication refused ({step:?}, HTTP {status}): {message}")]
    Publication {
        /// The call refused.
        step: pacerelle_core::agent::PublicationStep,
        /// Its status.
        status: u16,
        /// The relay's reason.
        message: String,
    },
    /// A prekey publication the app asked for (`publish_prekey_bundle`) could not start.
    #[error(transparent)]
    Publish(#[from] pacerelle_core::agent::PublishError),
    /// A file could not be sent.
    #[error(transparent)]
    File(#[from] pacerelle_core::agent::FileError),
    /// An attachment could not be downloaded or decrypted.
    #[error(transparent)]
    Download(#[from] pacerelle_core::agent::DownloadError),
    /// An attachment could not be decrypted (person side).
    #[error(transparent)]
    Attachment(#[from] pacerelle_core::attachment::AttachmentError),
    /// The client was closed.
    #[error("client is closed")]
    Closed,
    /// Waited too long for an answer.
    #[error("timed out waiting for {0}")]
    TimedOut(&'static str),
}

impl From<tungstenite::Error> for ClientError {
    fn from(error: tungstenite::Error) -> Self {
        ClientError::WebSocket(Box::new(error))
    }
}
