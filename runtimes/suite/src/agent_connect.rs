//! Agent Connect on each runtime (issue 12, item 1): an app installs an agent through the
//! development relay (start, the owner's approval, code exchange, runtime token), the agent
//! serves with the runtime token, and a fresh runtime token handed over with `set_token` carries
//! it across a reconnection once the first one is no longer accepted.

use crate::behaviour::Behaviour;
use crate::harness::{ConnectCalls, Harness};
use crate::waiting::{next_message, run, wait_until};
use pacerelle_core::agent::AgentConfig;
use pacerelle_core::config::ClientConfig;
use pacerelle_core::connect::{ConnectApp, ConnectError, ConnectStep, RuntimeToken};
use pacerelle_core::connection::Backoff;
use pacerelle_relay::{ConnectClient, Relay, RelayConfig};
use pacerelle_runtime_support::connect::AgentConnectError;
use pacerelle_tokio::{PersonClient, PersonClientConfig};
use std::time::Duration;

const OWNER: &str = "owner";
const OWNER_TOKEN: &str = "owner-token";
const CLIENT_ID: &str = "suite-app";
const CONNECT_KEY: &str = "ck_suite_app_key";
const REDIRECT_URI: &str = "https://suite.example/callback";

/// The value of `name` in the query of `location`.
fn query_value(location: &str, name: &str) -> Option<String> {
    let query = location.split_once('?')?.1;
    query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=').map(str::to_owned))
}

/// The whole flow, then the agent serving the owner with its runtime token, then a new runtime
/// token handed to the running agent.
pub fn agent_connect_installs_and_serves_with_runtime_tokens<H: Harness>() {
    run(async {
        let name = H::NAME;
        let client = ConnectClient::new(CLIENT_ID, CONNECT_KEY, REDIRECT_URI, OWNER).manual_approval();
        let config = RelayConfig::loopback_ephemeral().person(OWNER, OWNER_TOKEN).connect_client(client);
        let relay = Relay::spawn(config).await.expect("the relay starts");
        let base_url = relay.base_url();
        let app = ConnectApp::new(CLIENT_ID, REDIRECT_URI, "Suite agent").description("installed by the suite");

        let calls = H::agent_connect(&base_url);
        let (calls, start) = tokio::task::spawn_blocking(move || {
            let start = calls.begin(CONNECT_KEY, &app);
            (calls, start)
        })
        .await
        .expect("the call's thread");
        let start = start.unwrap_or_else(|error| panic!("{name}: begin: {error}"));
        assert_eq!(start.authorization_url, format!("{base_url}/agent-connect/authorize/{}", start.request_id));
        assert_eq!(
            relay.pending_agent_connects(),
            std::slice::from_ref(&start.request_id),
            "{name}: waiting for the owner"
        );

        // The owner approves; the app reads the code and state off the redirect.
        let location = relay.approve_agent_connect(&start.request_id).expect("the request is pending");
        assert!(location.starts_with(REDIRECT_URI), "{name}: sent back to the app: {location}");
        let code = query_value(&location, "code").expect("a code");
        let state = query_value(&location, "state").expect("the state");
        start.check_state(&state).expect("the state sent comes back");

        let app = ConnectApp::new(CLIENT_ID, REDIRECT_URI, "Suite agent");
        let exchange = start.exchange(&app, &code);
        let (calls, installation, again) = tokio::task::spawn_blocking(move || {
            let installation = calls.exchange_code(&exchange);
            let again = calls.exchange_code(&exchange);
            (calls, installation, again)
        })
        .await
        .expect("the call's thread");
        let installation = installation.unwrap_or_else(|error| panic!("{name}: exchange: {error}"));
        assert_eq!(installation.owner_id, OWNER);
        assert_eq!(installation.scope, "myagents:agent-connect");
        match again {
            Err(AgentConnectError::Connect(ConnectError::Refused {
                step: ConnectStep::Exchange, status: 400, ..
            })) => {}
            other => panic!("{name}: a code used twice gave {other:?}"),
        }

        let installation_token = installation.installation_token().to_owned();
        let runtime_token = move |calls: Box<dyn ConnectCalls>| {
            let token = installation_token.clone();
            async move {
                let (calls, token) = tokio::task::spawn_blocking(move || {
                    let answer = calls.request_runtime_token(&token);
                    (calls, answer)
                })
                .await
                .expect("the call's thread");
                (calls, token.unwrap_or_else(|error| panic!("runtime token: {error}")))
            }
        };
        let (calls, first): (_, RuntimeToken) = runtime_token(calls).await;
        assert_eq!(first.agent_id, installation.agent_id);
        assert_eq!(first.conversation_id, installation.conversation_id);
        assert!(first.expires_in > 0);

        // The agent serves its owner with the runtime token.
        let behaviour = Behaviour::new();
        let config = ClientConfig::new(first.agent_id.clone(), first.agent_token())
            .with_base_url(base_url.clone())
            .expect("a base URL");
        let core = AgentConfig {
            backoff: Backoff { initial: Duration::from_millis(20), max: Duration::from_millis(200) },
            ..AgentConfig::new(first.agent_id.clone())
        };
        let agent = H::start(config, core, behaviour.clone());
        let owner_config = PersonClientConfig::new(OWNER, OWNER_TOKEN, base_url.clone());
        let owner = PersonClient::connect(owner_config).await.expect("the owner connects");
        let conversation = &installation.conversation_id;
        let sent = owner.send_text(conversation, &first.agent_id, "hello").expect("the owner sends");
        let reply = next_message(&owner, "the installed agent's reply").await;
        assert_eq!(reply.text, "Received: hello", "{name}: the installed agent answers");
        assert_eq!(reply.reply_to_message_id.as_deref(), Some(sent.as_str()));

        // A new runtime token replaces the first at the relay; the running agent is handed it
        // and its next connection uses it.
        let (_calls, second) = runtime_token(calls).await;
        assert_ne!(second.agent_token(), first.agent_token());
        agent.set_token(second.agent_token());
        relay.disconnect_agent(&first.agent_id).await;
        let sent = owner.send_text(conversation, &first.agent_id, "still there?").expect("the owner sends");
        let reply = next_message(&owner, "the reply after the new token").await;
        assert_eq!(reply.reply_to_message_id.as_deref(), Some(sent.as_str()), "{name}: answered");
        wait_until("the agent to reconnect", || agent.is_connected()).await;
        assert_eq!(relay.agent_connections(&first.agent_id), 2, "{name}: reconnected once, with the new token");
        assert_eq!(behaviour.calls_for(&sent), 1);

        agent.close();
        assert!(matches!(agent.finished(Duration::from_secs(5)).await, Some(Ok(()))), "{name}: closed cleanly");
        owner.close().await;
        relay.shutdown().await;
    });
}
