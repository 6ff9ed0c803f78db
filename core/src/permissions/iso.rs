//! Timestamps written as the official permission policy writes them: UTC, milliseconds, `Z`.

use crate::Timestamp;

/// The last millisecond the official policy can write (`9999-12-31T23:59:59.999Z`): Python's
/// `datetime` ends with year 9999, so no later time can cross its wire contract.
pub const MAX_TIMESTAMP: Timestamp = Timestamp::from_millis(253_402_300_799_999);

/// `at` as `YYYY-MM-DDTHH:MM:SS.mmmZ`, or `None` past [`MAX_TIMESTAMP`].
pub(crate) fn format(at: Timestamp) -> Option<String> {
    if at > MAX_TIMESTAMP {
        return None;
    }
    let millis = at.as_millis();
    let days = millis / 86_400_000;
    let of_day = millis % 86_400_000;
    let (year, month, day) = civil_date(days);
    let (hour, minute, second, milli) = (of_day / 3_600_000, of_day / 60_000 % 60, of_day / 1000 % 60, of_day % 1000);
    Some(format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z"))
}

/// The proleptic Gregorian date `days` after 1970-01-01.
///
/// Counts from 0000-03-01 so that the leap day ends each 400-year era's year, which turns the
/// calendar into whole eras, centuries, four-year cycles and years of 365 days.
fn civil_date(days: u64) -> (u64, u64, u64) {
    const DAYS_0000_03_01_TO_EPOCH: u64 = 719_468;
    const DAYS_PER_ERA: u64 = 146_097;
    let shifted = days + DAYS_0000_03_01_TO_EPOCH;
    let era = shifted / DAYS_PER_ERA;
    let day_of_era = shifted % DAYS_PER_ERA;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months from March: 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 31, 28/29 follow 153 days per five.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: u64) -> String {
        format(Timestamp::from_millis(millis)).expect("in range")
    }

    #[test]
    fn known_instants() {
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(951_868_799_999), "2000-02-29T23:59:59.999Z");
        assert_eq!(at(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
        assert_eq!(at(4_107_456_000_000), "2100-02-28T00:00:00.000Z");
        assert_eq!(at(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
        assert_eq!(at(MAX_TIMESTAMP.as_millis()), "9999-12-31T23:59:59.999Z");
        assert_eq!(format(Timestamp::from_millis(MAX_TIMESTAMP.as_millis() + 1)), None);
    }

    #[test]
    fn every_day_follows_the_previous_one() {
        // Walks day by day over four centuries (a whole Gregorian era), checking each date
        // against the calendar's own rules rather than against the formula.
        let (mut year, mut month, mut day) = (1970, 1, 1);
        for days in 0..146_097 {
            assert_eq!(civil_date(days), (year, month, day), "day {days}");
            let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
            let length = match month {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            day += 1;
            if day > length {
                (day, month) = (1, month + 1);
                if month > 12 {
                    (month, year) = (1, year + 1);
                }
            }
        }
    }
}
