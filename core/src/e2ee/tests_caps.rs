//! The bounds an account keeps per person, whatever a hostile relay makes people (or
//! impostors) do: sessions per person, least recently used first out, never another person's.

use super::account::Account;
use super::pq::PqRatchet;
use super::pqxdh::PeerBundle;
use crate::store::E2eeSnapshot;
use crate::wire::person::FetchedBundle;
use rand::SeedableRng;

const PQ: super::pq::PqFactory = PqRatchet::spqr_required;

/// An agent account that published once, and what a person fetching its bundle gets (no
/// one-time prekey, so any number of sessions can start from it).
fn agent(rng: &mut rand::rngs::StdRng, cap: usize) -> (Account, PeerBundle) {
    let (agent, _) = Account::load_or_create(&E2eeSnapshot::default(), PQ, rng).unwrap();
    let mut agent = agent.with_session_cap(cap);
    let (_, bundle, _) = agent.publish(rng).unwrap();
    let fetched = FetchedBundle { bundle, prekey_id: None, prekey_public: None };
    (agent, PeerBundle::from_fetched(&fetched).unwrap())
}

/// `person` starts a session with the agent as `name` and says something; the agent reads it.
/// Returns the session names the agent dropped to make room.
fn first_message(
    agent: &mut Account,
    person: &mut Account,
    bundle: &PeerBundle,
    name: &str,
    rng: &mut rand::rngs::StdRng,
) -> Vec<String> {
    person.start_session(&format!("agent:{name}"), bundle, rng).unwrap();
    let (framed, _) = person.encrypt(&format!("agent:{name}"), b"hello", rng).unwrap();
    let (_, opened_as, changes) = agent.decrypt(&[name], &framed, rng).unwrap();
    assert_eq!(opened_as, name);
    changes.remove_sessions
}

#[test]
fn a_person_keeps_a_bounded_number_of_sessions_least_recently_used_out_first() {
    let rng = &mut rand::rngs::StdRng::seed_from_u64(90);
    let (mut agent, bundle) = agent(rng, 3);
    let (mut alice, _) = Account::load_or_create(&E2eeSnapshot::default(), PQ, rng).unwrap();
    let (mut bob, _) = Account::load_or_create(&E2eeSnapshot::default(), PQ, rng).unwrap();
    let name = |user: &str, conversation: usize| format!("human:{user}:c{conversation}:device:d");

    for conversation in 0..2 {
        assert!(first_message(&mut agent, &mut bob, &bundle, &name("bob", conversation), rng).is_empty());
    }
    for conversation in 0..3 {
        assert!(first_message(&mut agent, &mut alice, &bundle, &name("alice", conversation), rng).is_empty());
    }
    // Alice writes again in her first conversation: it is now her most recently used.
    let (framed, _) = alice.encrypt("agent:human:alice:c0:device:d", b"again", rng).unwrap();
    agent.decrypt(&[&name("alice", 0)], &framed, rng).unwrap();

    // A fourth conversation pushes out her least recently used one, and only that one.
    let dropped = first_message(&mut agent, &mut alice, &bundle, &name("alice", 3), rng);
    assert_eq!(dropped, [name("alice", 1)]);
    assert!(!agent.has_session(&name("alice", 1)));
    for kept in [name("alice", 0), name("alice", 2), name("alice", 3), name("bob", 0), name("bob", 1)] {
        assert!(agent.has_session(&kept), "{kept} was dropped");
    }

    // A person whose id holds a colon is capped too, and never pushes out anyone else's session.
    let (mut colon, _) = Account::load_or_create(&E2eeSnapshot::default(), PQ, rng).unwrap();
    let mut dropped = Vec::new();
    for conversation in 0..5 {
        dropped.extend(first_message(&mut agent, &mut colon, &bundle, &name("alice:x", conversation), rng));
    }
    assert_eq!(dropped, [name("alice:x", 0), name("alice:x", 1)]);
    for kept in [name("alice", 0), name("alice", 2), name("alice", 3)] {
        assert!(agent.has_session(&kept), "{kept} was dropped for another person");
    }
}
