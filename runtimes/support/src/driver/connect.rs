//! Agent Connect on any executor: the blocking calls of [`crate::connect`], run on the
//! executor's blocking pool ([`Runtime::unblock`]) as the agent's own HTTP calls are, so that
//! no executor needs an HTTP client of its own.

use super::Runtime;
use crate::connect::{AgentConnect as Blocking, AgentConnectError};
use pacerelle_core::connect::{CodeExchange, ConnectApp, ConnectStart, InstallationToken, RuntimeToken};
use std::marker::PhantomData;
use zeroize::Zeroizing;

/// Makes Agent Connect's three calls against one server, on executor `R` (the official SDK's
/// `begin_agent_connect`, `exchange_agent_connect_code`, `request_agent_runtime_token`). Each
/// adapter names it for its executor (`pacerelle_tokio::AgentConnect`).
///
/// ```no_run
/// # async fn run<R: pacerelle_runtime_support::driver::Runtime>() -> Result<(), pacerelle_runtime_support::connect::AgentConnectError> {
/// use pacerelle_core::connect::ConnectApp;
/// let connect = pacerelle_runtime_support::driver::AgentConnect::<R>::new("https://api.pacerelle.com");
/// let app = ConnectApp::new("my-client", "https://my.app/callback", "Helper");
/// let start = connect.begin("connect-key", &app).await?;
/// // ... send the user to start.authorization_url; they come back with a code and the state ...
/// # let (code, state) = (String::new(), String::new());
/// start.check_state(&state)?;
/// let installation = connect.exchange_code(&start.exchange(&app, &code)).await?;
/// let runtime = connect.request_runtime_token(installation.installation_token()).await?;
/// # Ok(())
/// # }
/// ```
pub struct AgentConnect<R> {
    blocking: Blocking,
    runtime: PhantomData<fn() -> R>,
}

impl<R> Clone for AgentConnect<R> {
    fn clone(&self) -> Self {
        AgentConnect { blocking: self.blocking.clone(), runtime: PhantomData }
    }
}

impl<R> std::fmt::Debug for AgentConnect<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConnect").field("base_url", &self.blocking.base_url()).finish()
    }
}

impl<R: Runtime> AgentConnect<R> {
    /// Calls against `base_url`.
    pub fn new(base_url: &str) -> Self {
        AgentConnect { blocking: Blocking::new(base_url), runtime: PhantomData }
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        self.blocking.base_url()
    }

    /// Starts a connect request with the app's `connect_key`; see
    /// [`crate::connect::AgentConnect::begin`].
    pub async fn begin(&self, connect_key: &str, app: &ConnectApp) -> Result<ConnectStart, AgentConnectError> {
        let blocking = self.blocking.clone();
        let connect_key = Zeroizing::new(connect_key.to_owned());
        let app = app.clone();
        R::unblock(move || blocking.begin(&connect_key, &app)).await
    }

    /// Exchanges the user's code for an installation token; see
    /// [`crate::connect::AgentConnect::exchange_code`].
    pub async fn exchange_code(&self, exchange: &CodeExchange) -> Result<InstallationToken, AgentConnectError> {
        let blocking = self.blocking.clone();
        let exchange = exchange.clone();
        R::unblock(move || blocking.exchange_code(&exchange)).await
    }

    /// Gets a runtime token with an installation token; see
    /// [`crate::connect::AgentConnect::request_runtime_token`].
    pub async fn request_runtime_token(&self, installation_token: &str) -> Result<RuntimeToken, AgentConnectError> {
        let blocking = self.blocking.clone();
        let installation_token = Zeroizing::new(installation_token.to_owned());
        R::unblock(move || blocking.request_runtime_token(&installation_token)).await
    }
}
