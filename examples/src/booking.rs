//! The booking agent: takes a table reservation with a form, a date picker and a time picker,
//! shows the booking back for confirmation, and confirms it.
//!
//! `book` starts a booking (`cancel` drops it). Each step waits for the answer to its own
//! widget; an answer to anything else is ignored, a dismissed widget cancels the booking, and a
//! value that does not fit (no name, a party of 40, a date in the past, a time when the kitchen
//! is closed) is explained and asked again. Bookings live in memory, one per person and
//! conversation.

use pacerelle::tokio::AgentHandle;
use pacerelle::widget::{Confirm, DateTime, Form, FormField, Widget, WidgetPatch};
use pacerelle::{AgentMessage, HandlerResult, WidgetResponse, now};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// The largest party the restaurant seats.
pub const MAX_PARTY: u64 = 12;
/// The first table, as `HH:MM`.
pub const OPENS: &str = "12:00";
/// The last table, as `HH:MM`.
pub const LAST_TABLE: &str = "22:00";

/// Whose booking: the conversation and the person.
type Key = (String, String);

/// A booking in progress: what is known so far, and which widget the next answer must answer.
#[derive(Debug, Default)]
struct Booking {
    waiting_for: String,
    name: String,
    party: u64,
    date: String,
    time: String,
}

/// The booking agent's state: the bookings in progress, by conversation and person.
#[derive(Debug, Default)]
pub struct BookingAgent {
    bookings: Mutex<HashMap<Key, Booking>>,
    confirmed: Mutex<u32>,
}

impl BookingAgent {
    /// An agent with no booking in progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles one message: `book`, `cancel`, or an answer to one of the booking's widgets.
    pub async fn handle(&self, message: AgentMessage, agent: AgentHandle) -> HandlerResult {
        let key = (message.conversation_id.clone(), message.from.clone());
        if let Some(answer) = &message.widget_response {
            return self.on_answer(&message, answer, key, &agent).await;
        }
        match message.text.trim().to_ascii_lowercase().as_str() {
            "book" => {
                let form = details_form();
                let waiting_for = self.show(&message, &agent, form).await?;
                self.bookings()?.insert(key, Booking { waiting_for, ..Booking::default() });
            }
            "cancel" => {
                let said =
                    if self.bookings()?.remove(&key).is_some() { "Booking cancelled." } else { "Nothing to cancel." };
                agent.reply(&message, said).await?;
            }
            _ => {
                agent.reply(&message, "Say \"book\" to reserve a table.").await?;
            }
        }
        Ok(())
    }

    async fn on_answer(
        &self,
        message: &AgentMessage,
        answer: &WidgetResponse,
        key: Key,
        agent: &AgentHandle,
    ) -> HandlerResult {
        // Only the answer to the widget this booking waits for moves it on. The booking is taken
        // out while the answer is handled, so a second answer to the same widget finds nothing.
        let Some(mut booking) = self.take_if_waiting(&key, &answer.widget_ref)? else {
            return Ok(());
        };
        if answer.cancelled {
            agent.reply(message, "Booking cancelled.").await?;
            return Ok(());
        }
        let value = answer.value.clone().unwrap_or(Value::Null);
        let next: Widget = if booking.name.is_empty() {
            match read_details(&value) {
                Ok((name, party)) => {
                    (booking.name, booking.party) = (name, party);
                    date_picker()
                }
                Err(problem) => {
                    agent.reply(message, problem).await?;
                    details_form()
                }
            }
        } else if booking.date.is_empty() {
            match read_date(&value, &today()) {
                Ok(date) => {
                    booking.date = date;
                    time_picker()
                }
                Err(problem) => {
                    agent.reply(message, problem).await?;
                    date_picker()
                }
            }
        } else if booking.time.is_empty() {
            match read_time(&value) {
                Ok(time) => {
                    booking.time = time;
                    Confirm::new("Book this table?")
                        .body(format!("{}.", sentence(&booking.summary())))
                        .labels("Book it", "Cancel")
                        .into()
                }
                Err(problem) => {
                    agent.reply(message, problem).await?;
                    time_picker()
                }
            }
        } else {
            return self.on_confirmation(message, agent, &booking, value.as_bool() == Some(true)).await;
        };
        booking.waiting_for = self.show(message, agent, next).await?;
        self.bookings()?.insert(key, booking);
        Ok(())
    }

    /// The last step: book it, or not.
    async fn on_confirmation(
        &self,
        message: &AgentMessage,
        agent: &AgentHandle,
        booking: &Booking,
        confirmed: bool,
    ) -> HandlerResult {
        let (title, said) = if confirmed {
            let reference = {
                let mut count = self.confirmed.lock().map_err(|_| "the booking counter's lock is poisoned")?;
                *count += 1;
                format!("B-{:04}", *count)
            };
            ("Booked".to_owned(), format!("Booked: {}. Your reference is {reference}.", booking.summary()))
        } else {
            ("Not booked".to_owned(), "Nothing booked. Say \"book\" to start again.".to_owned())
        };
        let mut spec = Map::new();
        spec.insert("title".into(), json!(title));
        spec.insert("body".into(), json!(booking.summary()));
        let patch = WidgetPatch::new(&booking.waiting_for).spec(spec);
        agent.send_widget_update(&message.conversation_id, &message.from, patch).await?;
        agent.reply(message, said).await?;
        Ok(())
    }

    /// Shows `widget` to the message's sender; returns its id.
    async fn show(
        &self,
        message: &AgentMessage,
        agent: &AgentHandle,
        widget: impl Into<Widget>,
    ) -> Result<String, pacerelle::ClientError> {
        agent.send_widget(&message.conversation_id, &message.from, widget).await
    }

    /// The booking at `key`, taken out, if it waits for an answer to `widget_ref`.
    fn take_if_waiting(&self, key: &Key, widget_ref: &str) -> Result<Option<Booking>, &'static str> {
        let mut bookings = self.bookings()?;
        if bookings.get(key).is_some_and(|booking| booking.waiting_for == widget_ref) {
            return Ok(bookings.remove(key));
        }
        Ok(None)
    }

    fn bookings(&self) -> Result<MutexGuard<'_, HashMap<Key, Booking>>, &'static str> {
        self.bookings.lock().map_err(|_| "the bookings' lock is poisoned")
    }
}

impl Booking {
    /// The booking in one sentence.
    fn summary(&self) -> String {
        let guests = if self.party == 1 { "1 guest".to_owned() } else { format!("{} guests", self.party) };
        format!("a table for {guests} under {} on {} at {}", self.name, self.date, self.time)
    }
}

/// `text` with its first letter in upper case, to start a sentence.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn details_form() -> Widget {
    Form::new(
        "Reserve a table",
        [
            FormField::new("name", "Name for the booking", "text").required(true),
            FormField::new("party_size", "Number of guests", "number")
                .required(true)
                .with("min", 1)
                .with("max", MAX_PARTY),
        ],
    )
    .option("submitLabel", "Next")
    .into()
}

fn date_picker() -> Widget {
    DateTime::new("Which day?", "date").min(today()).into()
}

fn time_picker() -> Widget {
    DateTime::new("What time?", "time")
        .body(format!("Tables from {OPENS} to {LAST_TABLE}."))
        .min(OPENS)
        .max(LAST_TABLE)
        .into()
}

/// The name and party size from the form's answer (`{"name": .., "party_size": ..}`; apps send
/// numbers as numbers or as text).
pub fn read_details(value: &Value) -> Result<(String, u64), String> {
    let name = value.get("name").and_then(Value::as_str).map(str::trim).unwrap_or_default();
    if name.is_empty() {
        return Err("The booking needs a name.".into());
    }
    if name.chars().count() > 100 {
        return Err("That name is too long for our book: 100 characters at most.".into());
    }
    let party = match value.get("party_size") {
        Some(Value::Number(number)) => number.as_u64(),
        Some(Value::String(text)) => text.trim().parse().ok(),
        _ => None,
    };
    match party {
        Some(party @ 1..=MAX_PARTY) => Ok((name.to_owned(), party)),
        _ => Err(format!("We seat parties of 1 to {MAX_PARTY} guests.")),
    }
}

/// A date (`YYYY-MM-DD`) from the picker's answer, not before `today`.
pub fn read_date(value: &Value, today: &str) -> Result<String, String> {
    let date = value.as_str().map(str::trim).unwrap_or_default();
    let valid = date.len() == 10
        && date.as_bytes()[4] == b'-'
        && date.as_bytes()[7] == b'-'
        && date[..4].parse::<i64>().is_ok()
        && date[5..7].parse::<u32>().is_ok_and(|month| (1..=12).contains(&month))
        && date[8..10].parse::<u32>().is_ok_and(|day| {
            (1..=days_in_month(date[..4].parse().unwrap_or(1), date[5..7].parse().unwrap_or(1))).contains(&day)
        });
    if !valid {
        return Err("Please pick a day from the calendar.".into());
    }
    // Dates in this form compare as text.
    if date < today {
        return Err(format!("{date} has passed; please pick {today} or later."));
    }
    Ok(date.to_owned())
}

/// A time (`HH:MM`) from the picker's answer, within opening hours.
pub fn read_time(value: &Value) -> Result<String, String> {
    let time = value.as_str().map(str::trim).unwrap_or_default();
    let valid = time.len() == 5
        && time.as_bytes()[2] == b':'
        && time[..2].parse::<u32>().is_ok_and(|hour| hour < 24)
        && time[3..].parse::<u32>().is_ok_and(|minute| minute < 60);
    if !valid {
        return Err("Please pick a time.".into());
    }
    if !(OPENS..=LAST_TABLE).contains(&time) {
        return Err(format!("Our tables are from {OPENS} to {LAST_TABLE}."));
    }
    Ok(time.to_owned())
}

/// Today's date in UTC, `YYYY-MM-DD`.
pub fn today() -> String {
    format_days(i64::try_from(now().as_millis() / 86_400_000).unwrap_or(0))
}

/// The date `days` after `date` (both `YYYY-MM-DD`); `None` if `date` is not one.
pub fn add_days(date: &str, days: i64) -> Option<String> {
    let valid = read_date(&Value::from(date), "0000-00-00").ok()?;
    let (year, month, day) = (valid[..4].parse().ok()?, valid[5..7].parse().ok()?, valid[8..].parse().ok()?);
    Some(format_days(days_from_civil(year, month, day) + days))
}

fn format_days(days: i64) -> String {
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Days from 1970-01-01 to a calendar date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = i64::from(if month > 2 { month - 3 } else { month + 9 });
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The calendar date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 } as u32;
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_dates_from_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_819), (2027, 1, 1));
        for days in [0, 11_016, 20_819, 20_877, -1] {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), days);
        }
        assert_eq!(add_days("2026-12-28", 7).as_deref(), Some("2027-01-04"));
        assert_eq!(add_days("2028-02-28", 1).as_deref(), Some("2028-02-29"));
        assert_eq!(add_days("not a date", 1), None);
    }

    #[test]
    fn answers_that_do_not_fit_are_explained() {
        assert_eq!(read_details(&json!({"name": " Ada ", "party_size": "4"})), Ok(("Ada".into(), 4)));
        assert!(read_details(&json!({"name": "", "party_size": 2})).is_err());
        assert!(read_details(&json!({"name": "Ada", "party_size": 40})).is_err());
        assert_eq!(read_date(&json!("2027-02-28"), "2027-01-01"), Ok("2027-02-28".into()));
        assert!(read_date(&json!("2027-02-29"), "2027-01-01").is_err());
        assert!(read_date(&json!("2026-12-31"), "2027-01-01").is_err());
        assert_eq!(read_time(&json!("19:30")), Ok("19:30".into()));
        assert!(read_time(&json!("23:00")).is_err());
        assert!(read_time(&json!("7pm")).is_err());
    }
}
