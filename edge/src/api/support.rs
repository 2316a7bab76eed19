//! What the API's handlers share: reading a JSON body, and the answer to
//! a backbone failure.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::Response;
use serde::de::DeserializeOwned;

use crate::http::error;

/// A JSON body, or the `400`/`413` answering it.
pub fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, Box<Response>> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "bad_request"
        };
        tracing::info!(%status, "request body refused");
        Box::new(error(status, code, &rejection.body_text()))
    })?;
    serde_json::from_slice(&body).map_err(|err| {
        tracing::info!(error = %err, "bad request body");
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &err.to_string(),
        ))
    })
}

/// `503` for a backbone (NATS) failure, logged once here.
pub fn unavailable(what: &str, err: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %err, "{what} failed");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the backbone (NATS) is unreachable; try again",
    )
}

/// `400 bad_request` with a message.
pub fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// `404 not_found` with a message.
pub fn not_found(message: &str) -> Response {
    error(StatusCode::NOT_FOUND, "not_found", message)
}
