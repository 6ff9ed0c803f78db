//! The booking agent end to end, with an encrypted person through the relay: a form, a date
//! picker and a time picker, a confirm widget showing the booking, and the acknowledgement; what
//! does not fit is explained and asked again, and a dismissal or a "no" books nothing.

use pacerelle::test::{Person, TestAgent, TestRelay, WidgetKind};
use pacerelle::tokio::Client;
use pacerelle_examples::booking::{BookingAgent, add_days, today};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const AGENT: &str = "booking-agent";

/// The booking agent, end-to-end encrypted, serving `relay`.
fn booking_agent(relay: &TestRelay) -> TestAgent {
    let bookings = Arc::new(BookingAgent::new());
    let mut client = Client::in_memory(relay.encrypted_agent(AGENT)).expect("an in-memory agent");
    client.on_message(move |message, agent| {
        let bookings = bookings.clone();
        async move { bookings.handle(message, agent).await }
    });
    TestAgent::start(client)
}

/// Alice, who accepts only end-to-end encrypted messages from the agent.
fn alice(relay: &TestRelay) -> Person {
    relay.person("alice").encrypted_only().talks_to(AGENT)
}

/// The `spec` of the next update of widget `widget_id`.
fn updated_spec(person: &Person, widget_id: &str) -> serde_json::Map<String, Value> {
    let patch = person.expect_widget_update(widget_id);
    patch.get("spec").and_then(Value::as_object).cloned().expect("the update changes the widget's spec")
}

#[test]
fn a_booking_filled_in_and_confirmed_is_acknowledged() {
    let relay = TestRelay::start();
    let agent = booking_agent(&relay);
    let alice = alice(&relay);
    let day = add_days(&today(), 30).expect("a date");

    alice.say("book");
    let form = alice.expect_widget(WidgetKind::Form);
    let fields: Vec<_> = form.spec()["fields"].as_array().expect("fields").iter().map(|field| &field["name"]).collect();
    assert_eq!(fields, [&json!("name"), &json!("party_size")]);
    form.fill(json!({"name": "Ada Lovelace", "party_size": "2"}));

    let date = alice.expect_widget(WidgetKind::DateTime);
    assert_eq!(date.spec()["mode"], json!("date"));
    assert_eq!(date.spec()["min"], json!(today()), "no day before today is offered");
    date.pick_datetime(&day);

    let time = alice.expect_widget(WidgetKind::DateTime);
    assert_eq!(
        (&time.spec()["mode"], &time.spec()["min"], &time.spec()["max"]),
        (&json!("time"), &json!("12:00"), &json!("22:00"))
    );
    time.pick_datetime("20:15");

    let confirm = alice.expect_widget(WidgetKind::Confirm);
    let summary = format!("a table for 2 guests under Ada Lovelace on {day} at 20:15");
    assert_eq!(confirm.spec()["body"], json!(format!("A table for 2 guests under Ada Lovelace on {day} at 20:15.")));
    confirm.yes();

    let shown = updated_spec(&alice, confirm.id());
    assert_eq!(shown["title"], json!("Booked"));
    alice.expect_text(&format!("Booked: {summary}. Your reference is B-0001."));

    agent.stop_within(Duration::from_secs(5));
}

#[test]
fn answers_that_do_not_fit_are_explained_and_asked_again() {
    let relay = TestRelay::start();
    let agent = booking_agent(&relay);
    let alice = alice(&relay);

    alice.say("book");
    let first_form = alice.expect_widget(WidgetKind::Form);
    first_form.fill(json!({"name": "  ", "party_size": 3}));
    alice.expect_text("The booking needs a name.");
    let form = alice.expect_widget(WidgetKind::Form);
    // The first form is no longer open: an answer to it moves nothing.
    first_form.fill(json!({"name": "Grace", "party_size": 2}));
    form.fill(json!({"name": "Grace", "party_size": 13}));
    alice.expect_text("We seat parties of 1 to 12 guests.");
    let form = alice.expect_widget(WidgetKind::Form);
    form.fill(json!({"name": "Grace", "party_size": 1}));

    let yesterday = add_days(&today(), -1).expect("a date");
    let date = alice.expect_widget(WidgetKind::DateTime);
    date.pick_datetime(&yesterday);
    alice.expect_text(&format!("{yesterday} has passed; please pick {} or later.", today()));
    let date = alice.expect_widget(WidgetKind::DateTime);
    date.pick_datetime(&today());

    let time = alice.expect_widget(WidgetKind::DateTime);
    time.pick_datetime("23:30");
    alice.expect_text("Our tables are from 12:00 to 22:00.");
    let time = alice.expect_widget(WidgetKind::DateTime);
    time.pick_datetime("12:00");

    let confirm = alice.expect_widget(WidgetKind::Confirm);
    assert_eq!(confirm.spec()["body"], json!(format!("A table for 1 guest under Grace on {} at 12:00.", today())));
    confirm.no();
    assert_eq!(updated_spec(&alice, confirm.id())["title"], json!("Not booked"));
    alice.expect_text("Nothing booked. Say \"book\" to start again.");

    // Nor does it start a booking once none is open: the next thing said answers "cancel".
    first_form.fill(json!({"name": "Grace", "party_size": 2}));
    alice.say("cancel");
    alice.expect_text("Nothing to cancel.");

    agent.stop_within(Duration::from_secs(5));
}

#[test]
fn a_dismissed_widget_cancels_the_booking() {
    let relay = TestRelay::start();
    let agent = booking_agent(&relay);
    let alice = alice(&relay);

    alice.say("book");
    let form = alice.expect_widget(WidgetKind::Form);
    form.fill(json!({"name": "Alan", "party_size": 4}));
    let date = alice.expect_widget(WidgetKind::DateTime);
    date.dismiss();
    alice.expect_text("Booking cancelled.");
    alice.say("cancel");
    alice.expect_text("Nothing to cancel.");
    alice.say("hello");
    alice.expect_text("Say \"book\" to reserve a table.");

    agent.stop_within(Duration::from_secs(5));
}
