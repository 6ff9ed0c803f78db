//! The booking agent end to end, with an encrypted person through the relay: a form, a date
//! picker and a time picker, a confirm widget showing the booking, and the acknowledgement; what
//! does not fit is explained and asked again, and a dismissal or a "no" books nothing.

mod people;

use pacerelle::core::widget::WidgetKind;
use pacerelle::tokio::Client;
use pacerelle_examples::booking::{BookingAgent, add_days, today};
use people::Scene;
use serde_json::json;
use std::sync::Arc;

const AGENT: &str = "booking-agent";

async fn scene() -> Scene {
    let bookings = Arc::new(BookingAgent::new());
    Scene::start(AGENT, &["alice"], |client: &mut Client| {
        client.on_message(move |message, agent| {
            let bookings = bookings.clone();
            async move { bookings.handle(message, agent).await }
        });
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_filled_in_and_confirmed_is_acknowledged() {
    let scene = scene().await;
    let alice = scene.chat("alice").await;
    let day = add_days(&today(), 30).expect("a date");

    alice.says("book");
    let form = alice.is_shown(WidgetKind::Form).await;
    let fields: Vec<_> = form.spec["fields"].as_array().expect("fields").iter().map(|field| &field["name"]).collect();
    assert_eq!(fields, [&json!("name"), &json!("party_size")]);
    alice.answers(&form, json!({"name": "Ada Lovelace", "party_size": "2"}));

    let date = alice.is_shown(WidgetKind::DateTime).await;
    assert_eq!(date.spec["mode"], json!("date"));
    assert_eq!(date.spec["min"], json!(today()), "no day before today is offered");
    alice.answers(&date, json!(day));

    let time = alice.is_shown(WidgetKind::DateTime).await;
    assert_eq!(
        (&time.spec["mode"], &time.spec["min"], &time.spec["max"]),
        (&json!("time"), &json!("12:00"), &json!("22:00"))
    );
    alice.answers(&time, json!("20:15"));

    let confirm = alice.is_shown(WidgetKind::Confirm).await;
    let summary = format!("a table for 2 guests under Ada Lovelace on {day} at 20:15");
    assert_eq!(confirm.spec["body"], json!(format!("A table for 2 guests under Ada Lovelace on {day} at 20:15.")));
    alice.answers(&confirm, json!(true));

    let shown = alice.sees_update_of(&confirm.id).await;
    assert_eq!(shown["title"], json!("Booked"));
    assert_eq!(alice.hears_text().await, format!("Booked: {summary}. Your reference is B-0001."));

    scene.finish(vec![alice]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_do_not_fit_are_explained_and_asked_again() {
    let scene = scene().await;
    let alice = scene.chat("alice").await;

    alice.says("book");
    let first_form = alice.is_shown(WidgetKind::Form).await;
    alice.answers(&first_form, json!({"name": "  ", "party_size": 3}));
    assert_eq!(alice.hears_text().await, "The booking needs a name.");
    let form = alice.is_shown(WidgetKind::Form).await;
    // The first form is no longer open: an answer to it moves nothing.
    alice.answers(&first_form, json!({"name": "Grace", "party_size": 2}));
    alice.answers(&form, json!({"name": "Grace", "party_size": 13}));
    assert_eq!(alice.hears_text().await, "We seat parties of 1 to 12 guests.");
    let form = alice.is_shown(WidgetKind::Form).await;
    alice.answers(&form, json!({"name": "Grace", "party_size": 1}));

    let yesterday = add_days(&today(), -1).expect("a date");
    let date = alice.is_shown(WidgetKind::DateTime).await;
    alice.answers(&date, json!(yesterday));
    assert_eq!(alice.hears_text().await, format!("{yesterday} has passed; please pick {} or later.", today()));
    let date = alice.is_shown(WidgetKind::DateTime).await;
    alice.answers(&date, json!(today()));

    let time = alice.is_shown(WidgetKind::DateTime).await;
    alice.answers(&time, json!("23:30"));
    assert_eq!(alice.hears_text().await, "Our tables are from 12:00 to 22:00.");
    let time = alice.is_shown(WidgetKind::DateTime).await;
    alice.answers(&time, json!("12:00"));

    let confirm = alice.is_shown(WidgetKind::Confirm).await;
    assert_eq!(confirm.spec["body"], json!(format!("A table for 1 guest under Grace on {} at 12:00.", today())));
    alice.answers(&confirm, json!(false));
    assert_eq!(alice.sees_update_of(&confirm.id).await["title"], json!("Not booked"));
    assert_eq!(alice.hears_text().await, "Nothing booked. Say \"book\" to start again.");

    // Nor does it start a booking once none is open: the next thing said answers "cancel".
    alice.answers(&first_form, json!({"name": "Grace", "party_size": 2}));
    alice.says("cancel");
    assert_eq!(alice.hears_text().await, "Nothing to cancel.");

    scene.finish(vec![alice]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dismissed_widget_cancels_the_booking() {
    let scene = scene().await;
    let alice = scene.chat("alice").await;

    alice.says("book");
    let form = alice.is_shown(WidgetKind::Form).await;
    alice.answers(&form, json!({"name": "Alan", "party_size": 4}));
    let date = alice.is_shown(WidgetKind::DateTime).await;
    alice.dismisses(&date);
    assert_eq!(alice.hears_text().await, "Booking cancelled.");
    alice.says("cancel");
    assert_eq!(alice.hears_text().await, "Nothing to cancel.");
    alice.says("hello");
    assert_eq!(alice.hears_text().await, "Say \"book\" to reserve a table.");

    scene.finish(vec![alice]).await;
}
