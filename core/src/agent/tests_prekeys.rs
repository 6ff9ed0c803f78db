//! The prekey lifecycle (issue 9, item 5): one-time prekeys are made only when needed, and none
//! that a relay may still hand out is forgotten, across restarts, with and without time
//! passing, under a relay that appends posted keys and under one that replaces them.
//!
//! A small relay in memory answers the agent's publications and hands out bundles; persons
//! (the core's person side) start sessions from them, and their first message must decrypt.

use super::*;
use crate::connection::Keepalive;
use crate::e2ee::bundle::ONE_TIME_PREKEYS;
use crate::human::{Person, PersonConfig, PersonEvent, PersonInput, PersonOutput};
use crate::store::{AgentStore as _, MemoryStore, PrekeyKind};
use crate::wire::http::{HttpMethod, OneTimePrekey, OneTimePrekeysBody, PrekeyBundleBody};
use crate::wire::person::FetchedBundle;
use rand::SeedableRng;
use serde_json::{Value, json};

/// A wall-clock-like start, far from the epoch.
const T0: u64 = 1_750_000_000_000;
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
const AGENT: &str = "agent-1";

fn at(after: Duration) -> Timestamp {
    Timestamp::from_millis(T0).saturating_add(after)
}

fn seeded(seed: u64) -> Box<Rng> {
    Box::new(rand::rngs::StdRng::seed_from_u64(seed))
}

/// What a relay does with the one-time prekeys it holds when new ones are posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keeps {
    /// Adds them after the others and hands out the oldest first (the development relay).
    Appended,
    /// Drops the others.
    Replaced,
}

/// A relay's prekey handling, in memory.
struct Relay {
    keeps: Keeps,
    bundle: Option<PrekeyBundleBody>,
    pool: VecDeque<OneTimePrekey>,
    /// Every one-time prekey ever posted, in order.
    posted: Vec<OneTimePrekey>,
    puts: usize,
    posts: usize,
}

impl Relay {
    fn new(keeps: Keeps) -> Self {
        Relay { keeps, bundle: None, pool: VecDeque::new(), posted: Vec::new(), puts: 0, posts: 0 }
    }

    fn take(&mut self, request: &HttpRequest) {
        match (request.method, request.path.as_str()) {
            (HttpMethod::Put, "/agent/prekey-bundle") => {
                self.bundle = Some(serde_json::from_slice(&request.body).expect("a bundle"));
                self.puts += 1;
            }
            (HttpMethod::Post, "/agent/one-time-prekeys") => {
                let body: OneTimePrekeysBody = serde_json::from_slice(&request.body).expect("one-time prekeys");
                assert!(!body.one_time_prekeys.is_empty(), "an empty batch was posted");
                if self.keeps == Keeps::Replaced {
                    self.pool.clear();
                }
                self.pool.extend(body.one_time_prekeys.iter().cloned());
                self.posted.extend(body.one_time_prekeys);
                self.posts += 1;
            }
            other => panic!("unexpected call {other:?}"),
        }
    }

    fn bundle(&self) -> PrekeyBundleBody {
        self.bundle.clone().expect("a bundle was put")
    }

    /// What a person's fetch gets: the bundle and the next one-time prekey, handed out once.
    fn fetch(&mut self) -> FetchedBundle {
        let one_time = self.pool.pop_front().expect("the relay ran out of one-time prekeys");
        with_one_time(self.bundle(), &one_time)
    }
}

fn with_one_time(bundle: PrekeyBundleBody, one_time: &OneTimePrekey) -> FetchedBundle {
    FetchedBundle { bundle, prekey_id: Some(one_time.prekey_id), prekey_public: Some(one_time.public_key.clone()) }
}

/// The relay, the agent's store across restarts, and the persons who came.
struct World {
    relay: Relay,
    store: MemoryStore,
    seed: u64,
    persons: usize,
}

impl World {
    fn new(keeps: Keeps) -> Self {
        World { relay: Relay::new(keeps), store: MemoryStore::new(), seed: 0, persons: 0 }
    }

    /// An agent started at `now` from the store, its publication taken by the relay, connected;
    /// returns it and the calls it made before connecting.
    fn start(&mut self, now: Timestamp) -> (Agent, Vec<HttpRequest>) {
        self.seed += 1;
        let snapshot = self.store.load().expect("a memory store loads");
        let config = AgentConfig { e2ee: true, ..AgentConfig::new(AGENT) };
        let mut agent = Agent::new(config, seeded(self.seed), snapshot).expect("the agent starts");
        agent.start(now);
        let (rest, calls) = self.pump(&mut agent, now);
        assert!(rest.contains(&Output::Connect), "the socket opens once published: {rest:?}");
        agent.handle_input(now, Input::Connected).expect("connected");
        self.pump(&mut agent, now);
        (agent, calls)
    }

    /// Carries out the agent's outputs: changes go to the store, calls to the relay (which takes
    /// them all). Returns the other outputs and the calls.
    fn pump(&mut self, agent: &mut Agent, now: Timestamp) -> (Vec<Output>, Vec<HttpRequest>) {
        let (mut rest, mut calls) = (Vec::new(), Vec::new());
        while let Some(output) = agent.poll_output() {
            match output {
                Output::Persist(changes) => self.store.apply(&changes).expect("a memory store applies"),
                Output::Http(request) => {
                    self.relay.take(&request);
                    let answer = Ok(HttpResponse { status: 200, body: b"{}".to_vec() });
                    agent.handle_input(now, Input::Http(request.id, answer)).expect("an answer");
                    calls.push(request);
                }
                other => rest.push(other),
            }
        }
        (rest, calls)
    }

    /// Like [`Self::pump`], but the relay does not answer: returns the calls unanswered.
    fn pump_without_answers(&mut self, agent: &mut Agent) -> (Vec<Output>, Vec<HttpRequest>) {
        let (mut rest, mut calls) = (Vec::new(), Vec::new());
        while let Some(output) = agent.poll_output() {
            match output {
                Output::Persist(changes) => self.store.apply(&changes).expect("a memory store applies"),
                Output::Http(request) => calls.push(request),
                other => rest.push(other),
            }
        }
        (rest, calls)
    }

    /// The unused one-time prekeys the agent has stored.
    fn held(&self) -> Vec<u32> {
        let prekeys = &self.store.snapshot().e2ee.prekeys;
        prekeys.keys().filter(|(kind, _)| *kind == PrekeyKind::OneTime).map(|(_, id)| *id).collect()
    }

    /// A new person starts a session from `fetched` and writes; the agent must decrypt the
    /// message and its reply must decrypt for the person. Returns the one-time prekey used.
    fn converse(&mut self, agent: &mut Agent, fetched: FetchedBundle, now: Timestamp) -> u32 {
        self.persons += 1;
        let person_id = format!("person-{}", self.persons);
        let conversation = format!("c-{}", self.persons);
        let config = PersonConfig { e2ee: true, ..PersonConfig::new(person_id.clone()) };
        let mut person = Person::new(config, seeded(1000 + self.persons as u64));
        person.start();
        person.handle_input(now, PersonInput::Connected).expect("connected");
        person_outputs(&mut person);
        let text = format!("hello from {person_id}");
        person.send_text(&conversation, AGENT, &text).expect("the person writes");
        let (_, calls) = person_outputs(&mut person);
        let [fetch] = calls.as_slice() else { panic!("one bundle fetch: {calls:?}") };
        let body = serde_json::to_vec(&fetched).expect("a bundle serializes");
        person
            .handle_input(now, PersonInput::Http(fetch.id, Ok(HttpResponse { status: 200, body })))
            .expect("the session starts");
        let (sent, _) = person_outputs(&mut person);
        let [sent] = sent.as_slice() else { panic!("one message: {sent:?}") };

        let mut frame: Value = serde_json::from_str(sent).expect("a frame");
        frame["from"] = json!(person_id);
        let prekey_id = fetched.prekey_id.expect("a one-time prekey");
        if let Err(error) = agent.handle_input(now, Input::Frame(frame.to_string())) {
            panic!("{person_id}'s first message, on one-time prekey {prekey_id}, does not decrypt: {error}");
        }
        let (outputs, _) = self.pump(agent, now);
        let message = outputs
            .iter()
            .find_map(|output| match output {
                Output::Event(Event::Message(message)) => Some(message.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no message from {person_id}: {outputs:?}"));
        assert_eq!((message.text.as_str(), message.encrypted), (text.as_str(), true));
        agent.accept(&message.id, now).expect("accepted");
        self.pump(agent, now);

        agent.reply(&message, "welcome").expect("the agent replies");
        let (outputs, _) = self.pump(agent, now);
        let reply = outputs
            .iter()
            .find_map(|output| match output {
                Output::Frame(text) if text.contains("\"MSG\"") => Some(text.clone()),
                _ => None,
            })
            .expect("a reply frame");
        let mut reply: Value = serde_json::from_str(&reply).expect("a frame");
        reply["from"] = json!(AGENT);
        person.handle_input(now, PersonInput::Frame(reply.to_string())).expect("the reply decrypts");
        let read = std::iter::from_fn(|| person.poll_output()).find_map(|output| match output {
            PersonOutput::Event(PersonEvent::Message(message)) => Some(message.text),
            _ => None,
        });
        assert_eq!(read.as_deref(), Some("welcome"));
        prekey_id
    }
}

fn person_outputs(person: &mut Person) -> (Vec<String>, Vec<HttpRequest>) {
    let (mut frames, mut calls) = (Vec::new(), Vec::new());
    while let Some(output) = person.poll_output() {
        match output {
            PersonOutput::Frame(text) => frames.push(text),
            PersonOutput::Http(request) => calls.push(request),
            _ => {}
        }
    }
    (frames, calls)
}

fn paths(calls: &[HttpRequest]) -> Vec<&str> {
    calls.iter().map(|call| call.path.as_str()).collect()
}

/// Starts an agent, then restarts it 15 times, `between` apart; returns the last one.
fn fifteen_restarts(world: &mut World, between: Duration) -> (Agent, Timestamp) {
    let (mut agent, calls) = world.start(at(Duration::ZERO));
    assert_eq!(paths(&calls), ["/agent/prekey-bundle", "/agent/one-time-prekeys"], "the first start makes a batch");
    let mut now = at(Duration::ZERO);
    for _ in 0..15 {
        agent.close();
        now = now.saturating_add(between);
        (agent, _) = world.start(now);
    }
    (agent, now)
}

#[test]
fn after_fifteen_quick_restarts_sessions_start_from_the_first_prekeys() {
    let mut world = World::new(Keeps::Appended);
    let (mut agent, now) = fifteen_restarts(&mut world, HOUR);
    // Every restart put the bundle again and made no one-time prekeys.
    assert_eq!((world.relay.puts, world.relay.posts), (16, 1));
    assert_eq!(world.held().len(), ONE_TIME_PREKEYS);
    assert_eq!(world.relay.pool.len(), ONE_TIME_PREKEYS);
    // The oldest keys the relay holds, handed out first, are the first ones ever published.
    let first: Vec<u32> = world.relay.posted.iter().map(|key| key.prekey_id).collect();
    for expected in first.iter().take(5) {
        let fetched = world.relay.fetch();
        assert_eq!(world.converse(&mut agent, fetched, now), *expected);
    }
}

#[test]
fn restarts_only_put_the_bundle_and_keep_its_signed_prekey() {
    let mut world = World::new(Keeps::Appended);
    let (agent, _) = world.start(at(Duration::ZERO));
    let first = world.relay.bundle();
    let stored = world.store.snapshot().e2ee.prekeys.len();
    drop(agent);
    let (_agent, calls) = world.start(at(HOUR));
    assert_eq!(paths(&calls), ["/agent/prekey-bundle"]);
    let again = world.relay.bundle();
    assert_eq!(
        (&again.identity_key, again.signed_prekey_id, &again.signed_prekey_public, &again.kyber_prekey_public),
        (&first.identity_key, first.signed_prekey_id, &first.signed_prekey_public, &first.kyber_prekey_public),
        "the same signed and Kyber prekeys"
    );
    assert_eq!(world.store.snapshot().e2ee.prekeys.len(), stored, "nothing new stored");
    // Signed anew, and validly.
    let identity = STANDARD.decode(&again.identity_key).unwrap();
    let identity = crate::e2ee::keys::PublicKey::deserialize(&identity).unwrap();
    let signed = STANDARD.decode(&again.signed_prekey_public).unwrap();
    let signature = STANDARD.decode(&again.signed_prekey_signature).unwrap();
    assert!(crate::e2ee::xeddsa::verify(identity.u_bytes(), &signed, &signature));
    let kyber = STANDARD.decode(&again.kyber_prekey_public).unwrap();
    let signature = STANDARD.decode(&again.kyber_prekey_signature).unwrap();
    assert!(crate::e2ee::xeddsa::verify(identity.u_bytes(), &kyber, &signature));
}

#[test]
fn after_fifteen_restarts_a_week_apart_sessions_start_from_the_oldest_prekeys() {
    let mut world = World::new(Keeps::Appended);
    let (mut agent, now) = fifteen_restarts(&mut world, 8 * DAY);
    // Each restart found the last batch too old and made another; none was forgotten.
    assert_eq!(world.relay.posts, 16);
    assert_eq!(world.held().len(), 16 * ONE_TIME_PREKEYS);
    assert_eq!(world.relay.pool.len(), 16 * ONE_TIME_PREKEYS);
    let oldest: Vec<u32> = world.relay.posted.iter().take(5).map(|key| key.prekey_id).collect();
    for expected in oldest {
        let fetched = world.relay.fetch();
        assert_eq!(world.converse(&mut agent, fetched, now), expected);
    }
}

#[test]
fn under_a_replacing_relay_sessions_start_across_restarts_and_replenishments() {
    for between in [HOUR, 8 * DAY] {
        let mut world = World::new(Keeps::Replaced);
        let (mut agent, _) = world.start(at(Duration::ZERO));
        let mut now = at(Duration::ZERO);
        // Someone fetches a bundle before the last restart and writes only after it (quick
        // restarts keep the first batch, a week apart each one replaced the last).
        let mut early = None;
        for restart in 1..=15 {
            if restart == 15 {
                early = Some(world.relay.fetch());
            }
            agent.close();
            now = now.saturating_add(between);
            (agent, _) = world.start(now);
        }
        let early = early.expect("fetched before the last restart");
        let early_id = early.prekey_id;
        assert!(world.relay.pool.iter().all(|key| Some(key.prekey_id) != early_id));
        world.converse(&mut agent, early, now);
        // Sessions through the next batch: the relay never runs dry, and every key it hands out
        // opens.
        for _ in 0..40 {
            let fetched = world.relay.fetch();
            world.converse(&mut agent, fetched, now);
            assert!(!world.relay.pool.is_empty(), "the relay ran dry");
        }
        // And across a restart in the middle of a batch: the uses before it still count.
        let posts = world.relay.posts;
        agent.close();
        now = now.saturating_add(HOUR);
        (agent, _) = world.start(now);
        for _ in 0..20 {
            let fetched = world.relay.fetch();
            world.converse(&mut agent, fetched, now);
            assert!(!world.relay.pool.is_empty(), "the relay ran dry after a restart");
        }
        assert_eq!(world.relay.posts, posts + 1, "one batch after 25 uses, counting those before the restart");
    }
}

#[test]
fn the_total_held_stays_bounded_across_many_restarts() {
    // Restarts within a refill period make nothing.
    let mut world = World::new(Keeps::Appended);
    let mut now = at(Duration::ZERO);
    for _ in 0..40 {
        let (agent, _) = world.start(now);
        drop(agent);
        now = now.saturating_add(HOUR);
    }
    assert_eq!((world.relay.posts, world.held().len()), (1, ONE_TIME_PREKEYS));

    // A restart a day for 30 days: a batch a week (days 0, 7, 14, 21, 28), nothing more.
    let mut world = World::new(Keeps::Appended);
    for day in 0..30 {
        let (agent, _) = world.start(at(DAY * day));
        drop(agent);
    }
    assert_eq!(world.relay.posts, 5);
    assert_eq!(world.held().len(), 5 * ONE_TIME_PREKEYS);
}

#[test]
fn under_an_appending_relay_sessions_do_not_grow_the_total() {
    // People keep coming (with a restart every 20 sessions): the newest batch is handed out
    // only after every older key, so a batch is made only when the relay is down to 25.
    let mut world = World::new(Keeps::Appended);
    let (mut agent, _) = world.start(at(Duration::ZERO));
    let mut now = at(Duration::ZERO);
    for session in 1..=80 {
        let fetched = world.relay.fetch();
        world.converse(&mut agent, fetched, now);
        let (held, pool) = (world.held().len(), world.relay.pool.len());
        assert!(held <= 2 * ONE_TIME_PREKEYS - REPLENISH_AFTER, "{held} held after {session} sessions");
        assert_eq!(pool, held, "the agent holds exactly what the relay can still hand out");
        assert!(pool >= REPLENISH_AFTER, "the relay is down to {pool} after {session} sessions");
        if session % 20 == 0 {
            agent.close();
            now = now.saturating_add(HOUR);
            (agent, _) = world.start(now);
        }
    }
    // 80 sessions: a batch after the 25th and the 75th (counting each batch from its first
    // use, which comes only once the batch before is gone).
    assert_eq!(world.relay.posts, 3);
}

#[test]
fn a_refill_is_made_when_due_while_running() {
    let mut world = World::new(Keeps::Appended);
    // Pings far apart, so that the only deadline asked for is the refill's.
    let keepalive = Keepalive { interval: REFILL_AFTER * 4, timeout: REFILL_AFTER };
    let config = AgentConfig { e2ee: true, keepalive, ..AgentConfig::new(AGENT) };
    let mut agent = Agent::new(config, seeded(1), AgentSnapshot::default()).unwrap();
    agent.start(at(Duration::ZERO));
    let confirmed = at(Duration::from_millis(5));
    world.pump(&mut agent, confirmed);
    assert_eq!(world.store.snapshot().e2ee.one_time_published_at, Some(confirmed));
    agent.handle_input(confirmed, Input::Connected).unwrap();
    // Connected, it asks to be woken when the batch will be a week old.
    let due = confirmed.saturating_add(REFILL_AFTER);
    assert_eq!(world.pump(&mut agent, confirmed).0, [Output::WakeAt(due)]);
    // Woken early (say, for something else), it makes nothing and asks again.
    let early = Timestamp::from_millis(due.as_millis() - 1);
    agent.handle_input(early, Input::Timeout).unwrap();
    let (rest, calls) = world.pump(&mut agent, early);
    assert_eq!((rest, calls.len()), (vec![Output::WakeAt(due)], 0));
    // On time: a new batch, then the next refill is scheduled from its confirmation.
    agent.handle_input(due, Input::Timeout).unwrap();
    let (rest, calls) = world.pump(&mut agent, due);
    assert_eq!(paths(&calls), ["/agent/prekey-bundle", "/agent/one-time-prekeys"]);
    // (While the calls were in flight it asked for its next ping, the only deadline then; the
    // runtime keeps the last one asked for.)
    assert_eq!(rest.last(), Some(&Output::WakeAt(due.saturating_add(REFILL_AFTER))));
    assert_eq!(world.store.snapshot().e2ee.one_time_published_at, Some(due));
    assert_eq!(world.held().len(), 2 * ONE_TIME_PREKEYS);
    // Still connected throughout, and the old batch still serves sessions.
    assert!(agent.is_connected());
    let fetched = world.relay.fetch();
    assert_eq!(world.converse(&mut agent, fetched, due), world.relay.posted[0].prekey_id);

    // At a start, the same rule: six days after the last batch nothing, eight days after a new one.
    drop(agent);
    let (agent, calls) = world.start(due.saturating_add(6 * DAY));
    assert_eq!(paths(&calls), ["/agent/prekey-bundle"]);
    drop(agent);
    let (_agent, calls) = world.start(due.saturating_add(8 * DAY));
    assert_eq!(paths(&calls), ["/agent/prekey-bundle", "/agent/one-time-prekeys"]);
}

#[test]
fn a_publication_retry_is_not_lost_to_a_reconnection() {
    // The runtime keeps one deadline, the last asked for: a reconnection's replaces a
    // publication's retry, which the agent must ask for again once connected.
    let mut world = World::new(Keeps::Appended);
    let (mut agent, _) = world.start(at(Duration::ZERO));
    let mut now = at(Duration::ZERO).saturating_add(REFILL_AFTER);
    agent.handle_input(now, Input::Timeout).unwrap();
    let unavailable = || Ok(HttpResponse { status: 503, body: Vec::new() });
    let mut put = world.pump_without_answers(&mut agent).1.pop().expect("the refill's PUT");
    let wake = |outputs: &[Output]| {
        outputs.iter().rev().find_map(|output| match output {
            Output::WakeAt(at) => Some(*at),
            _ => None,
        })
    };
    // A relay down for a while: the retries grow apart.
    for _ in 0..5 {
        agent.handle_input(now, Input::Http(put.id, unavailable())).unwrap();
        now = wake(&world.pump_without_answers(&mut agent).0).expect("a retry");
        agent.handle_input(now, Input::Timeout).unwrap();
        put = world.pump_without_answers(&mut agent).1.pop().expect("the PUT again");
    }
    agent.handle_input(now, Input::Http(put.id, unavailable())).unwrap();
    let retry = wake(&world.pump_without_answers(&mut agent).0).expect("a retry");
    agent.handle_input(now, Input::Disconnected).unwrap();
    let reconnect = wake(&world.pump_without_answers(&mut agent).0).expect("a reconnection");
    assert!(reconnect < retry, "the case under test: the reconnection comes first");
    agent.handle_input(reconnect, Input::Timeout).unwrap();
    let (rest, calls) = world.pump_without_answers(&mut agent);
    assert_eq!((rest, calls.len()), (vec![Output::Connect], 0));
    agent.handle_input(reconnect, Input::Connected).unwrap();
    assert_eq!(world.pump_without_answers(&mut agent).0, [Output::WakeAt(retry)]);
    agent.handle_input(retry, Input::Timeout).unwrap();
    let (_, calls) = world.pump_without_answers(&mut agent);
    assert_eq!(paths(&calls), ["/agent/prekey-bundle"]);
    assert_eq!(calls[0].body, put.body, "the same publication");
}

#[test]
fn a_batch_the_relay_never_confirmed_is_made_again_and_kept() {
    let mut world = World::new(Keeps::Appended);
    let config = AgentConfig { e2ee: true, ..AgentConfig::new(AGENT) };
    let mut agent = Agent::new(config, seeded(1), AgentSnapshot::default()).unwrap();
    let now = at(Duration::ZERO);
    agent.start(now);
    // The relay takes both calls, but the agent stops before it hears that the second one
    // succeeded.
    let mut posted = false;
    while let Some(output) = agent.poll_output() {
        match output {
            Output::Persist(changes) => world.store.apply(&changes).unwrap(),
            Output::Http(request) if request.path == "/agent/prekey-bundle" => {
                world.relay.take(&request);
                agent
                    .handle_input(now, Input::Http(request.id, Ok(HttpResponse { status: 200, body: vec![] })))
                    .unwrap();
            }
            Output::Http(request) => {
                world.relay.take(&request);
                posted = true;
            }
            _ => {}
        }
    }
    assert!(posted);
    assert_eq!(world.store.snapshot().e2ee.one_time_published_at, Some(super::publish::UNCONFIRMED));
    drop(agent);
    // Restarted a minute later, it cannot know the relay has them: it makes another batch,
    // and keeps the first.
    let now = at(Duration::from_secs(60));
    let (mut agent, calls) = world.start(now);
    assert_eq!(paths(&calls), ["/agent/prekey-bundle", "/agent/one-time-prekeys"]);
    assert_eq!(world.held().len(), 2 * ONE_TIME_PREKEYS);
    assert_eq!(world.store.snapshot().e2ee.one_time_published_at, Some(now));
    let fetched = world.relay.fetch();
    assert_eq!(world.converse(&mut agent, fetched, now), world.relay.posted[0].prekey_id);
}

mod account {
    //! The account's side: the newest batch told from the ids across restarts, and the last
    //! resort limit.
    use super::*;
    use crate::e2ee::account::{Account, OneTimeStock};
    use crate::store::E2eeSnapshot;

    fn account(snapshot: &E2eeSnapshot) -> Account {
        let factory = crate::e2ee::pq::PqPolicy::default().factory();
        Account::load_or_create(snapshot, factory, &mut rand::rngs::StdRng::seed_from_u64(5)).unwrap().0
    }

    #[test]
    fn the_newest_batch_is_known_after_a_restart() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        let mut snapshot = E2eeSnapshot::default();
        let mut fresh = account(&snapshot);
        assert_eq!(fresh.one_time_stock(), OneTimeStock { held: 0, newest_batch_left: 0 });
        let mut batches = Vec::new();
        for _ in 0..3 {
            let (changes, _, body) = fresh.publish(&mut rng).unwrap();
            snapshot.apply(&changes);
            batches.push(body.one_time_prekeys.iter().map(|key| key.prekey_id).collect::<Vec<_>>());
        }
        assert_eq!(fresh.one_time_stock(), OneTimeStock { held: 150, newest_batch_left: 50 });
        // People used the oldest batch entirely and 28 keys of the newest, in no order.
        let used = batches[0].iter().chain(batches[2].iter().rev().step_by(2)).chain(batches[2].iter().take(5));
        for id in used {
            snapshot.prekeys.remove(&(PrekeyKind::OneTime, *id));
        }
        let restarted = account(&snapshot);
        // The newest batch's highest ids went too: 22 of it are left (even places, but 0, 2, 4).
        assert_eq!(restarted.one_time_stock(), OneTimeStock { held: 72, newest_batch_left: 22 });
    }

    #[test]
    fn the_last_resort_limit_forgets_the_oldest_first() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut account = account(&E2eeSnapshot::default());
        account.set_max_one_time_prekeys(120);
        let mut made = Vec::new();
        let mut forgotten = Vec::new();
        for _ in 0..3 {
            let (changes, _, body) = account.publish(&mut rng).unwrap();
            made.extend(body.one_time_prekeys.iter().map(|key| key.prekey_id));
            forgotten.extend(
                changes.remove_prekeys.iter().filter(|(kind, _)| *kind == PrekeyKind::OneTime).map(|(_, id)| *id),
            );
        }
        assert_eq!(forgotten, made[..30]);
        assert_eq!(account.one_time_stock(), OneTimeStock { held: 120, newest_batch_left: 50 });
        assert!(made[30..].iter().all(|id| account_holds(&account, *id)));
        assert!(!account_holds(&account, made[29]));
    }

    fn account_holds(account: &Account, id: u32) -> bool {
        crate::e2ee::session::PrekeySource::one_time_prekey(account, id).is_some()
    }
}
