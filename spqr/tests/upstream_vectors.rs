//! Known-answer tests against spqr 1.5.1 (the version the official runtime embeds).
//!
//! Each file in `tests/vectors/` is a conversation between two upstream parties (see the README
//! there). For each side in turn we run our implementation as that side: its sends get exactly
//! the random bytes upstream's send consumed at that step, and must produce upstream's message
//! bytes and key; every message it receives is upstream's peer message, and must give
//! upstream's key or upstream's error. Tampered-message probes must give upstream's answer too.
//! Nothing depends on the order in which randomness is drawn across steps.

use std::collections::HashMap;
use std::convert::Infallible;

use pacerelle_spqr::{ChainParams, Direction, Params, State, Version};
use serde_json::Value;

/// Hands out exactly the bytes one upstream send consumed.
struct Replay {
    bytes: Vec<u8>,
    at: usize,
    overrun: bool,
}

impl rand_core::TryRng for Replay {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for d in dst {
            match self.bytes.get(self.at) {
                Some(b) => *d = *b,
                None => self.overrun = true,
            }
            self.at += 1;
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for Replay {}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn version(v: &Value) -> Version {
    match v.as_u64() {
        Some(0) => Version::V0,
        Some(1) => Version::V1,
        other => panic!("bad version {other:?}"),
    }
}

/// What upstream reported for a receive: Ok(key hex or None) or Err(Debug string).
fn expected(ev: &Value) -> Result<Option<String>, String> {
    match ev.get("error") {
        Some(e) => Err(e.as_str().unwrap().to_owned()),
        None => Ok(ev["key"].as_str().map(str::to_owned)),
    }
}

fn actual(r: Result<Option<zeroize::Zeroizing<[u8; 32]>>, pacerelle_spqr::Error>) -> Result<Option<String>, String> {
    match r {
        Ok(k) => Ok(k.map(|k| hex(&*k))),
        Err(e) => Err(format!("{e:?}")),
    }
}

struct Counts {
    sends: usize,
    keyed_sends: usize,
    recvs: usize,
    keyed_recvs: usize,
    errors: usize,
    probes: usize,
    max_epoch: u64,
}

/// Plays `me` ("A" or "B") through the conversation in `v`.
fn play(v: &Value, me: &str) -> Counts {
    let name = v["name"].as_str().unwrap();
    let auth_key = unhex(v["auth_key"].as_str().unwrap());
    let side = if me == "A" { &v["a"] } else { &v["b"] };
    let mut state = State::new(Params {
        direction: if me == "A" { Direction::A2B } else { Direction::B2A },
        version: version(&side["version"]),
        min_version: version(&side["min_version"]),
        auth_key: &auth_key,
        chain_params: ChainParams {
            max_jump: v["max_jump"].as_u64().unwrap() as u32,
            max_ooo_keys: v["max_ooo_keys"].as_u64().unwrap() as u32,
        },
    })
    .unwrap();
    let mut msgs: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut c = Counts { sends: 0, keyed_sends: 0, recvs: 0, keyed_recvs: 0, errors: 0, probes: 0, max_epoch: 0 };
    for (n, ev) in v["events"].as_array().unwrap().iter().enumerate() {
        let at = format!("{name}, playing {me}, event {n}: {ev}");
        let party = ev["party"].as_str().unwrap();
        let op = ev["op"].as_str().unwrap();
        match (op, party == me) {
            ("send", true) => {
                let mut rng = Replay { bytes: unhex(ev["rand"].as_str().unwrap()), at: 0, overrun: false };
                let sent = state.send(&mut rng).unwrap_or_else(|e| panic!("{at}: send failed: {e:?}"));
                assert!(!rng.overrun && rng.at == rng.bytes.len(), "{at}: used {} random bytes", rng.at);
                assert_eq!(hex(&sent.message), ev["msg"].as_str().unwrap(), "{at}: message bytes");
                assert_eq!(sent.key.as_ref().map(|k| hex(&**k)), ev["key"].as_str().map(str::to_owned), "{at}: key");
                msgs.insert(ev["id"].as_u64().unwrap(), sent.message);
                c.sends += 1;
                c.keyed_sends += usize::from(sent.key.is_some());
                c.max_epoch = c.max_epoch.max(state.epoch());
            }
            ("send", false) => {
                msgs.insert(ev["id"].as_u64().unwrap(), unhex(ev["msg"].as_str().unwrap()));
            }
            ("recv", true) => {
                let msg = &msgs[&ev["id"].as_u64().unwrap()];
                let before = state.to_bytes();
                let got = actual(state.recv(msg));
                let want = expected(ev);
                assert_eq!(got, want, "{at}");
                if got.is_err() {
                    assert_eq!(state.to_bytes(), before, "{at}: a failed receive changed the state");
                    c.errors += 1;
                } else {
                    c.keyed_recvs += usize::from(matches!(got, Ok(Some(_))));
                }
                c.recvs += 1;
                c.max_epoch = c.max_epoch.max(state.epoch());
            }
            ("probe", true) => {
                let mut copy = state.clone();
                let got = actual(copy.recv(&unhex(ev["msg"].as_str().unwrap())));
                assert_eq!(got, expected(ev), "{at}: tampered message");
                if got.is_err() {
                    assert_eq!(copy.to_bytes(), state.to_bytes(), "{at}: a failed receive changed the state");
                }
                c.probes += 1;
            }
            ("recv" | "probe", false) => {}
            _ => panic!("{at}: unknown event"),
        }
    }
    c
}

fn load(name: &str) -> Value {
    let path = format!("{}/tests/vectors/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Plays both sides and checks the conversation really exercised what it claims to.
fn both_sides(name: &str, min_epoch: u64) -> (Counts, Counts) {
    let v = load(name);
    let a = play(&v, "A");
    let b = play(&v, "B");
    for c in [&a, &b] {
        assert!(c.sends > 0 && c.recvs > 0);
        assert!(c.max_epoch >= min_epoch, "{name}: reached epoch {} only", c.max_epoch);
    }
    (a, b)
}

#[test]
fn lockstep() {
    let (a, b) = both_sides("lockstep", 5);
    // Every message carries a key in a V1-only session.
    assert_eq!(a.keyed_sends, a.sends);
    assert_eq!(b.keyed_recvs, b.recvs);
}

#[test]
fn random_v1_with_reordering_drops_replays_and_tampering() {
    let (a, b) = both_sides("random_v1", 4);
    assert!(a.errors + b.errors > 0, "replays should have been refused");
    assert!(a.probes + b.probes > 0);
}

#[test]
fn random_while_negotiating() {
    let (a, b) = both_sides("random_negotiating", 3);
    // Before a party's first receive, its sends carry no key while V0 is still acceptable.
    assert!(a.keyed_sends < a.sends || b.keyed_sends < b.sends);
}

#[test]
fn random_with_small_chain_params() {
    let (a, b) = both_sides("random_small_chain_params", 3);
    assert!(a.errors + b.errors > 0);
}

#[test]
fn random_bursts_with_key_jumps() {
    let (a, b) = both_sides("random_jumps", 3);
    assert!(a.errors + b.errors > 0, "jumps and trims should have been refused");
}

#[test]
fn downgrade_to_v0() {
    let v = load("downgrade_to_v0");
    let a = play(&v, "A");
    play(&v, "B");
    assert!(a.recvs > 0);
}

#[test]
fn refuse_v0() {
    let v = load("refuse_v0");
    let b = play(&v, "B");
    play(&v, "A");
    assert!(b.errors > 0, "B (min V1) must refuse the V0 peer");
}
