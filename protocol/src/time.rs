//! Timestamps: unix milliseconds inside NATS payloads and the archive,
//! RFC 3339 (UTC, millisecond precision) in browser frames.

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The last instant RFC 3339 can write: 9999-12-31T23:59:59.999Z.
const LAST_WRITABLE_MS: i64 = 253_402_300_799_999;

/// Formats unix milliseconds as RFC 3339, e.g. `2026-11-21T23:04:08.123Z`.
/// Times before the epoch or past year 9999 (a forged or broken payload)
/// are written as the nearest one it can write, never a panic.
pub fn rfc3339(ms: i64) -> String {
    let ms = ms.clamp(0, LAST_WRITABLE_MS);
    let since_epoch = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    let mut text = String::with_capacity(24);
    // Cannot fail within the clamped range.
    let _ = write!(
        text,
        "{}",
        humantime::format_rfc3339_millis(UNIX_EPOCH + since_epoch)
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_millis() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(LAST_WRITABLE_MS), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
    }
}
