//! Agent Connect requests and answers: PKCE against RFC 7636, the bodies as the official SDK
//! writes them, and every way an answer can be unusable.

use super::*;
use rand::SeedableRng as _;
use rand::rngs::StdRng;

/// RFC 7636 appendix B: the example verifier and its S256 challenge.
const RFC_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const RFC_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn ok(body: &str) -> HttpResponse {
    HttpResponse { status: 200, body: body.as_bytes().to_vec() }
}

fn app() -> ConnectApp {
    ConnectApp::new("client-1", "https://app.example/callback", "Helper").description("Does things")
}

fn url_safe(value: &str) -> bool {
    value.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

#[test]
fn rfc_7636_appendix_b_challenge() {
    assert_eq!(challenge_of(RFC_VERIFIER), RFC_CHALLENGE);
    let pkce = Pkce::from_verifier(RFC_VERIFIER).expect("the RFC's verifier is valid");
    assert_eq!(pkce.challenge(), RFC_CHALLENGE);
    assert!(verifier_matches(RFC_VERIFIER, RFC_CHALLENGE));
    assert!(!verifier_matches(&RFC_VERIFIER.replace('d', "e"), RFC_CHALLENGE));
}

#[test]
fn rfc_7636_appendix_b_verifier_from_its_octets() {
    // The appendix's 32 octets, encoded as this module encodes random bytes.
    let octets = [
        116u8, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212, 37, 77, 105, 214, 191,
        240, 91, 88, 5, 88, 83, 132, 141, 121,
    ];
    assert_eq!(URL_SAFE_NO_PAD.encode(octets), RFC_VERIFIER);
}

#[test]
fn generated_verifiers_have_the_official_shape() {
    let mut rng = rng(1);
    let first = Pkce::generate(&mut rng);
    let second = Pkce::generate(&mut rng);
    assert_eq!(first.verifier().len(), VERIFIER_LEN);
    assert!(url_safe(first.verifier()));
    assert!(is_valid_verifier(first.verifier()));
    assert_eq!(first.challenge(), challenge_of(first.verifier()));
    assert_eq!(first.challenge().len(), CHALLENGE_LEN);
    assert!(!first.challenge().contains('='));
    assert_ne!(first.verifier(), second.verifier());
}

#[test]
fn verifiers_outside_rfc_shape_are_refused() {
    assert_eq!(Pkce::from_verifier(&"a".repeat(42)).unwrap_err(), ConnectError::InvalidVerifier);
    assert_eq!(Pkce::from_verifier(&"a".repeat(129)).unwrap_err(), ConnectError::InvalidVerifier);
    assert_eq!(Pkce::from_verifier(&format!("{}+", "a".repeat(50))).unwrap_err(), ConnectError::InvalidVerifier);
    assert!(Pkce::from_verifier(&"a~.-_".repeat(10)).is_ok());
}

#[test]
fn begin_builds_the_official_request() {
    let (call, pending) = begin(&app(), "ck_secret", &mut rng(2)).expect("valid input");
    assert_eq!(call.step, ConnectStep::Begin);
    assert_eq!(call.request.method, HttpMethod::Post);
    assert_eq!(call.request.path, "/agent-connect/requests");
    assert_eq!(call.request.content_type, Some("application/json"));
    assert_eq!(call.bearer(), Some("ck_secret"));
    let body: Value = serde_json::from_slice(&call.request.body).expect("JSON");
    let keys: Vec<&str> = body.as_object().expect("object").keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "client_id",
            "redirect_uri",
            "state",
            "code_challenge",
            "code_challenge_method",
            "agent_name",
            "agent_description",
            "scope"
        ]
    );
    assert_eq!(body["client_id"], "client-1");
    assert_eq!(body["redirect_uri"], "https://app.example/callback");
    assert_eq!(body["code_challenge_method"], "S256");
    assert_eq!(body["scope"], "myagents:agent-connect");
    assert_eq!(body["agent_description"], "Does things");
    assert_eq!(body["state"], pending.state());
    assert_eq!(pending.state().len(), 43);
    assert!(url_safe(pending.state()));
    // `json.dumps` layout: spaced separators.
    assert!(call.body_text().starts_with(r#"{"client_id": "client-1", "redirect_uri": "#));

    let start = pending
        .finish(&ok(r#"{"request_id":"r1","authorization_url":"https://x/a","expires_at":"2026-01-01T00:00:00Z","expires_in":600}"#))
        .expect("a good answer");
    assert_eq!(body["code_challenge"], challenge_of(start.code_verifier()).as_str());
    assert_eq!(start.code_verifier().len(), VERIFIER_LEN);
    assert_eq!(start.request_id, "r1");
    assert_eq!(start.expires_in, 600);
}

#[test]
fn a_given_state_is_sent_and_an_empty_one_is_drawn() {
    let (call, pending) = begin(&app().state("mine"), "ck", &mut rng(3)).expect("valid");
    assert_eq!(pending.state(), "mine");
    assert!(call.body_text().contains(r#""state": "mine""#));
    let (_, pending) = begin(&app().state(""), "ck", &mut rng(3)).expect("valid");
    assert_eq!(pending.state().len(), 43);
}

#[test]
fn begin_refuses_unusable_input() {
    assert_eq!(begin(&app(), "", &mut rng(4)).unwrap_err(), ConnectError::InvalidCredential { what: "connect key" });
    assert_eq!(
        begin(&app(), "key with space", &mut rng(4)).unwrap_err(),
        ConnectError::InvalidCredential { what: "connect key" }
    );
    assert_eq!(
        begin(&ConnectApp::new("", "r", "n"), "ck", &mut rng(4)).unwrap_err(),
        ConnectError::EmptyInput { field: "client_id" }
    );
}

#[test]
fn state_is_checked() {
    let (_, pending) = begin(&app().state("s-1"), "ck", &mut rng(5)).expect("valid");
    let start = pending
        .finish(&ok(r#"{"request_id":"r","authorization_url":"u","expires_at":"t","expires_in":1}"#))
        .expect("good");
    assert_eq!(start.check_state("s-1"), Ok(()));
    assert_eq!(start.check_state("s-2"), Err(ConnectError::StateMismatch));
    assert_eq!(start.check_state(""), Err(ConnectError::StateMismatch));
}

#[test]
fn the_exchange_is_form_encoded_as_python_does() {
    let verifier = "a".repeat(43) + "~._-";
    let call =
        CodeExchange::new("client 1", "https://app.example/cb?x=1&y=é", "co+de*", &verifier).request().expect("valid");
    assert_eq!(call.step, ConnectStep::Exchange);
    assert_eq!(call.request.path, "/agent-connect/token");
    assert_eq!(call.request.content_type, Some("application/x-www-form-urlencoded"));
    assert_eq!(call.bearer(), None);
    // Python: urlencode({...}) with quote_plus.
    assert_eq!(
        call.body_text(),
        format!(
            "grant_type=authorization_code&client_id=client+1&redirect_uri=https%3A%2F%2Fapp.example%2Fcb%3Fx%3D1%26y%3D%C3%A9&code=co%2Bde%2A&code_verifier={verifier}"
        )
    );
}

#[test]
fn the_exchange_refuses_a_bad_verifier_or_empty_code() {
    assert_eq!(CodeExchange::new("c", "r", "code", "short").request().unwrap_err(), ConnectError::InvalidVerifier);
    assert_eq!(
        CodeExchange::new("c", "r", "", RFC_VERIFIER).request().unwrap_err(),
        ConnectError::EmptyInput { field: "code" }
    );
}

#[test]
fn installation_and_runtime_tokens_are_read() {
    let installation = parse_installation_token(&ok(
        r#"{"installation_token":"it_1","token_type":"Bearer","agent_id":"a","owner_id":"o","conversation_id":"c","scope":"myagents:agent-connect"}"#,
    ))
    .expect("good");
    assert_eq!(installation.installation_token(), "it_1");
    assert_eq!(installation.agent_id, "a");
    let call = installation.runtime_token_request().expect("valid");
    assert_eq!(call.step, ConnectStep::RuntimeToken);
    assert_eq!(call.request.path, "/agent-connect/runtime-token");
    assert_eq!(call.request.method, HttpMethod::Post);
    assert!(call.request.body.is_empty());
    assert_eq!(call.request.content_type, Some("application/x-www-form-urlencoded"));
    assert_eq!(call.bearer(), Some("it_1"));

    let runtime = parse_runtime_token(&ok(
        r#"{"agent_id":"a","owner_id":"o","conversation_id":"c","agent_token":"at_1","expires_in":3600}"#,
    ))
    .expect("good");
    assert_eq!(runtime.agent_token(), "at_1");
    assert_eq!(runtime.expires_in, 3600);
}

#[test]
fn secrets_never_reach_debug_output() {
    let (call, pending) = begin(&app(), "ck_secret_key", &mut rng(6)).expect("valid");
    assert!(!format!("{call:?}").contains("ck_secret_key"));
    let start = pending
        .finish(&ok(r#"{"request_id":"r","authorization_url":"u","expires_at":"t","expires_in":1}"#))
        .expect("good");
    let verifier = start.code_verifier().to_owned();
    assert!(!format!("{start:?}").contains(&verifier));
    let exchange = start.exchange(&app(), "the-code-1234");
    let printed = format!("{exchange:?}");
    assert!(!printed.contains(&verifier) && !printed.contains("the-code-1234"));
    let installation = parse_installation_token(&ok(
        r#"{"installation_token":"it_secret","token_type":"Bearer","agent_id":"a","owner_id":"o","conversation_id":"c","scope":"s"}"#,
    ))
    .expect("good");
    assert!(!format!("{installation:?}").contains("it_secret"));
    let runtime = parse_runtime_token(&ok(
        r#"{"agent_id":"a","owner_id":"o","conversation_id":"c","agent_token":"at_secret","expires_in":1}"#,
    ))
    .expect("good");
    assert!(!format!("{runtime:?}").contains("at_secret"));
    assert!(!format!("{:?}", Pkce::from_verifier(RFC_VERIFIER).expect("valid")).contains(RFC_VERIFIER));
}

#[test]
fn error_statuses_are_refusals_with_the_relay_reason() {
    let refused = parse_runtime_token(&HttpResponse { status: 401, body: br#"{"error":"expired"}"#.to_vec() });
    assert_eq!(
        refused.unwrap_err(),
        ConnectError::Refused { step: ConnectStep::RuntimeToken, status: 401, reason: Some("expired".into()) }
    );
    let refused = parse_installation_token(&HttpResponse { status: 500, body: b"<html>".to_vec() });
    assert_eq!(refused.unwrap_err(), ConnectError::Refused { step: ConnectStep::Exchange, status: 500, reason: None });
    let long = format!(r#"{{"error":"{}"}}"#, "x".repeat(5000));
    let Err(ConnectError::Refused { reason: Some(reason), .. }) =
        parse_runtime_token(&HttpResponse { status: 400, body: long.into_bytes() })
    else {
        panic!("a refusal with a reason")
    };
    assert_eq!(reason.chars().count(), MAX_REASON_CHARS);
}

#[test]
fn malformed_answers_are_named() {
    let step = ConnectStep::RuntimeToken;
    let parse = |body: &str| parse_runtime_token(&ok(body)).unwrap_err();
    assert_eq!(parse("not json"), ConnectError::NotJson { step });
    assert_eq!(parse(""), ConnectError::NotJson { step });
    assert_eq!(parse("[1]"), ConnectError::NotAnObject { step });
    assert_eq!(
        parse(r#"{"owner_id":"o","conversation_id":"c","agent_token":"t","expires_in":1}"#),
        ConnectError::MissingField { step, field: "agent_id" }
    );
    assert_eq!(
        parse(r#"{"agent_id":null,"owner_id":"o","conversation_id":"c","agent_token":"t","expires_in":1}"#),
        ConnectError::MissingField { step, field: "agent_id" }
    );
    assert_eq!(
        parse(r#"{"agent_id":7,"owner_id":"o","conversation_id":"c","agent_token":"t","expires_in":1}"#),
        ConnectError::WrongType { step, field: "agent_id", expected: "a string" }
    );
    assert_eq!(
        parse(r#"{"agent_id":"a","owner_id":"o","conversation_id":"c","agent_token":"t","expires_in":"60"}"#),
        ConnectError::WrongType { step, field: "expires_in", expected: "a number" }
    );
    assert_eq!(
        parse(r#"{"agent_id":"a","owner_id":"o","conversation_id":"c","agent_token":"t","expires_in":-1}"#),
        ConnectError::InvalidField { step, field: "expires_in", reason: "is not a whole number of seconds" }
    );
    assert_eq!(
        parse(r#"{"agent_id":"a","owner_id":"o","conversation_id":"c","agent_token":"t","expires_in":1.5}"#),
        ConnectError::InvalidField { step, field: "expires_in", reason: "is not a whole number of seconds" }
    );
    assert_eq!(
        parse(r#"{"agent_id":"a","owner_id":"o","conversation_id":"c","agent_token":"t\nx","expires_in":1}"#),
        ConnectError::InvalidField { step, field: "agent_token", reason: "is not visible ASCII" }
    );
    assert_eq!(
        parse(r#"{"agent_id":"","owner_id":"o","conversation_id":"c","agent_token":"t","expires_in":1}"#),
        ConnectError::InvalidField { step, field: "agent_id", reason: "is empty" }
    );
    let (_, pending) = begin(&app(), "ck", &mut rng(7)).expect("valid");
    assert_eq!(
        pending.finish(&ok(r#"{"request_id":"r","authorization_url":"u","expires_at":5,"expires_in":1}"#)).unwrap_err(),
        ConnectError::WrongType { step: ConnectStep::Begin, field: "expires_at", expected: "a string" }
    );
}

#[test]
fn oversized_answers_are_refused_before_parsing() {
    let body = format!(r#"{{"agent_id":"{}"}}"#, "a".repeat(MAX_ANSWER_BYTES));
    let len = body.len();
    assert_eq!(
        parse_runtime_token(&ok(&body)).unwrap_err(),
        ConnectError::TooLarge { step: ConnectStep::RuntimeToken, len, max: MAX_ANSWER_BYTES }
    );
}

#[test]
fn runtime_token_request_refuses_a_bad_installation_token() {
    assert_eq!(runtime_token_request("").unwrap_err(), ConnectError::InvalidCredential { what: "installation token" });
    assert_eq!(
        runtime_token_request("a\r\nb").unwrap_err(),
        ConnectError::InvalidCredential { what: "installation token" }
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever bytes an answer holds, parsing returns a value or an error, never panics.
        #[test]
        fn parsers_never_panic(status in 100u16..600, body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let response = HttpResponse { status, body };
            let _ = parse_runtime_token(&response);
            let _ = parse_installation_token(&response);
        }

        /// The form encoding decodes back to what was encoded, as a server decodes it.
        #[test]
        fn form_encoding_round_trips(value in ".{0,40}") {
            let encoded = form_urlencode([("k", value.as_str())]);
            let encoded = encoded.strip_prefix("k=").expect("the name");
            prop_assert!(encoded.bytes().all(|byte| byte.is_ascii_graphic()));
            let mut decoded = Vec::new();
            let mut bytes = encoded.bytes();
            while let Some(byte) = bytes.next() {
                match byte {
                    b'+' => decoded.push(b' '),
                    b'%' => {
                        let hex: String = [bytes.next().unwrap_or(b'0'), bytes.next().unwrap_or(b'0')].iter().map(|&b| char::from(b)).collect();
                        decoded.push(u8::from_str_radix(&hex, 16).expect("hex"));
                    }
                    byte => decoded.push(byte),
                }
            }
            prop_assert_eq!(decoded, value.as_bytes());
        }
    }
}
