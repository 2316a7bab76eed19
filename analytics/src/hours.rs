//! Local hours of the day in a time zone (with its daylight-saving
//! changes: on the day clocks go forward one local hour has no instant, on
//! the day they go back one has two hours' worth).

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// The hour (0–23) on a clock in `tz` at unix milliseconds `ms`.
pub fn local_hour(ms: i64, tz: &TimeZone) -> u8 {
    match Timestamp::from_millisecond(ms) {
        Ok(at) => u8::try_from(at.to_zoned_datetime(tz.clone()).hour()).unwrap_or(0),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        rfc3339.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn hours_follow_daylight_saving_changes() {
        let paris = TimeZone::get("Europe/Paris").unwrap();
        // 30 March 2025: 02:00 CET becomes 03:00 CEST at 01:00 UTC.
        assert_eq!(local_hour(ms("2025-03-30T00:30:00Z"), &paris), 1);
        assert_eq!(local_hour(ms("2025-03-30T01:30:00Z"), &paris), 3);
        assert_eq!(local_hour(ms("2025-03-30T12:00:00Z"), &paris), 14);
        // 26 October 2025: 03:00 CEST becomes 02:00 CET at 01:00 UTC, so
        // local 02:xx happens twice.
        assert_eq!(local_hour(ms("2025-10-26T00:30:00Z"), &paris), 2);
        assert_eq!(local_hour(ms("2025-10-26T01:30:00Z"), &paris), 2);
        assert_eq!(local_hour(ms("2025-10-26T12:00:00Z"), &paris), 13);
        assert_eq!(local_hour(ms("2025-10-26T12:00:00Z"), &TimeZone::UTC), 12);
        let la = TimeZone::get("America/Los_Angeles").unwrap();
        assert_eq!(local_hour(ms("2025-03-09T10:30:00Z"), &la), 3);
        assert_eq!(local_hour(ms("2025-03-09T09:30:00Z"), &la), 1);
    }
}
