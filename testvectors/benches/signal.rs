//! The native Signal implementation (`pacerelle_core::e2ee`) and the official runtime
//! (`libsignalwrap.so`, through `pacerelle-official-runtime`) measured side by side: every group
//! has a `native` and a `runtime` function, so criterion reports them together. Each side talks
//! to itself (native to native, runtime to runtime), both with the full triple ratchet (PQXDH,
//! Double Ratchet, SPQR version 1), so each implementation is measured on its own.
//!
//! `cargo bench -p pacerelle-conformance --bench signal`. Before the timings it prints the
//! persisted size of an established session on each side (not a timing).

use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use pacerelle_conformance::peers::runtime;
use pacerelle_core::e2ee::account::{Account, PqFactory};
use pacerelle_core::e2ee::pq::PqRatchet;
use pacerelle_core::e2ee::pqxdh::PeerBundle;
use pacerelle_core::store::{E2eeSnapshot, PrekeyKind};
use pacerelle_core::wire::person::FetchedBundle;
use pacerelle_official_runtime::{PrekeyBundle, RuntimeStore};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::hint::black_box;
use std::time::Duration;

/// The post-quantum ratchet native sessions get: SPQR version 1, as the SDK makes them.
const NATIVE_PQ: PqFactory = PqRatchet::spqr_required;

const AGENT: &str = "agent:bench";
const HUMAN: &str = "human:bench:c";
/// The plaintext of the first message in the session-setup groups.
const FIRST_MESSAGE: &[u8] = &[b'x'; 100];

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A native agent that has published once, as a store snapshot holding only what a first
/// message needs (identity, signed and Kyber prekeys, the one-time prekey handed out): loading
/// it per iteration stays cheap, and a fresh copy per iteration always has that prekey unused.
struct NativeResponder {
    snapshot: E2eeSnapshot,
    bundle: PeerBundle,
}

fn native_responder(rng: &mut StdRng) -> NativeResponder {
    let mut snapshot = E2eeSnapshot::default();
    let (mut agent, changes) = Account::load_or_create(&snapshot, NATIVE_PQ, rng).expect("a new account");
    snapshot.apply(&changes);
    let (changes, bundle, one_time) = agent.publish(rng).expect("a publication");
    snapshot.apply(&changes);
    let chosen = &one_time.one_time_prekeys[0];
    snapshot.prekeys.retain(|(kind, id), _| *kind != PrekeyKind::OneTime || *id == chosen.prekey_id);
    let fetched =
        FetchedBundle { bundle, prekey_id: Some(chosen.prekey_id), prekey_public: Some(chosen.public_key.clone()) };
    let bundle = PeerBundle::from_fetched(&fetched).expect("our own bundle reads");
    NativeResponder { snapshot, bundle }
}

fn native_account(snapshot: &E2eeSnapshot, rng: &mut StdRng) -> Account {
    Account::load_or_create(snapshot, NATIVE_PQ, rng).expect("an account").0
}

/// A native person that has sent the agent its first message (`FIRST_MESSAGE`).
fn native_first_message(responder: &NativeResponder, rng: &mut StdRng) -> (Account, Vec<u8>) {
    let mut person = native_account(&E2eeSnapshot::default(), rng);
    person.start_session(AGENT, &responder.bundle, rng).expect("a session from the bundle");
    let (framed, _) = person.encrypt(AGENT, FIRST_MESSAGE, rng).expect("a first message");
    (person, framed)
}

/// A runtime agent with one bundle, exported so each iteration can import a fresh copy.
struct RuntimeResponder {
    snapshot: Vec<u8>,
    bundle: PrekeyBundle,
}

fn runtime_responder() -> RuntimeResponder {
    let mut agent = runtime().new_store(AGENT).expect("a runtime store");
    let bundle = agent.generate_prekey_bundle(1, 2, 3).expect("a bundle");
    RuntimeResponder { snapshot: agent.export().expect("an export").to_vec(), bundle }
}

fn runtime_first_message(responder: &RuntimeResponder) -> (RuntimeStore, Vec<u8>) {
    let mut person = runtime().new_store(HUMAN).expect("a runtime store");
    person.process_prekey_bundle(AGENT, &responder.bundle).expect("a session from the bundle");
    let framed = person.encrypt(AGENT, FIRST_MESSAGE).expect("a first message");
    (person, framed)
}

/// A native agent and person after `messages` messages, alternating from the person's first.
fn native_conversation(messages: usize, rng: &mut StdRng) -> (Account, Account) {
    let responder = native_responder(rng);
    let mut agent = native_account(&responder.snapshot, rng);
    let (mut person, first) = native_first_message(&responder, rng);
    agent.decrypt(&[HUMAN], &first, rng).expect("the agent opens the first message");
    for index in 1..messages {
        let text = format!("message {index}");
        if index % 2 == 0 {
            let (framed, _) = person.encrypt(AGENT, text.as_bytes(), rng).expect("encrypt");
            assert_eq!(agent.decrypt(&[HUMAN], &framed, rng).expect("decrypt").0.as_slice(), text.as_bytes());
        } else {
            let (framed, _) = agent.encrypt(HUMAN, text.as_bytes(), rng).expect("encrypt");
            assert_eq!(person.decrypt(&[AGENT], &framed, rng).expect("decrypt").0.as_slice(), text.as_bytes());
        }
    }
    (agent, person)
}

/// The same conversation between two runtime stores.
fn runtime_conversation(messages: usize) -> (RuntimeStore, RuntimeStore) {
    let responder = runtime_responder();
    let mut agent = runtime().import_store(AGENT, &responder.snapshot).expect("an import");
    let (mut person, first) = runtime_first_message(&responder);
    agent.decrypt(HUMAN, &first).expect("the agent opens the first message");
    for index in 1..messages {
        let text = format!("message {index}");
        if index % 2 == 0 {
            let framed = person.encrypt(AGENT, text.as_bytes()).expect("encrypt");
            assert_eq!(&agent.decrypt(HUMAN, &framed).expect("decrypt")[..], text.as_bytes());
        } else {
            let framed = agent.encrypt(HUMAN, text.as_bytes()).expect("encrypt");
            assert_eq!(&person.decrypt(AGENT, &framed).expect("decrypt")[..], text.as_bytes());
        }
    }
    (agent, person)
}

/// Prints what an established session costs to persist (not a timing): after 10 messages
/// (5 each way), the native record with the peer, and the runtime's whole-store export.
fn print_persisted_sizes() {
    let (agent, person) = native_conversation(10, &mut rng(1));
    let size = |account: &Account, peer: &str| account.session(peer).expect("a session").to_bytes().len();
    println!("persisted session size after 10 messages (5 each way):");
    println!("  native  SessionRecord::to_bytes, person side (the initiator):   {:>6} bytes", size(&person, AGENT));
    println!("  native  SessionRecord::to_bytes, agent side (the responder):    {:>6} bytes", size(&agent, HUMAN));
    let (agent, person) = runtime_conversation(10);
    let export = |store: &RuntimeStore| store.export().expect("an export").len();
    let empty = export(&runtime().new_store("human:empty").expect("a runtime store"));
    println!(
        "  runtime export(), person store (identity + this one session):   {:>6} bytes (a fresh store: {empty} bytes)",
        export(&person)
    );
    println!("  runtime export(), agent store (identity, prekeys, the session): {:>6} bytes", export(&agent));
}

fn session_setup(c: &mut Criterion) {
    let mut group = c.benchmark_group("session_setup/initiator");
    let responder = native_responder(&mut rng(2));
    let (mut setup_rng, mut run_rng) = (rng(3), rng(4));
    // A fresh person per iteration (made outside the measurement), so every iteration starts the
    // same first session rather than piling old sessions into one record.
    group.bench_function("native", |b| {
        b.iter_batched(
            || native_account(&E2eeSnapshot::default(), &mut setup_rng),
            |mut person| {
                person.start_session(AGENT, &responder.bundle, &mut run_rng).expect("a session");
                let framed = person.encrypt(AGENT, FIRST_MESSAGE, &mut run_rng).expect("a first message");
                (person, black_box(framed))
            },
            BatchSize::SmallInput,
        )
    });
    let runtime_side = runtime_responder();
    group.bench_function("runtime", |b| {
        b.iter_batched(
            || runtime().new_store(HUMAN).expect("a runtime store"),
            |mut person| {
                person.process_prekey_bundle(AGENT, &runtime_side.bundle).expect("a session");
                let framed = person.encrypt(AGENT, FIRST_MESSAGE).expect("a first message");
                (person, black_box(framed))
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("session_setup/responder");
    // A fresh agent (loaded from its snapshot) and a fresh first message per iteration, both made
    // outside the measurement: the one-time prekey is unused in every copy.
    group.bench_function("native", |b| {
        b.iter_batched(
            || {
                let agent = native_account(&responder.snapshot, &mut setup_rng);
                (agent, native_first_message(&responder, &mut setup_rng).1)
            },
            |(mut agent, framed)| {
                let opened = agent.decrypt(&[HUMAN], &framed, &mut run_rng).expect("the first message opens");
                (agent, black_box(opened))
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("runtime", |b| {
        b.iter_batched(
            || {
                let agent = runtime().import_store(AGENT, &runtime_side.snapshot).expect("an import");
                (agent, runtime_first_message(&runtime_side).1)
            },
            |(mut agent, framed)| {
                let opened = agent.decrypt(HUMAN, &framed).expect("the first message opens");
                (agent, black_box(opened))
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn encrypt_decrypt(c: &mut Criterion) {
    for (name, length) in [("100B", 100), ("16KiB", 16 * 1024)] {
        let plaintext = vec![0x61u8; length];
        let mut group = c.benchmark_group(format!("encrypt_decrypt/{name}"));
        group.throughput(Throughput::Bytes(length as u64));
        // Established sessions (both sides send ordinary messages); every iteration is one
        // message from the person to the agent: encrypt, then decrypt.
        let run_rng = &mut rng(5);
        let (mut agent, mut person) = native_conversation(2, run_rng);
        group.bench_function("native", |b| {
            b.iter(|| {
                let (framed, _) = person.encrypt(AGENT, &plaintext, run_rng).expect("encrypt");
                let (opened, _, _) = agent.decrypt(&[HUMAN], &framed, run_rng).expect("decrypt");
                black_box(opened)
            })
        });
        let (mut agent, mut person) = runtime_conversation(2);
        group.bench_function("runtime", |b| {
            b.iter(|| {
                let framed = person.encrypt(AGENT, &plaintext).expect("encrypt");
                black_box(agent.decrypt(HUMAN, &framed).expect("decrypt"))
            })
        });
        // What an SDK on the runtime must also do to persist its state: the runtime's only way
        // out is a whole-store export, which the official SDK writes after every message.
        group.bench_function("runtime_persisted", |b| {
            b.iter(|| {
                let framed = person.encrypt(AGENT, &plaintext).expect("encrypt");
                black_box(person.export().expect("export"));
                black_box(agent.decrypt(HUMAN, &framed).expect("decrypt"));
                black_box(agent.export().expect("export"))
            })
        });
        group.finish();
    }
}

/// One round trip (person to agent, agent to person) in an established session.
fn native_round_trip(agent: &mut Account, person: &mut Account, plaintext: &[u8], rng: &mut StdRng) {
    let (framed, _) = person.encrypt(AGENT, plaintext, rng).expect("encrypt");
    black_box(agent.decrypt(&[HUMAN], &framed, rng).expect("decrypt"));
    let (framed, _) = agent.encrypt(HUMAN, plaintext, rng).expect("encrypt");
    black_box(person.decrypt(&[AGENT], &framed, rng).expect("decrypt"));
}

/// One round trip between runtime stores; with `persist`, each store is exported after each
/// operation, as an SDK on the runtime must to keep its state.
fn runtime_round_trip(agent: &mut RuntimeStore, person: &mut RuntimeStore, plaintext: &[u8], persist: bool) {
    let export = |store: &RuntimeStore| {
        if persist {
            black_box(store.export().expect("export"));
        }
    };
    let framed = person.encrypt(AGENT, plaintext).expect("encrypt");
    export(person);
    black_box(agent.decrypt(HUMAN, &framed).expect("decrypt"));
    export(agent);
    let framed = agent.encrypt(HUMAN, plaintext).expect("encrypt");
    export(agent);
    black_box(person.decrypt(AGENT, &framed).expect("decrypt"));
    export(person);
}

/// Both directions in turn, so SPQR's epochs keep turning over: the cost of the post-quantum
/// ratchet per epoch follows from the time of 100 messages and the epochs they span (printed).
fn lockstep(c: &mut Criterion) {
    let plaintext = vec![0x62u8; 100];
    let run_rng = &mut rng(6);
    let (mut agent, mut person) = native_conversation(2, run_rng);
    let epoch = |account: &Account| account.session(AGENT).expect("a session").current().expect("current").pq().epoch();
    let before = epoch(&person);
    for _ in 0..500 {
        native_round_trip(&mut agent, &mut person, &plaintext, run_rng);
    }
    let epochs = epoch(&person) - before;
    println!(
        "SPQR epochs in 1,000 lockstep messages (native): {epochs} (one every {:.1} messages)",
        1000.0 / epochs as f64
    );
    let mut group = c.benchmark_group("lockstep/100_messages");
    group.bench_function("native", |b| {
        b.iter(|| {
            for _ in 0..50 {
                native_round_trip(&mut agent, &mut person, &plaintext, run_rng);
            }
        })
    });
    let (mut agent, mut person) = runtime_conversation(2);
    group.bench_function("runtime", |b| {
        b.iter(|| {
            for _ in 0..50 {
                runtime_round_trip(&mut agent, &mut person, &plaintext, false);
            }
        })
    });
    group.bench_function("runtime_persisted", |b| {
        b.iter(|| {
            for _ in 0..50 {
                runtime_round_trip(&mut agent, &mut person, &plaintext, true);
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // Modest settings so the whole run takes a few minutes on two shared cores.
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = session_setup, encrypt_decrypt, lockstep
}

fn main() {
    print_persisted_sizes();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
