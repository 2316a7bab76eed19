//! Input limits of one connection: a token bucket for frames per second,
//! and the checks every text and client id passes.

use std::time::Instant;

/// Token bucket: `rate` frames per second on average, `burst` at once.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    /// Frames refused since the last one allowed.
    refused: u32,
}

/// What to do with one frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Answer with `rate_limited` and drop the frame.
    Refuse,
    /// The client keeps going over the limit: close with 4429.
    Disconnect,
}

impl RateLimiter {
    pub fn new(rate: u32, burst: u32) -> Self {
        Self::starting_at(rate, burst, Instant::now())
    }

    fn starting_at(rate: u32, burst: u32, now: Instant) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
            refused: 0,
        }
    }

    pub fn check(&mut self) -> Verdict {
        self.check_at(Instant::now())
    }

    fn check_at(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused = 0;
            return Verdict::Allow;
        }
        self.refused += 1;
        if f64::from(self.refused) > self.burst {
            Verdict::Disconnect
        } else {
            Verdict::Refuse
        }
    }
}

/// Why a message text is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum TextProblem {
    Empty,
    TooLong { max: usize },
}

/// Checks a message text against the configured maximum (in characters).
pub fn check_text(text: &str, max_chars: usize) -> Result<(), TextProblem> {
    if text.trim().is_empty() {
        return Err(TextProblem::Empty);
    }
    if text.chars().count() > max_chars {
        return Err(TextProblem::TooLong { max: max_chars });
    }
    Ok(())
}

/// A client id is 1–64 visible ASCII characters (a UUID, typically): it
/// becomes part of a NATS header.
pub fn valid_client_id(client_id: &str) -> bool {
    !client_id.is_empty()
        && client_id.len() <= 64
        && client_id.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_burst_then_refuses_then_refills() {
        let start = Instant::now();
        let mut limiter = RateLimiter::starting_at(10, 3, start);
        for _ in 0..3 {
            assert_eq!(limiter.check_at(start), Verdict::Allow);
        }
        assert_eq!(limiter.check_at(start), Verdict::Refuse);
        assert_eq!(limiter.check_at(start), Verdict::Refuse);
        assert_eq!(limiter.check_at(start), Verdict::Refuse);
        assert_eq!(limiter.check_at(start), Verdict::Disconnect);
        let later = start + Duration::from_millis(150);
        assert_eq!(limiter.check_at(later), Verdict::Allow);
    }

    #[test]
    fn texts_and_client_ids() {
        assert_eq!(check_text("  ", 10), Err(TextProblem::Empty));
        assert_eq!(check_text("ééé", 3), Ok(()));
        assert_eq!(check_text("éééé", 3), Err(TextProblem::TooLong { max: 3 }));
        assert!(valid_client_id("0b4c-11ef"));
        assert!(!valid_client_id("has space"));
        assert!(!valid_client_id("line\nbreak"));
        assert!(!valid_client_id(""));
    }
}
