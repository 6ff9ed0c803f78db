//! The relay over real HTTP and WebSocket on loopback: error answers, limits, prekeys, blobs,
//! conversations, routing, queues and replays, identity changes, groups.

use futures_util::{SinkExt, StreamExt};
use pacerelle_core::wire::{HttpMethod, HttpRequest, RequestId};
use pacerelle_relay::{Relay, RelayConfig, RelayHandle};
use pacerelle_runtime_support::HttpExecutor;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const AGENT: &str = "agent-1";
const AGENT_TOKEN: &str = "agent-secret";
const ALICE: &str = "alice";
const ALICE_TOKEN: &str = "alice-secret";
const BOB: &str = "bob";
const BOB_TOKEN: &str = "bob-secret";

async fn relay_with(config: RelayConfig) -> RelayHandle {
    Relay::spawn(config.agent(AGENT, AGENT_TOKEN).person(ALICE, ALICE_TOKEN).person(BOB, BOB_TOKEN)).await.unwrap()
}

async fn relay() -> RelayHandle {
    relay_with(RelayConfig::loopback_ephemeral()).await
}

/// Makes an HTTP call; returns the status and the body (JSON when it parses, else a string).
async fn call(relay: &RelayHandle, token: &str, method: HttpMethod, path: &str, body: Vec<u8>) -> (u16, Value) {
    let http = HttpExecutor::new(&relay.base_url(), token);
    let request = HttpRequest {
        id: RequestId(0),
        method,
        path: path.to_owned(),
        content_type: (!body.is_empty()).then_some("application/json"),
        body,
    };
    let response = tokio::task::spawn_blocking(move || http.execute(&request)).await.unwrap().unwrap();
    let body = serde_json::from_slice(&response.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&response.body).into_owned()));
    (response.status, body)
}

fn json_bytes(value: Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

fn assert_error(answer: &(u16, Value), status: u16) {
    assert_eq!(answer.0, status, "{answer:?}");
    assert!(answer.1["error"].as_str().is_some_and(|e| !e.is_empty()), "JSON error body: {answer:?}");
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn socket(relay: &RelayHandle, path: &str) -> Socket {
    let url = format!("{}{path}", relay.base_url().replacen("http", "ws", 1));
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn agent_socket(relay: &RelayHandle) -> Socket {
    socket(relay, &format!("/ws/agent?token={AGENT_TOKEN}")).await
}

async fn person_socket(relay: &RelayHandle, token: &str) -> Socket {
    socket(relay, &format!("/ws/person?token={token}")).await
}

async fn next(socket: &mut Socket) -> Value {
    loop {
        let message =
            tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("a frame").unwrap().unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

async fn nothing_within(socket: &mut Socket, wait: Duration) {
    if let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(wait, socket.next()).await {
        panic!("unexpected frame {text}");
    }
}

async fn send(socket: &mut Socket, frame: Value) {
    socket.send(Message::text(frame.to_string())).await.unwrap();
}

async fn conversation(relay: &RelayHandle, members: Value, group: bool) -> String {
    let (status, body) = call(
        relay,
        ALICE_TOKEN,
        HttpMethod::Post,
        "/person/conversations",
        json_bytes(json!({"members": members, "group": group})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["conversation_id"].as_str().unwrap().to_owned()
}

fn bundle(identity_key: &str) -> Value {
    json!({
        "registration_id": 7, "device_id": 1, "identity_key": identity_key,
        "signed_prekey_id": 5, "signed_prekey_public": "c3Br", "signed_prekey_signature": "c2ln",
        "kyber_prekey_id": 5, "kyber_prekey_public": "a3li", "kyber_prekey_signature": "a3Np",
        "protocol_features": ["history-v1"],
    })
}

#[tokio::test]
async fn wrong_or_missing_tokens_are_401_json() {
    let relay = relay().await;
    assert_error(&call(&relay, "nope", HttpMethod::Put, "/agent/prekey-bundle", json_bytes(bundle("aWQ="))).await, 401);
    assert_error(&call(&relay, "", HttpMethod::Get, "/agent/blobs/x", vec![]).await, 401);
    // A person's token is not an agent's, and the other way round.
    assert_error(&call(&relay, ALICE_TOKEN, HttpMethod::Post, "/agent/blobs", b"x".to_vec()).await, 401);
    assert_error(
        &call(&relay, AGENT_TOKEN, HttpMethod::Post, "/person/conversations", json_bytes(json!({"members": []}))).await,
        401,
    );
    let refused =
        tokio_tungstenite::connect_async(format!("{}/ws/agent?token=nope", relay.base_url().replacen("http", "ws", 1)))
            .await;
    assert!(refused.is_err(), "the socket refuses a wrong token");
    relay.shutdown().await;
}

#[tokio::test]
async fn malformed_unknown_and_oversized_requests_are_json_errors() {
    let relay = relay_with(RelayConfig { max_blob_bytes: 1024, ..RelayConfig::loopback_ephemeral() }).await;
    assert_error(&call(&relay, AGENT_TOKEN, HttpMethod::Put, "/agent/prekey-bundle", b"{not json".to_vec()).await, 400);
    assert_error(
        &call(
            &relay,
            AGENT_TOKEN,
            HttpMethod::Put,
            "/agent/prekey-bundle",
            json_bytes(json!({"registration_id": "7"})),
        )
        .await,
        400,
    );
    assert_error(
        &call(&relay, AGENT_TOKEN, HttpMethod::Post, "/agent/one-time-prekeys", json_bytes(json!([]))).await,
        400,
    );
    assert_error(&call(&relay, AGENT_TOKEN, HttpMethod::Get, "/agent/group-keys", vec![]).await, 400);
    assert_error(&call(&relay, AGENT_TOKEN, HttpMethod::Get, "/agent/blobs/no-such-blob", vec![]).await, 404);
    assert_error(&call(&relay, AGENT_TOKEN, HttpMethod::Get, "/agent/nowhere", vec![]).await, 404);
    assert_error(&call(&relay, AGENT_TOKEN, HttpMethod::Get, "/agent/prekey-bundle", vec![]).await, 405);
    assert_error(&call(&relay, ALICE_TOKEN, HttpMethod::Get, "/person/agents/ghost/prekey-bundle", vec![]).await, 404);
    assert_error(
        &call(&relay, ALICE_TOKEN, HttpMethod::Get, &format!("/person/agents/{AGENT}/prekey-bundle"), vec![]).await,
        404,
    );
    assert_error(&call(&relay, AGENT_TOKEN, HttpMethod::Post, "/agent/blobs", vec![0u8; 1025]).await, 413);
    let big_json = json_bytes(json!({"members": ["x".repeat(pacerelle_relay::DEFAULT_MAX_JSON_BYTES)]}));
    assert_error(&call(&relay, ALICE_TOKEN, HttpMethod::Post, "/person/conversations", big_json).await, 413);
    // Still serving after all that.
    assert_eq!(call(&relay, AGENT_TOKEN, HttpMethod::Post, "/agent/blobs", vec![1u8; 1024]).await.0, 200);
    relay.shutdown().await;
}

#[tokio::test]
async fn blobs_round_trip_with_their_hash() {
    let relay = relay().await;
    let (status, uploaded) = call(&relay, AGENT_TOKEN, HttpMethod::Post, "/agent/blobs", b"ciphertext".to_vec()).await;
    assert_eq!(status, 200);
    assert_eq!(uploaded["sha256"], sha256_hex(b"ciphertext"));
    let id = uploaded["id"].as_str().unwrap();
    let http = HttpExecutor::new(&relay.base_url(), ALICE_TOKEN);
    let request = HttpRequest {
        id: RequestId(1),
        method: HttpMethod::Get,
        path: format!("/person/blobs/{id}"),
        content_type: None,
        body: vec![],
    };
    let response = tokio::task::spawn_blocking(move || http.execute(&request)).await.unwrap().unwrap();
    assert_eq!((response.status, response.body.as_slice()), (200, &b"ciphertext"[..]));
    relay.shutdown().await;
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn one_time_prekeys_are_handed_out_once_each() {
    let relay = relay().await;
    assert_eq!(
        call(&relay, AGENT_TOKEN, HttpMethod::Put, "/agent/prekey-bundle", json_bytes(bundle("aWQx"))).await.0,
        200
    );
    let keys =
        json!({"one_time_prekeys": [{"prekey_id": 10, "public_key": "a10="}, {"prekey_id": 11, "public_key": "a11="}]});
    assert_eq!(call(&relay, AGENT_TOKEN, HttpMethod::Post, "/agent/one-time-prekeys", json_bytes(keys)).await.0, 200);
    let path = format!("/person/agents/{AGENT}/prekey-bundle");
    let mut handed = Vec::new();
    for _ in 0..3 {
        let (status, fetched) = call(&relay, ALICE_TOKEN, HttpMethod::Get, &path, vec![]).await;
        assert_eq!(status, 200);
        assert_eq!(fetched["identity_key"], "aWQx");
        assert_eq!(fetched["kyber_prekey_id"], 5);
        handed.push(fetched["prekey_id"].clone());
    }
    assert_eq!(handed, [json!(10), json!(11), Value::Null]);
    relay.shutdown().await;
}

#[tokio::test]
async fn one_time_prekeys_are_appended_and_the_oldest_dropped_beyond_the_limit() {
    let relay = relay_with(RelayConfig { max_one_time_prekeys: 4, ..RelayConfig::loopback_ephemeral() }).await;
    assert_eq!(pacerelle_relay::DEFAULT_MAX_ONE_TIME_PREKEYS, 5_000);
    call(&relay, AGENT_TOKEN, HttpMethod::Put, "/agent/prekey-bundle", json_bytes(bundle("aWQx"))).await;
    let post = |ids: &[u32]| {
        let keys: Vec<Value> = ids.iter().map(|id| json!({"prekey_id": id, "public_key": format!("k{id}=")})).collect();
        json_bytes(json!({ "one_time_prekeys": keys }))
    };
    let (status, answer) = call(&relay, AGENT_TOKEN, HttpMethod::Post, "/agent/one-time-prekeys", post(&[1, 2])).await;
    assert_eq!((status, &answer["held"]), (200, &json!(2)));
    // A later batch goes after the keys held; putting the bundle again leaves them alone.
    call(&relay, AGENT_TOKEN, HttpMethod::Post, "/agent/one-time-prekeys", post(&[3, 4])).await;
    call(&relay, AGENT_TOKEN, HttpMethod::Put, "/agent/prekey-bundle", json_bytes(bundle("aWQx"))).await;
    assert_eq!(relay.one_time_prekey_ids(AGENT), [1, 2, 3, 4]);
    // Beyond the limit the oldest go; a key posted again moves to the back, with its new value
    // (the last one, when a batch repeats an id).
    let (_, answer) = call(&relay, AGENT_TOKEN, HttpMethod::Post, "/agent/one-time-prekeys", post(&[5, 2])).await;
    assert_eq!(answer["held"], json!(4));
    assert_eq!(relay.one_time_prekey_ids(AGENT), [3, 4, 5, 2]);
    let repeated = json_bytes(json!({"one_time_prekeys": [
        {"prekey_id": 6, "public_key": "old="}, {"prekey_id": 7, "public_key": "k7="}, {"prekey_id": 6, "public_key": "new="}
    ]}));
    call(&relay, AGENT_TOKEN, HttpMethod::Post, "/agent/one-time-prekeys", repeated).await;
    assert_eq!(relay.one_time_prekey_ids(AGENT), [5, 2, 7, 6]);
    let path = format!("/person/agents/{AGENT}/prekey-bundle");
    let mut handed = Vec::new();
    for _ in 0..4 {
        let (_, fetched) = call(&relay, ALICE_TOKEN, HttpMethod::Get, &path, vec![]).await;
        handed.push((fetched["prekey_id"].clone(), fetched["prekey_public"].clone()));
    }
    assert_eq!(
        handed,
        [(json!(5), json!("k5=")), (json!(2), json!("k2=")), (json!(7), json!("k7=")), (json!(6), json!("new="))]
    );
    assert!(relay.one_time_prekey_ids(AGENT).is_empty());
    relay.shutdown().await;
}

#[tokio::test]
async fn conversations_check_members() {
    let relay = relay().await;
    assert_error(
        &call(
            &relay,
            ALICE_TOKEN,
            HttpMethod::Post,
            "/person/conversations",
            json_bytes(json!({"members": ["ghost"]})),
        )
        .await,
        404,
    );
    assert_error(
        &call(&relay, ALICE_TOKEN, HttpMethod::Post, "/person/conversations", json_bytes(json!({"members": []}))).await,
        400,
    );
    let chosen = json!({"members": [AGENT], "conversation_id": "c-fixed"});
    assert_eq!(
        call(&relay, ALICE_TOKEN, HttpMethod::Post, "/person/conversations", json_bytes(chosen.clone())).await.1["conversation_id"],
        "c-fixed"
    );
    assert_eq!(
        call(&relay, ALICE_TOKEN, HttpMethod::Post, "/person/conversations", json_bytes(chosen)).await.0,
        200,
        "idempotent"
    );
    let other = json!({"members": [AGENT, BOB], "conversation_id": "c-fixed"});
    assert_error(&call(&relay, ALICE_TOKEN, HttpMethod::Post, "/person/conversations", json_bytes(other)).await, 409);

    // Bob is not in c-fixed: his message is refused with an ERROR frame, and his socket stays usable.
    let mut bob = person_socket(&relay, BOB_TOKEN).await;
    send(&mut bob, json!({"type": "MSG", "id": "m1", "conversation_id": "c-fixed", "to": AGENT, "payload_b64": "aGk=", "encrypted": false})).await;
    let refusal = next(&mut bob).await;
    assert_eq!((refusal["type"].as_str(), refusal["message_id"].as_str()), (Some("ERROR"), Some("m1")));
    send(&mut bob, json!({"type": "MSG", "id": "m2"})).await;
    assert_eq!(next(&mut bob).await["type"], "ERROR");
    bob.send(Message::text("not json")).await.unwrap();
    assert_eq!(next(&mut bob).await["type"], "ERROR");
    assert_eq!(relay.pending_for_agent(AGENT), 0);
    relay.shutdown().await;
}

#[tokio::test]
async fn messages_queue_replay_until_acknowledged_and_reads_reach_the_sender() {
    let relay = relay().await;
    let conversation = conversation(&relay, json!([AGENT]), false).await;
    let mut alice = person_socket(&relay, ALICE_TOKEN).await;
    send(
        &mut alice,
        json!({"type": "MSG", "id": "m1", "conversation_id": conversation, "to": AGENT,
                            "payload_b64": "aGk=", "encrypted": false, "from_device_id": "phone"}),
    )
    .await;
    // The agent is offline: the relay holds it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(relay.pending_for_agent(AGENT), 1);

    let mut agent = agent_socket(&relay).await;
    let delivered = next(&mut agent).await;
    assert_eq!(
        delivered,
        json!({"type": "MSG", "id": "m1", "conversation_id": conversation, "from": ALICE, "to": AGENT,
               "payload_b64": "aGk=", "encrypted": false, "from_device_id": "phone"})
    );
    // No acknowledgement: the message comes again after a reconnect.
    relay.disconnect_agent(AGENT).await;
    let mut agent = agent_socket(&relay).await;
    assert_eq!(next(&mut agent).await["id"], "m1");
    send(&mut agent, json!({"type": "ACK_READ", "to": ALICE, "message_id": "m1", "conversation_id": conversation}))
        .await;
    let read = next(&mut alice).await;
    assert_eq!(read, json!({"type": "READ", "message_id": "m1", "conversation_id": conversation, "by": AGENT}));
    assert_eq!(relay.pending_for_agent(AGENT), 0);
    relay.disconnect_agent(AGENT).await;
    let mut agent = agent_socket(&relay).await;
    nothing_within(&mut agent, Duration::from_millis(200)).await;

    // The agent's reply reaches alice with its device and archive record.
    send(
        &mut agent,
        json!({"type": "MSG", "id": "r1", "conversation_id": conversation, "to": ALICE, "payload_b64": "b2s=",
                            "encrypted": false, "to_device_id": "phone", "reply_to_message_id": "m1"}),
    )
    .await;
    let reply = next(&mut alice).await;
    assert_eq!(
        (reply["from"].as_str(), reply["to_device_id"].as_str(), reply["reply_to_message_id"].as_str()),
        (Some(AGENT), Some("phone"), Some("m1"))
    );
    // An agent message to someone outside the conversation is refused.
    send(&mut agent, json!({"type": "MSG", "id": "r2", "conversation_id": conversation, "to": BOB, "payload_b64": "", "encrypted": false})).await;
    assert_eq!(next(&mut agent).await["type"], "ERROR");
    relay.shutdown().await;
}

#[tokio::test]
async fn identity_changes_are_announced_to_peers() {
    let relay = relay().await;
    conversation(&relay, json!([AGENT]), false).await;
    let mut alice = person_socket(&relay, ALICE_TOKEN).await;
    let mut agent = agent_socket(&relay).await;
    call(&relay, AGENT_TOKEN, HttpMethod::Put, "/agent/prekey-bundle", json_bytes(bundle("aWQx"))).await;
    call(&relay, AGENT_TOKEN, HttpMethod::Put, "/agent/prekey-bundle", json_bytes(bundle("aWQx"))).await;
    nothing_within(&mut alice, Duration::from_millis(100)).await;
    call(&relay, AGENT_TOKEN, HttpMethod::Put, "/agent/prekey-bundle", json_bytes(bundle("aWQy"))).await;
    assert_eq!(next(&mut alice).await, json!({"type": "IDENTITY_CHANGED", "agent_id": AGENT}));

    call(&relay, ALICE_TOKEN, HttpMethod::Put, "/person/identity", json_bytes(json!({"identity_key": "YTE="}))).await;
    call(&relay, ALICE_TOKEN, HttpMethod::Put, "/person/identity", json_bytes(json!({"identity_key": "YTI="}))).await;
    assert_eq!(next(&mut agent).await, json!({"type": "IDENTITY_CHANGED", "user_id": ALICE}));
    relay.shutdown().await;
}

#[tokio::test]
async fn group_messages_fan_out_and_group_keys_reach_their_agent() {
    let relay = relay().await;
    let group = conversation(&relay, json!([AGENT, BOB]), true).await;
    let mut agent = agent_socket(&relay).await;
    let mut alice = person_socket(&relay, ALICE_TOKEN).await;
    let mut bob = person_socket(&relay, BOB_TOKEN).await;
    let to = format!("group:{group}");
    send(&mut alice, json!({"type": "MSG", "id": "g1", "conversation_id": group, "to": to, "payload_b64": "aGk=", "encrypted": false})).await;
    assert_eq!(next(&mut agent).await["to"], to.as_str());
    assert_eq!(next(&mut bob).await["from"], ALICE);
    nothing_within(&mut alice, Duration::from_millis(100)).await;
    send(&mut agent, json!({"type": "MSG", "id": "g2", "conversation_id": group, "to": to, "payload_b64": "eW8=", "encrypted": false})).await;
    assert_eq!(next(&mut alice).await["id"], "g2");
    assert_eq!(next(&mut bob).await["id"], "g2");

    let envelopes = json!({"envelopes": [{"recipient_id": AGENT, "conversation_id": group, "key_id": "k1", "epoch": 1, "envelope_b64": "ZW52"}]});
    assert_eq!(call(&relay, ALICE_TOKEN, HttpMethod::Post, "/person/group-keys", json_bytes(envelopes)).await.0, 200);
    let (status, keys) =
        call(&relay, AGENT_TOKEN, HttpMethod::Get, &format!("/agent/group-keys?conversation_id={group}"), vec![]).await;
    assert_eq!(status, 200);
    assert_eq!(
        keys,
        json!([{"conversation_id": group, "key_id": "k1", "epoch": 1, "sender_id": ALICE, "envelope_b64": "ZW52"}])
    );
    // Another person of the group fetches the envelopes addressed to them; the sender may not
    // address itself, and outsiders read nothing.
    let to_a_person = json!({"envelopes": [{"recipient_id": BOB, "conversation_id": group, "key_id": "k1", "epoch": 1, "sender_device_id": "phone", "envelope_b64": "Ym9i"}]});
    assert_eq!(call(&relay, ALICE_TOKEN, HttpMethod::Post, "/person/group-keys", json_bytes(to_a_person)).await.0, 200);
    let path = format!("/person/group-keys?conversation_id={group}");
    assert_eq!(
        call(&relay, BOB_TOKEN, HttpMethod::Get, &path, vec![]).await,
        (
            200,
            json!([{"conversation_id": group, "key_id": "k1", "epoch": 1, "sender_id": ALICE, "sender_device_id": "phone", "envelope_b64": "Ym9i"}])
        )
    );
    assert_eq!(call(&relay, ALICE_TOKEN, HttpMethod::Get, &path, vec![]).await, (200, json!([])));
    let to_oneself = json!({"envelopes": [{"recipient_id": ALICE, "conversation_id": group, "key_id": "k1", "epoch": 1, "envelope_b64": "ZW52"}]});
    assert_error(&call(&relay, ALICE_TOKEN, HttpMethod::Post, "/person/group-keys", json_bytes(to_oneself)).await, 400);
    assert!(relay.observed().iter().any(|item| item.windows(4).any(|window| window == b"Ym9i")), "key bodies observed");
    // A plain conversation has no group target.
    let direct = conversation(&relay, json!([AGENT]), false).await;
    send(&mut alice, json!({"type": "MSG", "id": "g3", "conversation_id": direct, "to": format!("group:{direct}"), "payload_b64": "", "encrypted": false})).await;
    assert_eq!(next(&mut alice).await["type"], "ERROR");
    relay.shutdown().await;
}

#[tokio::test]
async fn persons_publish_bundles_that_people_they_share_a_conversation_with_fetch() {
    let relay = relay().await;
    let path = format!("/person/persons/{BOB}/prekey-bundle");
    // Bob shares no conversation with Alice yet, and has no bundle.
    assert_error(&call(&relay, ALICE_TOKEN, HttpMethod::Get, &path, vec![]).await, 403);
    conversation(&relay, json!([AGENT, BOB]), true).await;
    assert_error(&call(&relay, ALICE_TOKEN, HttpMethod::Get, &path, vec![]).await, 404);
    assert_eq!(
        call(&relay, BOB_TOKEN, HttpMethod::Put, "/person/prekey-bundle", json_bytes(bundle("Ym9iLWlk"))).await.0,
        200
    );
    let keys = json!({"one_time_prekeys": [{"prekey_id": 7, "public_key": "c2V2ZW4="}]});
    assert_eq!(
        call(&relay, BOB_TOKEN, HttpMethod::Post, "/person/one-time-prekeys", json_bytes(keys)).await,
        (200, json!({"held": 1}))
    );
    let (status, fetched) = call(&relay, ALICE_TOKEN, HttpMethod::Get, &path, vec![]).await;
    assert_eq!(status, 200);
    assert_eq!((fetched["identity_key"].as_str(), fetched["prekey_id"].as_u64()), (Some("Ym9iLWlk"), Some(7)));
    // Each one-time prekey goes once.
    let (_, again) = call(&relay, ALICE_TOKEN, HttpMethod::Get, &path, vec![]).await;
    assert!(again.get("prekey_id").is_none(), "{again}");
    assert_error(
        &call(&relay, ALICE_TOKEN, HttpMethod::Get, "/person/persons/nobody/prekey-bundle", vec![]).await,
        404,
    );
}

#[tokio::test]
async fn an_agent_message_sent_again_is_routed_once_and_lost_frames_cut_the_socket_unanswered() {
    let relay = relay().await;
    let conversation = conversation(&relay, json!([AGENT]), false).await;
    let mut alice = person_socket(&relay, ALICE_TOKEN).await;
    let mut agent = agent_socket(&relay).await;
    let msg = |id: &str| {
        json!({"type": "MSG", "id": id, "conversation_id": conversation, "to": ALICE, "payload_b64": "b2s=",
               "encrypted": false})
    };
    send(&mut agent, msg("r1")).await;
    assert_eq!(next(&mut alice).await["id"], "r1");
    send(&mut alice, json!({"type": "ACK_READ", "to": AGENT, "message_id": "r1", "conversation_id": conversation}))
        .await;
    // Sent again (the agent could not know it arrived): dropped, so alice's next frame is r2.
    send(&mut agent, msg("r1")).await;
    send(&mut agent, msg("r2")).await;
    assert_eq!(next(&mut alice).await["id"], "r2");

    // The hook loses r3 and cuts the socket at once: the ping behind it is never answered.
    relay.lose_agent_frames(AGENT, 1);
    send(&mut agent, msg("r3")).await;
    agent.send(Message::Ping(b"proof".to_vec().into())).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), agent.next()).await.expect("the socket ends") {
            Some(Ok(Message::Pong(_))) => panic!("a ping behind a lost frame was answered"),
            Some(Ok(_)) => {}
            None | Some(Err(_)) => break,
        }
    }
    let mut agent = agent_socket(&relay).await;
    send(&mut agent, msg("r4")).await;
    assert_eq!(next(&mut alice).await["id"], "r4", "r3 was lost, r4 routed");
    relay.shutdown().await;
}
