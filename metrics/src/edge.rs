//! The edge's metrics: connections by role, frames in and out by type,
//! `error` frames by code, closes by code, resumes and replayed records.
//!
//! Frames are counted where they pass one by one (the session's reader, the
//! connection's writer), so a frame costs one atomic increment and a few
//! comparisons of short strings to find its pre-built counter.

use std::sync::LazyLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use switchboard_protocol::frames::ErrorCode;

/// Who holds a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRole {
    Visitor,
    Agent,
}

const ROLES: [&str; 2] = ["visitor", "agent"];

/// Types of client frames counted, then what did not parse and binary
/// frames. A type that is not listed counts as `other`.
const RECEIVED: [&str; 21] = [
    "hello",
    "start",
    "send",
    "typing",
    "read",
    "history",
    "status",
    "close",
    "transfer",
    "rate",
    "leave_message",
    "list_missed",
    "pick_up",
    "handoff",
    "refresh",
    "note",
    "take",
    "ping",
    "invalid",
    "binary",
    "other",
];

/// Types of server frames counted; anything else counts as `other`.
const SENT: [&str; 17] = [
    "welcome",
    "refreshed",
    "started",
    "ack",
    "message",
    "event",
    "typing",
    "read",
    "delivered",
    "resumed",
    "history",
    "assigned",
    "notice",
    "queue",
    "missed",
    "error",
    "other",
];

const ERRORS: [&str; 7] = [
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "too_large",
    "rate_limited",
    "unavailable",
];

/// Close codes counted (protocol.md lists what each means); any other
/// counts as `other`.
const CLOSES: [&str; 12] = [
    "1000", "1007", "1008", "1009", "1011", "1012", "1013", "4401", "4403", "4408", "4429", "other",
];

/// The edge's counters, pre-built for every label.
pub struct EdgeMetrics {
    connections: [Gauge; 2],
    opened: [Counter; 2],
    received: [Counter; RECEIVED.len()],
    sent: [Counter; SENT.len()],
    errors: [Counter; ERRORS.len()],
    closes: [Counter; CLOSES.len()],
    resumes: Counter,
    replayed: Counter,
}

static EDGE: LazyLock<EdgeMetrics> = LazyLock::new(|| {
    crate::process::init();
    EdgeMetrics {
        connections: crate::gauges(
            "edge_connections",
            "WebSocket connections open now (after a valid hello), by role",
            "role",
            ROLES,
        ),
        opened: crate::counters(
            "edge_connections_opened",
            "WebSocket connections accepted (after a valid hello), by role",
            "role",
            ROLES,
        ),
        received: crate::counters(
            "edge_frames_received",
            "Frames received from clients, by type (invalid: did not parse)",
            "type",
            RECEIVED,
        ),
        sent: crate::counters(
            "edge_frames_sent",
            "Frames written to clients, by type",
            "type",
            SENT,
        ),
        errors: crate::counters(
            "edge_errors",
            "error frames sent to clients, by code",
            "code",
            ERRORS,
        ),
        closes: crate::counters(
            "edge_closes",
            "Close frames sent to clients, by close code",
            "code",
            CLOSES,
        ),
        resumes: crate::counter(
            "edge_resumes",
            "Conversations resumed (a hello's resume entry answered with resumed)",
        ),
        replayed: crate::counter(
            "edge_replayed_records",
            "Records replayed to resuming clients",
        ),
    }
});

/// The edge's metrics (registered on first use).
pub fn edge() -> &'static EdgeMetrics {
    &EDGE
}

/// Registers the edge's metrics, so they show (at zero) from the start.
pub fn init() {
    LazyLock::force(&EDGE);
}

/// An open connection, counted until it is dropped.
#[must_use = "the connection is counted while this lives"]
pub struct Connected {
    gauge: &'static Gauge,
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl EdgeMetrics {
    /// Counts a connection as open until the returned guard is dropped.
    pub fn connected(&'static self, role: ConnectionRole) -> Connected {
        let i = role as usize;
        self.opened[i].inc();
        self.connections[i].inc();
        Connected {
            gauge: &self.connections[i],
        }
    }

    /// A frame received, by its `type` (see `ClientFrame::kind`).
    pub fn received(&self, kind: &str) {
        self.received[position(&RECEIVED, kind)].inc();
    }

    /// A text frame that did not parse as a client frame.
    pub fn received_invalid(&self) {
        self.received[position(&RECEIVED, "invalid")].inc();
    }

    /// A binary frame (refused).
    pub fn received_binary(&self) {
        self.received[position(&RECEIVED, "binary")].inc();
    }

    /// A frame written, by its JSON text (its `type` comes first).
    pub fn sent(&self, json: &str) {
        self.sent[position(&SENT, frame_type(json))].inc();
    }

    /// An `error` frame, by code.
    pub fn error(&self, code: ErrorCode) {
        let i = match code {
            ErrorCode::BadRequest => 0,
            ErrorCode::Unauthorized => 1,
            ErrorCode::Forbidden => 2,
            ErrorCode::NotFound => 3,
            ErrorCode::TooLarge => 4,
            ErrorCode::RateLimited => 5,
            ErrorCode::Unavailable => 6,
        };
        self.errors[i].inc();
    }

    /// A close frame, by code.
    pub fn closed(&self, code: u16) {
        let i = match code {
            1000 => 0,
            1007 => 1,
            1008 => 2,
            1009 => 3,
            1011 => 4,
            1012 => 5,
            1013 => 6,
            4401 => 7,
            4403 => 8,
            4408 => 9,
            4429 => 10,
            _ => 11,
        };
        self.closes[i].inc();
    }

    /// A conversation resumed, with the records replayed to catch it up.
    pub fn resumed(&self, replayed: usize) {
        self.resumes.inc();
        self.replayed
            .inc_by(u64::try_from(replayed).unwrap_or(u64::MAX));
    }
}

/// Where `value` is in `list`, or the last entry (`other`).
fn position(list: &[&str], value: &str) -> usize {
    list.iter()
        .position(|v| *v == value)
        .unwrap_or(list.len() - 1)
}

/// The `type` of a server frame's JSON: serde writes an internally tagged
/// enum's tag first, so it is read from the start without parsing.
fn frame_type(json: &str) -> &str {
    json.strip_prefix("{\"type\":\"")
        .and_then(|rest| rest.split_once('"'))
        .map_or("other", |(kind, _)| kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::frames::ServerFrame;

    #[test]
    fn a_frame_type_is_read_from_the_start_of_its_json() {
        let error = ServerFrame::error(ErrorCode::Forbidden, "no", None).to_json();
        assert_eq!(frame_type(&error), "error");
        let refreshed = ServerFrame::Refreshed {
            token_expires_at: "2030-01-01T00:00:00Z".into(),
        }
        .to_json();
        assert_eq!(frame_type(&refreshed), "refreshed");
        assert_eq!(frame_type("{\"kind\":\"x\"}"), "other");
        assert_eq!(frame_type(""), "other");
        assert_eq!(position(&SENT, "no_such_type"), SENT.len() - 1);
        assert_eq!(SENT[position(&SENT, "welcome")], "welcome");
        for kind in ["note", "take", "ping", "leave_message"] {
            assert_eq!(RECEIVED[position(&RECEIVED, kind)], kind);
        }
    }

    #[test]
    fn connections_are_counted_while_open() {
        let metrics = edge();
        let before = metrics.connections[1].get();
        let guard = metrics.connected(ConnectionRole::Agent);
        assert_eq!(metrics.connections[1].get(), before + 1);
        drop(guard);
        assert_eq!(metrics.connections[1].get(), before);
        metrics.closed(4401);
        metrics.error(ErrorCode::Unavailable);
        metrics.received("send");
        metrics.sent("{\"type\":\"ack\",\"client_id\":\"x\"}");
        let text = crate::render();
        for line in [
            "switchboard_edge_closes_total{code=\"4401\"} 1",
            "switchboard_edge_errors_total{code=\"unavailable\"} 1",
            "switchboard_edge_frames_received_total{type=\"send\"} 1",
            "switchboard_edge_frames_sent_total{type=\"ack\"} 1",
            "switchboard_edge_connections{role=\"visitor\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
