//! What the edge counts, in the terms of its own types (the counters are
//! `switchboard_metrics::edge`): so that the session's code counts with a
//! one-line call.

use switchboard_config::EdgeRole;
use switchboard_metrics::edge::{edge, Connected, ConnectionRole};
use switchboard_protocol::frames::ClientFrame;

/// Registers the edge's metrics and the backbone's, so that they show (at
/// zero) from the start.
pub(crate) fn init() {
    switchboard_metrics::edge::init();
    switchboard_metrics::bus::init();
}

/// Counts a connection of `role` as open while the guard lives.
pub(crate) fn connected(role: EdgeRole) -> Connected {
    edge().connected(match role {
        EdgeRole::Visitor => ConnectionRole::Visitor,
        EdgeRole::Agent => ConnectionRole::Agent,
    })
}

/// Counts a frame received, by type (or as one that did not parse).
pub(crate) fn received(frame: &Result<ClientFrame, serde_json::Error>) {
    match frame {
        Ok(frame) => edge().received(frame.kind()),
        Err(_) => edge().received_invalid(),
    }
}
