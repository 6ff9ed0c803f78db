//! The most expensive frames a relay (or anyone writing frames) can hand an agent, against a
//! session record loaded to every limit, timed per frame through `Account::decrypt` with the two
//! names the agent tries for a person (device-scoped, then conversation-scoped), both holding
//! the full record. See BENCHMARKS.md, "Hostile frames: worst case per frame".
//!
//! `cargo bench -p pacerelle-core --bench hostile`. Building the loaded record takes some
//! seconds before the timings; the bench prints its shape first.
//!
//! Times are the CPU time of the benchmarking thread (Linux `/proc/thread-self/schedstat`),
//! not wall time: the goal is CPU per frame, and the machine is shared, so wall time would
//! mostly measure the neighbours.

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use pacerelle_core::e2ee::account::{Account, PqFactory};
use pacerelle_core::e2ee::keys::{KeyPair, PublicKey};
use pacerelle_core::e2ee::kyber::{KYBER1024_TYPE, KyberKeyPair, SERIALIZED_CIPHERTEXT_LEN};
use pacerelle_core::e2ee::message::{
    FRAME_PREKEY, FRAME_WHISPER, Framed, MAX_FRAMED_LEN, PreKeyParts, PreKeySignalMessage, SignalMessage,
    SignalMessageParts, frame,
};
use pacerelle_core::e2ee::pq::PqRatchet;
use pacerelle_core::e2ee::pqxdh::{LocalIdentity, PeerBundle};
use pacerelle_core::e2ee::ratchet::{MAX_FORWARD_JUMP, MAX_RECEIVER_CHAINS, MAX_SKIPPED_KEYS};
use pacerelle_core::e2ee::session::{MAX_NEW_SESSION_JUMP, MAX_PREVIOUS_SESSIONS, PrekeySource, SessionRecord};
use pacerelle_core::store::{E2eeSnapshot, PrekeyKind, SecretBytes};
use pacerelle_core::wire::person::FetchedBundle;
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng};
use std::hint::black_box;
use std::time::Duration;

/// CPU time of the calling thread, in nanoseconds, as criterion's measurement.
struct ThreadCpu;

/// The calling thread's CPU time so far, in nanoseconds (the first field of its schedstat).
fn thread_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("Linux schedstat, for CPU time");
    stat.split_whitespace().next().and_then(|field| field.parse().ok()).expect("schedstat starts with nanoseconds")
}

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, started: u64) -> u64 {
        thread_cpu_ns().saturating_sub(started)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Formats nanoseconds of CPU time as criterion formats durations.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match typical {
            t if t < 1e3 => (1.0, "ns"),
            t if t < 1e6 => (1e-3, "µs"),
            t if t < 1e9 => (1e-6, "ms"),
            _ => (1e-9, "s"),
        };
        values.iter_mut().for_each(|value| *value *= factor);
        unit
    }
    fn scale_throughputs(&self, _: f64, _: &Throughput, values: &mut [f64]) -> &'static str {
        // Throughput is never set here; the values stay CPU nanoseconds.
        values.iter_mut().for_each(|_| {});
        "ns"
    }
    fn scale_for_machines(&self, _: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// New sessions as the SDK makes them: SPQR version 1 required.
const PQ: PqFactory = PqRatchet::spqr_required;
/// The names the agent tries for a person's frame, in its order.
const NAMES: [&str; 2] = ["human:p:c:device:d1", "human:p:c"];

/// The person: only its identity matters (it never receives PreKey messages).
struct Person(LocalIdentity);

impl PrekeySource for Person {
    fn identity(&self) -> &LocalIdentity {
        &self.0
    }
    fn signed_prekey(&self, _: u32) -> Option<&KeyPair> {
        None
    }
    fn kyber_prekey(&self, _: u32) -> Option<&KyberKeyPair> {
        None
    }
    fn one_time_prekey(&self, _: u32) -> Option<&KeyPair> {
        None
    }
}

/// What the relay saw of one session: the person's last ordinary frame to the agent.
struct Seen {
    ratchet_key: PublicKey,
    counter: u32,
    pq_epoch: u64,
    pq_index: u64,
}

/// An agent whose two names for the person each hold a record loaded to its limits.
struct Loaded {
    agent: Account,
    record: SessionRecord,
    /// For scale: a record with one established session, and a genuine message for it that
    /// comes after `MAX_FORWARD_JUMP` lost ones (the furthest ahead accepted).
    genuine: (SessionRecord, Vec<u8>),
    /// The last frame of each session, newest (the current one) first.
    seen: Vec<Seen>,
    person_identity: PublicKey,
    signed_prekey_id: u32,
    kyber_prekey_id: u32,
    one_time_prekey_id: u32,
}

fn varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut value = 0u64;
    for shift in 0..10 {
        let byte = bytes[*at];
        *at += 1;
        value |= u64::from(byte & 0x7f) << (7 * shift);
        if byte & 0x80 == 0 {
            break;
        }
    }
    value
}

fn put_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// What the relay reads off a frame in the clear.
fn seen(framed: &[u8]) -> Seen {
    let message = match Framed::decode(framed).expect("a genuine frame") {
        Framed::PreKey(prekey) => prekey.message,
        Framed::Whisper(message) => message,
    };
    let mut at = 1;
    let pq_epoch = varint(&message.pq_ratchet, &mut at);
    let pq_index = varint(&message.pq_ratchet, &mut at);
    Seen { ratchet_key: message.ratchet_key, counter: message.counter, pq_epoch, pq_index }
}

/// An SPQR version-1 field with no braid payload, naming chain key `index` of epoch `epoch`.
fn pq_field(epoch: u64, index: u64) -> Vec<u8> {
    let mut out = vec![1];
    put_varint(epoch, &mut out);
    put_varint(index, &mut out);
    out.push(0);
    out
}

/// An ordinary message (frame byte included) with a wrong MAC, padded to `MAX_FRAMED_LEN`
/// (or wrapped to fit when `wrap` makes it a PreKey message).
fn padded(
    ratchet_key: &PublicKey,
    counter: u32,
    pq: &[u8],
    wrap: &dyn Fn(Vec<u8>) -> Vec<u8>,
    rng: &mut StdRng,
) -> Vec<u8> {
    let (sender, receiver) = (KeyPair::generate(rng).public(), KeyPair::generate(rng).public());
    let build = |length: usize| {
        let ciphertext = vec![0x5a; length];
        let parts =
            SignalMessageParts { ratchet_key, counter, previous_counter: 0, ciphertext: &ciphertext, pq_ratchet: pq };
        wrap(SignalMessage::encode(&parts, &[7; 32], &sender, &receiver))
    };
    let overhead = build(16).len() - 16;
    let mut length = MAX_FRAMED_LEN - overhead;
    loop {
        let framed = build(length);
        if framed.len() <= MAX_FRAMED_LEN {
            return framed;
        }
        length -= framed.len() - MAX_FRAMED_LEN;
    }
}

fn whisper(message: Vec<u8>) -> Vec<u8> {
    frame(FRAME_WHISPER, message)
}

fn load(rng: &mut StdRng) -> Loaded {
    let mut snapshot = E2eeSnapshot::default();
    let (mut agent, changes) = Account::load_or_create(&snapshot, PQ, rng).expect("an agent");
    snapshot.apply(&changes);
    let (changes, body, one_time) = agent.publish(rng).expect("a publication");
    snapshot.apply(&changes);
    let fetched = FetchedBundle { bundle: body, prekey_id: None, prekey_public: None };
    let bundle = PeerBundle::from_fetched(&fetched).expect("our own bundle");
    let person = Person(LocalIdentity { key_pair: KeyPair::generate(rng), registration_id: 9 });

    let mut record = SessionRecord::new();
    let mut seen_frames = Vec::new();
    for _ in 0..=MAX_PREVIOUS_SESSIONS {
        let mut theirs = SessionRecord::new();
        theirs.initiate(&person.0, &bundle, PQ, rng).expect("a session from the bundle");
        let first = theirs.encrypt(b"hello", rng).expect("the person writes");
        record.decrypt(&first, &agent, PQ, rng).expect("the agent reads it");
        let mut last = Vec::new();
        for chain in 0..MAX_RECEIVER_CHAINS {
            if chain > 0 {
                // The person reads a reply, so its next message turns the ratchet: a new chain.
                let reply = record.encrypt(b"reply", rng).expect("the agent replies");
                theirs.decrypt(&reply, &person, PQ, rng).expect("the person reads it");
            }
            // Messages lost on the way, so the agent keeps as many skipped keys as it may.
            let mut skipped = 0;
            while skipped < MAX_SKIPPED_KEYS {
                let gap = (MAX_FORWARD_JUMP as usize).min(MAX_SKIPPED_KEYS - skipped);
                for _ in 0..gap {
                    theirs.encrypt(b"lost", rng).expect("the person writes");
                }
                last = theirs.encrypt(b"delivered", rng).expect("the person writes");
                record.decrypt(&last, &agent, PQ, rng).expect("the agent reads it");
                skipped += gap;
            }
        }
        seen_frames.push(seen(&last));
    }
    let genuine = {
        let (mut theirs, mut ours) = (SessionRecord::new(), SessionRecord::new());
        theirs.initiate(&person.0, &bundle, PQ, rng).expect("a session from the bundle");
        ours.decrypt(&theirs.encrypt(b"hello", rng).expect("written"), &agent, PQ, rng).expect("read");
        theirs.decrypt(&ours.encrypt(b"hello", rng).expect("written"), &person, PQ, rng).expect("read");
        for _ in 0..MAX_FORWARD_JUMP {
            theirs.encrypt(b"lost", rng).expect("the person writes");
        }
        (ours, theirs.encrypt(b"the genuine one", rng).expect("the person writes"))
    };
    seen_frames.reverse();
    let bytes = record.to_bytes();
    for name in NAMES {
        snapshot.sessions.insert(name.to_owned(), SecretBytes::new(bytes.to_vec()));
    }
    let (agent_loaded, _) = Account::load_or_create(&snapshot, PQ, rng).expect("the loaded agent");
    let one_time_prekey_id = one_time.one_time_prekeys[0].prekey_id;
    assert!(snapshot.prekeys.contains_key(&(PrekeyKind::OneTime, one_time_prekey_id)));
    Loaded {
        agent: agent_loaded,
        record,
        genuine,
        seen: seen_frames,
        person_identity: person.0.key_pair.public(),
        signed_prekey_id: bundle.signed_prekey_id,
        kyber_prekey_id: bundle.kyber_prekey_id,
        one_time_prekey_id,
    }
}

/// The hostile frames, by name.
fn frames(loaded: &Loaded, rng: &mut StdRng) -> Vec<(&'static str, Vec<u8>)> {
    // As far ahead as allowed: `MAX_FORWARD_JUMP` messages skipped, on either chain.
    let jump = u64::from(MAX_FORWARD_JUMP);
    let current = &loaded.seen[0];
    let oldest = loaded.seen.last().expect("sessions");
    println!(
        "SPQR chains as the relay saw them: current session epoch {} key {}, oldest session epoch {} key {}",
        current.pq_epoch, current.pq_index, oldest.pq_epoch, oldest.pq_index
    );
    let stranger = KeyPair::generate(rng).public();
    // For the new session: the agent's real signed, Kyber and one-time prekeys, a base key
    // never seen, and a Kyber ciphertext that decapsulates (to nothing useful).
    let mut kyber_ciphertext = vec![KYBER1024_TYPE];
    kyber_ciphertext.extend((1..SERIALIZED_CIPHERTEXT_LEN).map(|_| rng.random::<u8>()));
    let base_key = KeyPair::generate(rng).public();
    let wrap = |message: Vec<u8>| {
        let parts = PreKeyParts {
            registration_id: 9,
            prekey_id: Some(loaded.one_time_prekey_id),
            signed_prekey_id: loaded.signed_prekey_id,
            kyber_prekey_id: loaded.kyber_prekey_id,
            kyber_ciphertext: &kyber_ciphertext,
            base_key: &base_key,
            identity_key: &loaded.person_identity,
        };
        frame(FRAME_PREKEY, PreKeySignalMessage::encode(&parts, message))
    };
    let first_ratchet = KeyPair::generate(rng).public();
    vec![
        // A ratchet key no session knows, as far ahead as allowed on both chains: the first
        // session tried turns its ratchet and spends the whole key budget.
        (
            "unknown_ratchet_key_max_jump",
            padded(
                &stranger,
                MAX_FORWARD_JUMP,
                &pq_field(current.pq_epoch, current.pq_index + jump + 1),
                &whisper,
                rng,
            ),
        ),
        // The keys spread so that every session allowed is tried: counter 0 (one Double
        // Ratchet key) and the SPQR key `MAX_FORWARD_JUMP` ahead (SPQR keys cost the most).
        (
            "unknown_ratchet_key_every_try",
            padded(&stranger, 0, &pq_field(current.pq_epoch, current.pq_index + jump), &whisper, rng),
        ),
        // The current chain's ratchet key, as far ahead as allowed.
        (
            "current_chain_max_jump",
            padded(
                &current.ratchet_key,
                current.counter + 1 + MAX_FORWARD_JUMP,
                &pq_field(current.pq_epoch, current.pq_index + jump + 1),
                &whisper,
                rng,
            ),
        ),
        // The oldest kept session's newest chain: a skipped key there (no Double Ratchet key
        // to derive), its SPQR key far ahead, then every other session may turn its ratchet.
        (
            "oldest_session_skipped_key",
            padded(&oldest.ratchet_key, 0, &pq_field(oldest.pq_epoch, oldest.pq_index + jump), &whisper, rng),
        ),
        // A new session (PQXDH as responder, Kyber decapsulation), then its first chain run as
        // far ahead as a new session's first message may be.
        (
            "prekey_unknown_base_key",
            padded(&first_ratchet, MAX_NEW_SESSION_JUMP, &pq_field(1, u64::from(MAX_NEW_SESSION_JUMP) + 1), &wrap, rng),
        ),
        // A replay of an old counter on the current chain.
        (
            "replayed_counter",
            padded(&current.ratchet_key, current.counter, &pq_field(current.pq_epoch, current.pq_index), &whisper, rng),
        ),
        // No SPQR field on the current chain.
        ("no_spqr_field", padded(&current.ratchet_key, current.counter + 1, &[], &whisper, rng)),
        // Past the frame size cap.
        ("oversized", vec![FRAME_WHISPER; MAX_FRAMED_LEN + 1]),
    ]
}

/// What the caps are made of: the unit costs the worst frames add up.
fn primitives(c: &mut Criterion<ThreadCpu>) {
    use pacerelle_core::e2ee::chain::ChainKey;
    let rng = &mut StdRng::seed_from_u64(91);
    let mut group = c.benchmark_group("primitive");
    let chain = ChainKey::new([3; 32], 0);
    group.bench_function("double_ratchet_key", |b| b.iter(|| black_box(&chain).step()));
    group.bench_function("double_ratchet_max_jump_keys", |b| {
        b.iter(|| {
            let mut chain = black_box(&chain).clone();
            for _ in 0..=MAX_FORWARD_JUMP {
                let (seed, next) = chain.step();
                black_box(seed);
                chain = next;
            }
            chain
        })
    });
    let (ours, theirs) = (KeyPair::generate(rng), KeyPair::generate(rng).public());
    group.bench_function("x25519_agreement", |b| b.iter(|| black_box(&ours).agree(black_box(&theirs))));
    group.bench_function("x25519_key_generation", |b| b.iter(|| KeyPair::generate(rng)));
    let framed = padded(&theirs, 1, &pq_field(1, 1), &whisper, rng);
    let Ok(Framed::Whisper(message)) = Framed::decode(&framed) else { panic!("a whisper message") };
    group.bench_function("mac_check_max_frame", |b| {
        b.iter(|| black_box(&message).verify_mac(&[1; 32], &ours.public(), &theirs))
    });
    group.bench_function("decode_max_frame", |b| b.iter(|| Framed::decode(black_box(&framed))));
    // SPQR: the next key, and the key after `MAX_FORWARD_JUMP` lost messages (the most allowed).
    let params = |direction| pacerelle_spqr::Params {
        direction,
        version: pacerelle_spqr::Version::V1,
        min_version: pacerelle_spqr::Version::V1,
        auth_key: &[5; 32],
        chain_params: Default::default(),
    };
    let mut alice = pacerelle_spqr::State::new(params(pacerelle_spqr::Direction::A2B)).expect("a state");
    let mut bob = pacerelle_spqr::State::new(params(pacerelle_spqr::Direction::B2A)).expect("a state");
    for _ in 0..3 {
        bob.recv(&alice.send(rng).expect("send").message).expect("recv");
        alice.recv(&bob.send(rng).expect("send").message).expect("recv");
    }
    let next = alice.send(rng).expect("send").message;
    for _ in 0..MAX_FORWARD_JUMP - 1 {
        alice.send(rng).expect("send");
    }
    let far = alice.send(rng).expect("send").message;
    for (name, message) in [("spqr_recv_next", next), ("spqr_recv_max_jump", far)] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || bob.clone(),
                |mut state| (state.recv(&message).expect("recv"), state),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn hostile(c: &mut Criterion<ThreadCpu>) {
    let rng = &mut StdRng::seed_from_u64(90);
    let started = std::time::Instant::now();
    let mut loaded = load(rng);
    let record_len = loaded.record.to_bytes().len();
    println!(
        "loaded record: {} sessions ({} previous), {} receiving chains each with {} skipped keys, {} bytes; \
         built in {:.1} s; each frame is tried under {} names holding that record",
        1 + MAX_PREVIOUS_SESSIONS,
        MAX_PREVIOUS_SESSIONS,
        MAX_RECEIVER_CHAINS,
        MAX_SKIPPED_KEYS,
        record_len,
        started.elapsed().as_secs_f64(),
        NAMES.len(),
    );
    let frames = frames(&loaded, rng);
    let mut group = c.benchmark_group("hostile_frame");
    for (name, framed) in &frames {
        println!("{name}: {} bytes", framed.len());
        let error = loaded.agent.decrypt(&NAMES, framed, rng).expect_err("a hostile frame is refused");
        println!("  refused: {error}");
        for name in NAMES {
            assert!(loaded.agent.session(name) == Some(&loaded.record), "a refused frame changes nothing");
        }
        group.bench_function(*name, |b| {
            b.iter(|| black_box(loaded.agent.decrypt(&NAMES, black_box(framed), rng).expect_err("refused")))
        });
    }
    group.finish();

    // The same frames against one record, as `SessionRecord::decrypt` sees them (the agent
    // tries two names, so a frame costs up to twice this).
    let mut group = c.benchmark_group("hostile_frame_one_record");
    let mut record = loaded.record.clone();
    for (name, framed) in &frames {
        group.bench_function(*name, |b| {
            b.iter(|| black_box(record.decrypt(black_box(framed), &loaded.agent, PQ, rng).expect_err("refused")))
        });
    }
    group.finish();

    // For scale: the genuine message the furthest ahead that is accepted (a small record: the
    // others' sessions are never tried for it).
    let mut group = c.benchmark_group("genuine_frame");
    let agent = &loaded.agent;
    let (record, framed) = &loaded.genuine;
    group.bench_function("max_jump", |b| {
        b.iter_batched(
            || record.clone(),
            |mut record| {
                let opened = record.decrypt(framed, agent, PQ, rng).expect("the genuine message opens");
                assert_eq!(opened.plaintext.as_slice(), b"the genuine one");
                (record, opened)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .with_measurement(ThreadCpu)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = primitives, hostile
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
