//! A report's window, filters and time zone, from what an admin typed
//! (the CLI's flags or the HTTP query, both as a `StatsRequest`).
//!
//! Times are RFC 3339 (`2026-03-08T09:00:00Z`, `…+01:00`), a date
//! (`2026-03-08`: the start of that day in the time zone for `since`, its
//! end for `until`), or a local date and time (`2026-03-08T09:00`, in the
//! time zone). The window is `[since, until)`; by default the 7 days up to
//! now. The time zone is an IANA name, `UTC` by default.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use switchboard_protocol::ids::TeamId;
use switchboard_protocol::stats::StatsRequest;

/// The window when no `since` is given: this long before `until`.
pub const DEFAULT_DAYS: i64 = 7;

/// A report request that does not make sense.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("`{field}` is not an RFC 3339 time or a date: {value:?}")]
    BadTime { field: &'static str, value: String },
    #[error("unknown time zone {0:?} (an IANA name such as Europe/Paris)")]
    BadZone(String),
    #[error("`team` is not a valid team id: {0:?}")]
    BadTeam(String),
    #[error("`agent` is empty")]
    BadAgent,
    #[error("the window is empty: `since` must be before `until`")]
    EmptyWindow,
}

/// A checked report request.
#[derive(Debug, Clone)]
pub struct Query {
    /// Unix milliseconds, inclusive.
    pub since: i64,
    /// Unix milliseconds, exclusive.
    pub until: i64,
    pub team: Option<TeamId>,
    /// An agent's login.
    pub agent: Option<String>,
    pub tz: TimeZone,
    /// The time zone's name, as reported.
    pub tz_name: String,
}

impl Query {
    /// Checks a request; `now` (unix ms) is the default end.
    ///
    /// # Errors
    /// [`QueryError`] naming the field at fault.
    pub fn parse(request: &StatsRequest, now: i64) -> Result<Self, QueryError> {
        let tz_name = present(&request.tz).unwrap_or("UTC").to_owned();
        let tz = TimeZone::get(&tz_name).map_err(|_| QueryError::BadZone(tz_name.clone()))?;
        let until = match present(&request.until) {
            Some(text) => instant(text, &tz, End::Until).ok_or_else(|| bad_time("until", text))?,
            None => now,
        };
        let since = match present(&request.since) {
            Some(text) => instant(text, &tz, End::Since).ok_or_else(|| bad_time("since", text))?,
            None => until - DEFAULT_DAYS * 24 * 3600 * 1000,
        };
        if since >= until {
            return Err(QueryError::EmptyWindow);
        }
        let team = present(&request.team)
            .map(|t| TeamId::new(t).map_err(|_| QueryError::BadTeam(t.to_owned())))
            .transpose()?;
        let agent = match &request.agent {
            Some(login) if login.trim().is_empty() => return Err(QueryError::BadAgent),
            Some(login) => Some(login.trim().to_owned()),
            None => None,
        };
        Ok(Self {
            since,
            until,
            team,
            agent,
            tz_name: tz.iana_name().unwrap_or(&tz_name).to_owned(),
            tz,
        })
    }
}

fn present(field: &Option<String>) -> Option<&str> {
    field.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn bad_time(field: &'static str, value: &str) -> QueryError {
    QueryError::BadTime {
        field,
        value: value.to_owned(),
    }
}

/// Which end of the window a date stands for.
#[derive(Clone, Copy)]
enum End {
    Since,
    Until,
}

/// Unix milliseconds of an RFC 3339 time, a date or a local date-time.
fn instant(text: &str, tz: &TimeZone, end: End) -> Option<i64> {
    if let Ok(at) = text.parse::<Timestamp>() {
        return Some(at.as_millisecond());
    }
    // (A date parser would take the date of a date-time: try those first.)
    if text.contains(['T', 't', ' ']) {
        let local = text.parse::<DateTime>().ok()?;
        return Some(
            local
                .to_zoned_datetime(tz.clone())
                .ok()?
                .timestamp()
                .as_millisecond(),
        );
    }
    if let Ok(date) = text.parse::<Date>() {
        let day = match end {
            End::Since => date,
            // A date as the end means the whole of that day.
            End::Until => date.checked_add(1.day()).ok()?,
        };
        return Some(
            day.to_zoned_datetime(tz.clone())
                .ok()?
                .timestamp()
                .as_millisecond(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(since: Option<&str>, until: Option<&str>, tz: Option<&str>) -> StatsRequest {
        StatsRequest {
            since: since.map(Into::into),
            until: until.map(Into::into),
            tz: tz.map(Into::into),
            ..Default::default()
        }
    }

    fn ms(rfc3339: &str) -> i64 {
        rfc3339.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn dates_are_whole_local_days() {
        let q = Query::parse(
            &request(Some("2025-03-30"), Some("2025-03-30"), Some("Europe/Paris")),
            0,
        )
        .unwrap();
        // The day clocks go forward is 23 hours long.
        assert_eq!(q.since, ms("2025-03-29T23:00:00Z"));
        assert_eq!(q.until, ms("2025-03-30T22:00:00Z"));
        assert_eq!(q.tz_name, "Europe/Paris");
        let q = Query::parse(
            &request(Some("2025-03-30T09:00"), None, Some("Europe/Paris")),
            ms("2025-04-01T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(q.since, ms("2025-03-30T07:00:00Z"));
        assert_eq!(q.until, ms("2025-04-01T00:00:00Z"));
    }

    #[test]
    fn defaults_are_the_last_week_in_utc() {
        let now = ms("2026-01-08T12:00:00Z");
        let q = Query::parse(&StatsRequest::default(), now).unwrap();
        assert_eq!((q.since, q.until), (ms("2026-01-01T12:00:00Z"), now));
        assert_eq!(q.tz_name, "UTC");
        let q = Query::parse(&request(Some("2026-01-05T10:00:00+02:00"), None, None), now).unwrap();
        assert_eq!(q.since, ms("2026-01-05T08:00:00Z"));
    }

    #[test]
    fn nonsense_is_refused() {
        let now = ms("2026-01-08T12:00:00Z");
        for (req, what) in [
            (request(Some("yesterday"), None, None), "since"),
            (request(None, Some("2026-13-01"), None), "until"),
            (request(None, None, Some("Mars/Base")), "zone"),
            (request(Some("2026-01-09"), None, None), "window"),
            (
                StatsRequest {
                    team: Some("no spaces".into()),
                    ..Default::default()
                },
                "team",
            ),
        ] {
            assert!(Query::parse(&req, now).is_err(), "{what}");
        }
    }
}
