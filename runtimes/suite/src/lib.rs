//! The behaviour suite every runtime must pass, written once and run on each of them.
//!
//! Each case starts the embedded relay on loopback, a scripted person (on tokio, whatever the
//! runtime under test), and an agent on the runtime under test, on a thread of its own with its
//! own executor, serving one [`Behaviour`]. The cases are generic over a [`Harness`] (how to
//! start that agent on one runtime); [`behaviour_suite!`] turns them into one `#[test]` each.
//! `tests/tokio.rs`, `tests/smol.rs`, `tests/async_std.rs` and `tests/blocking.rs` are that one
//! line each (plus, for the async runtimes, the `wss://` check of [`transport`]), so a runtime
//! that fails one case fails `cargo test --workspace`.
//!
//! ```text
//! cargo test -p pacerelle-runtime-suite                 # every case on every runtime
//! cargo test -p pacerelle-runtime-suite --test smol     # one runtime
//! cargo test -p pacerelle-runtime-suite echo            # one case everywhere
//! ```
//!
//! # Cases
//! [`CASES`] lists them, in [`cases`] (and [`fail_stop`], [`prekeys`], [`durable`], [`liveness`],
//! [`lenient`], [`outbox`], [`groups`], [`files`]):
//! - `echo`: a message is answered, linked to it, and acknowledged (the person sees it read);
//! - `every_widget_kind`: confirm, choice, permission, form, progress, file-picker and datetime
//!   are shown, answered (or, for the progress bar, dismissed), and each answer reaches the agent;
//! - `widget_update`: a widget is shown, then changed by reference;
//! - `reply_to_source_device`: a reply goes to the device that wrote, and only there;
//! - `relay_drop_mid_conversation`: the relay drops the agent twice, with messages sent while it
//!   reconnects; every message is handled exactly once and answered, the relay keeps nothing
//!   (the drops fall between handler calls: see the case for why);
//! - `reconnect_backs_off_with_jitter`: against an endpoint that accepts and drops every
//!   connection, retries follow the core's backoff (bounded delays, spread by jitter, no tight
//!   loop);
//! - `failing_handler_is_replayed`: a handler that fails leaves the message unacknowledged; it
//!   comes back on replay after a drop, and once accepted never again;
//! - `a_failing_handler_is_retried_on_the_same_connection`: a handler that fails twice is called
//!   a third time after a backoff, without a reconnection; the third call's reply arrives and the
//!   message is acknowledged once;
//! - `a_handler_that_always_fails_is_given_up_and_left_pending`: after the configured number of
//!   calls the message is reported to `on_handler_gave_up` (attempts, last error) and left
//!   unacknowledged; the relay still holds it and delivers it again after a reconnection;
//! - `without_a_handler_messages_stay_pending`: an agent with no message handler stores the
//!   message's pending receipt but never acknowledges it; an agent with a handler, started
//!   later on the same store, handles it;
//! - `a_burst_is_committed_together`: messages the relay held while the agent was away arrive
//!   together when it connects; their receipts are stored in fewer commits than there are
//!   messages (group commit, never a change committed alone), and each is answered and
//!   acknowledged once;
//! - `shutdown_is_prompt_and_clean`: closing returns `Ok` promptly, connected, retrying, or
//!   while a handshake hangs, and the agent stops consuming;
//! - `handler_sends_a_burst`: a handler sends several messages and widgets before returning,
//!   without deadlocking on the core's lock;
//! - `a_file_each_way`: without end-to-end encryption, the person sends a file with a caption;
//!   the handler receives its real name, type, size and dimensions, downloads and decrypts it,
//!   and sends it back reversed as a reply; the person receives that with its real metadata and
//!   decrypts it. The relay's envelope entries are redacted and its blobs are ciphertext;
//! - `encryption_on`: the person and the agent with end-to-end encryption: the verification
//!   code matches the published identity key; echo, a widget and its answer, a file each way
//!   and a reply to the source device all work; every MSG that crossed the relay is encrypted,
//!   and no text, widget, file name, type, key or contents can be read in anything it saw;
//! - `hostile_frames_are_refused_and_reported`: the relay injects a plaintext widget answer "from"
//!   the person, the person's first message again under a new id and device, a tampered copy
//!   and an oversized ciphertext: none reaches the handler; the plaintext is acknowledged and
//!   reported at once, the others after their bounded deliveries; each is reported once and the
//!   conversation goes on;
//! - `an_impostor_is_announced_and_refused_until_trusted`: under a pinned trust policy, a fresh
//!   identity writing as the person on the person's device is announced (both safety numbers),
//!   refused and reported, the person is still answered, and once the app trusts the new
//!   identity its next message is handled with its safety number;
//! - `store_failure_is_fail_stop` (in [`fail_stop`]): an encrypted agent whose store fails at a
//!   chosen write (the prekeys before publication, a message's receipt, the reply's session
//!   step, the acceptance) stops there: `connect` returns the store's error promptly and nothing
//!   the agent would have sent after the failed write reaches the relay; restarted on the same
//!   store, it handles the replayed message and no message key is used twice;
//! - `prekeys_survive_restarts` (in [`prekeys`]): the encrypted agent is restarted 15 times over
//!   one store against one relay; the restarts make no one-time prekeys, and people then start
//!   sessions from the oldest ones the relay holds and converse;
//! - `publish_prekey_bundle_on_demand` (in [`prekeys`]): the app publishes a new bundle through
//!   the handle; the relay holds a second batch after the first, the identity key (read off the
//!   handle, blocking one included) and its code stay, a person starts a session from the new
//!   bundle and converses; a plaintext agent refuses with `PublishError::NotEncrypted`;
//! - `restart_keeps_identity` (in [`durable`]): an encrypted agent made with the runtime's
//!   `Client::new`, its store root in a temporary folder, is restarted: the same verification
//!   code (its published key's) and the person's session goes on; a second `Client::new` on the
//!   store while it runs is `ClientError::StoreInUse`, a root that cannot hold a folder
//!   `ClientError::StoreOpen`; a plaintext agent keeps its receipts there too;
//! - `configured_from_the_environment` (in [`durable`]): `PACERELLE_*` variables (agent, token,
//!   base URL, `PACERELLE_E2EE=true`, `PACERELLE_STORE_ROOT`) make an encrypted, durable agent
//!   through `Client::new` that the person converses with end to end; `PACERELLE_E2EE=yes` and
//!   a missing token are errors naming the variable, never repeating its value;
//! - `a_refused_token_ends_connect_and_a_new_one_is_used` (in [`liveness`]): with a wrong token,
//!   `connect` returns [`pacerelle_runtime_support::ClientError::Unauthorized`] promptly, refused
//!   at the socket (plaintext agent) or at prekey publication (encrypted agent), without the
//!   token in the error; a token handed to the running agent with `set_token` is used from its
//!   next connection on;
//! - `a_half_open_connection_is_noticed_and_replaced` (in [`liveness`]): through a TCP proxy that
//!   stops forwarding without closing, with a short keepalive, the agent notices the silence and
//!   reconnects; the message sent meanwhile is handled exactly once and answered, and nothing
//!   comes twice when the frozen connection thaws;
//! - `lenient_frames_are_read_as_the_official_sdk_reads_them` (in [`lenient`]): the relay
//!   injects frames the official SDK accepts beyond strict JSON (a number as device id or reply
//!   link, `NaN`, loose base64, no payload, a repeated key, an identity change without an id);
//!   each is handled once with the official reading and acknowledged; a payload neither SDK
//!   decodes and a frame nested too deep are acknowledged after their bounded deliveries and
//!   reported once, and a last reconnect replays nothing.
//! - `no_reply_lost_with_the_socket` (in [`outbox`]): the relay loses the agent's reply and its
//!   acknowledgement and cuts the socket as a crash would; the message is replayed, the agent
//!   sends the same reply again under its original id before acknowledging, and the person gets
//!   it once (the handler ran once); a send outside a handler lost the same way arrives after the
//!   reconnection;
//! - `an_encrypted_group_with_two_people` (in [`groups`]): two encrypted people and the agent
//!   in one group; a group send before the agent holds a key is refused (never plaintext) and
//!   fetches the keys; each person's group message reaches the handler as an encrypted group
//!   message and the agent's answer to the group opens for both; after a rotation to epoch 2
//!   messages flow both ways under epoch 2 (a send outside a handler too); the agent stored
//!   both keys and acknowledged every message, and no text, inner payload, sender key or group
//!   key crossed the relay readable.
//! - `several_attachments_with_a_thumbnail` (in [`files`]): the encrypted agent uploads a
//!   thumbnail, a photo naming it and notes with `upload_file`, sends the three in one message,
//!   a clip with `send_file` (which returns the attachment and the message id) and the photo
//!   again in a later message; the encrypted person downloads and decrypts every attachment with
//!   its real metadata, finds each thumbnail by its blob, and the relay stored four ciphertexts
//!   and saw only redacted entries;
//! - `files_without_encryption_are_refused` (in [`files`]): without end-to-end encryption the
//!   same uploads are refused with `SendError::FileReadableByRelay` and nothing is uploaded.
//! - `agent_connect_installs_and_serves_with_runtime_tokens` (in [`agent_connect`]): the
//!   runtime's `AgentConnect` starts a request at the development relay, the owner approves it,
//!   the code is exchanged (and refused a second time), a runtime token is issued; the agent
//!   serves its owner with it, then takes a second runtime token with `set_token` (the first is
//!   no longer accepted) and answers again after a reconnection.
//!
//! Observability (issue 10, item 8) runs in a test binary of its own, `tests/observability.rs`
//! (a process-wide metrics recorder and subscriber): on each runtime the counters, the spans and
//! the absence of message contents and token in the logs.
//!
//! # Adding a runtime
//! Implement [`Harness`] (see [`harness`]), add `tests/<runtime>.rs` with
//! `pacerelle_runtime_suite::behaviour_suite!(YourHarness);`.

#![forbid(unsafe_code)]

pub mod agent_connect;
pub mod behaviour;
pub mod cases;
pub mod durable;
pub mod fail_stop;
pub mod files;
pub mod groups;
pub mod harness;
pub mod lenient;
pub mod liveness;
pub mod outbox;
pub mod prekeys;
pub mod transport;
mod waiting;

pub use behaviour::Behaviour;
pub use harness::{Harness, Running};

/// Every case, as named in [`behaviour_suite!`] and [`cases`], [`fail_stop`], [`prekeys`] or
/// [`durable`], [`liveness`], [`lenient`], [`outbox`], [`groups`], [`files`] or
/// [`agent_connect`] (keep them in step).
pub const CASES: [&str; 30] = [
    "echo",
    "every_widget_kind",
    "widget_update",
    "reply_to_source_device",
    "relay_drop_mid_conversation",
    "reconnect_backs_off_with_jitter",
    "failing_handler_is_replayed",
    "shutdown_is_prompt_and_clean",
    "handler_sends_a_burst",
    "a_file_each_way",
    "encryption_on",
    "hostile_frames_are_refused_and_reported",
    "an_impostor_is_announced_and_refused_until_trusted",
    "a_failing_handler_is_retried_on_the_same_connection",
    "a_handler_that_always_fails_is_given_up_and_left_pending",
    "without_a_handler_messages_stay_pending",
    "a_burst_is_committed_together",
    "store_failure_is_fail_stop",
    "prekeys_survive_restarts",
    "publish_prekey_bundle_on_demand",
    "restart_keeps_identity",
    "configured_from_the_environment",
    "a_refused_token_ends_connect_and_a_new_one_is_used",
    "a_half_open_connection_is_noticed_and_replaced",
    "lenient_frames_are_read_as_the_official_sdk_reads_them",
    "no_reply_lost_with_the_socket",
    "an_encrypted_group_with_two_people",
    "several_attachments_with_a_thumbnail",
    "files_without_encryption_are_refused",
    "agent_connect_installs_and_serves_with_runtime_tokens",
];

/// One `#[test]` per case for the runtime `$harness` (a [`Harness`]).
///
/// ```no_run
/// pacerelle_runtime_suite::behaviour_suite!(pacerelle_runtime_suite::harness::Smol);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! behaviour_suite {
    ($harness:ty) => {
        $crate::behaviour_suite!(@cases $harness;
            echo,
            every_widget_kind,
            widget_update,
            reply_to_source_device,
            relay_drop_mid_conversation,
            reconnect_backs_off_with_jitter,
            failing_handler_is_replayed,
            shutdown_is_prompt_and_clean,
            handler_sends_a_burst,
            a_file_each_way,
            encryption_on,
            hostile_frames_are_refused_and_reported,
            an_impostor_is_announced_and_refused_until_trusted,
            a_failing_handler_is_retried_on_the_same_connection,
            a_handler_that_always_fails_is_given_up_and_left_pending,
            without_a_handler_messages_stay_pending,
            a_burst_is_committed_together,
        );
        $crate::behaviour_suite!(@in fail_stop, $harness; store_failure_is_fail_stop);
        $crate::behaviour_suite!(@in prekeys, $harness; prekeys_survive_restarts, publish_prekey_bundle_on_demand);
        $crate::behaviour_suite!(@in durable, $harness; restart_keeps_identity, configured_from_the_environment);
        $crate::behaviour_suite!(@in liveness, $harness;
            a_refused_token_ends_connect_and_a_new_one_is_used,
            a_half_open_connection_is_noticed_and_replaced,
        );
        $crate::behaviour_suite!(@in lenient, $harness; lenient_frames_are_read_as_the_official_sdk_reads_them);
        $crate::behaviour_suite!(@in outbox, $harness; no_reply_lost_with_the_socket);
        $crate::behaviour_suite!(@in groups, $harness; an_encrypted_group_with_two_people);
        $crate::behaviour_suite!(@in files, $harness;
            several_attachments_with_a_thumbnail,
            files_without_encryption_are_refused,
        );
        $crate::behaviour_suite!(@in agent_connect, $harness; agent_connect_installs_and_serves_with_runtime_tokens);
    };
    (@cases $harness:ty; $($case:ident),* $(,)?) => {
        $crate::behaviour_suite!(@in cases, $harness; $($case),*);
    };
    (@in $module:ident, $harness:ty; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::$module::$case::<$harness>();
            }
        )*
    };
}
