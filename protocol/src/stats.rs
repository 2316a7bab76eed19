//! The statistics service: what an edge (or any admin tool) asks the
//! archivers on `archive.stats`, and the report they answer with. The
//! report is computed from the archive, never from the live path; its JSON
//! form (`serde_json` of [`StatsReport`]) is what `GET /api/v1/stats` and
//! `switchboard report --format json` print. Every figure is defined in
//! docs/analytics.md.

use serde::{Deserialize, Serialize};

/// A report request, on `archive.stats`: the query as the admin gave it
/// (strings, checked by the archiver, which answers `bad_request` when one
/// is wrong). Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsRequest {
    /// Start of the window (RFC 3339 or a date); default: `until` − 7 days.
    #[serde(default)]
    pub since: Option<String>,
    /// End of the window, exclusive (RFC 3339, or a date: its end); default: now.
    #[serde(default)]
    pub until: Option<String>,
    /// Only conversations of this team.
    #[serde(default)]
    pub team: Option<String>,
    /// Only conversations this agent (a login) was assigned.
    #[serde(default)]
    pub agent: Option<String>,
    /// IANA time zone of dates and of `by_hour`; default `UTC`.
    #[serde(default)]
    pub tz: Option<String>,
}

/// The archiver's answer: a report, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReply {
    #[serde(default)]
    pub report: Option<StatsReport>,
    #[serde(default)]
    pub error: Option<StatsFailure>,
}

/// Why a report could not be made. `code` is `bad_request` (a field of
/// the request is wrong), `not_found` (an unknown agent login) or
/// `unavailable` (the archive cannot be read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsFailure {
    pub code: String,
    pub message: String,
}

/// The figures of the conversations started in a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    /// The window, RFC 3339 in UTC; `until` is exclusive.
    pub since: String,
    pub until: String,
    /// The time zone of `by_hour`.
    pub tz: String,
    #[serde(default)]
    pub team: Option<String>,
    /// The agent login the report was limited to.
    #[serde(default)]
    pub agent: Option<String>,
    pub conversations: ConversationCounts,
    pub wait_secs: Timer,
    pub first_response_secs: Timer,
    pub resolution_secs: Timer,
    /// Messages (visitors', agents' and bots') per started conversation.
    #[serde(default)]
    pub messages_per_conversation: Option<f64>,
    pub csat: Csat,
    pub by_agent: Vec<AgentFigures>,
    pub by_team: Vec<TeamFigures>,
    /// 24 buckets, hour 0 to 23 of the local day in `tz`.
    pub by_hour: Vec<HourFigures>,
}

/// How the window's conversations went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationCounts {
    pub started: u64,
    pub answered: u64,
    pub missed: u64,
    pub abandoned: u64,
    pub handed_off: u64,
    pub bot_resolved: u64,
    #[serde(default)]
    pub closed: u64,
}

/// A distribution of durations in seconds: exact median and 90th
/// percentile, and the mean; `null` without samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timer {
    #[serde(default)]
    pub median: Option<f64>,
    #[serde(default)]
    pub p90: Option<f64>,
    #[serde(default)]
    pub average: Option<f64>,
    /// How many samples.
    #[serde(default)]
    pub count: u64,
}

/// Customer satisfaction from the visitors' ratings (1–5).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Csat {
    #[serde(default)]
    pub average: Option<f64>,
    pub responses: u64,
    /// Ratings per closed conversation.
    #[serde(default)]
    pub response_rate: Option<f64>,
    /// Ratings of 4 or 5 over all ratings.
    #[serde(default)]
    pub positive_share: Option<f64>,
}

/// One (human) agent's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentFigures {
    pub agent_id: String,
    /// `null` for an account removed since.
    #[serde(default)]
    pub login: Option<String>,
    pub name: String,
    /// Conversations assigned to them.
    pub conversations: u64,
    /// First responses they gave.
    pub first_response_secs: Timer,
    #[serde(default)]
    pub csat_average: Option<f64>,
    #[serde(default)]
    pub csat_responses: u64,
}

/// One team's figures (`team` is `null` for conversations without one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamFigures {
    #[serde(default)]
    pub team: Option<String>,
    pub conversations: ConversationCounts,
    pub wait_secs: Timer,
    pub first_response_secs: Timer,
    #[serde(default)]
    pub csat_average: Option<f64>,
}

/// The conversations started in one local hour of the day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourFigures {
    pub hour: u8,
    pub started: u64,
    pub answered: u64,
    pub missed: u64,
    pub abandoned: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payloads::{decode, encode};

    #[test]
    fn requests_and_replies_roundtrip_with_named_fields() {
        let request = StatsRequest {
            since: Some("2026-03-01".into()),
            tz: Some("Europe/Paris".into()),
            ..Default::default()
        };
        let bytes = encode(&request).unwrap();
        let generic: serde_json::Value = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(generic["since"], "2026-03-01");
        assert_eq!(decode::<StatsRequest>(&bytes).unwrap(), request);

        let reply = StatsReply {
            report: None,
            error: Some(StatsFailure {
                code: "bad_request".into(),
                message: "bad tz".into(),
            }),
        };
        assert_eq!(
            decode::<StatsReply>(&encode(&reply).unwrap()).unwrap(),
            reply
        );
        // An empty map is a request with every default.
        let empty: StatsRequest = decode(&encode(&serde_json::json!({})).unwrap()).unwrap();
        assert_eq!(empty, StatsRequest::default());
    }
}
