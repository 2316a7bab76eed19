//! Exact order statistics, computed from every value (MongoDB's
//! `$median`/`$percentile` are approximate).
//!
//! - median: the middle value, or the mean of the two middle values;
//! - 90th percentile: nearest rank, the smallest value with at least 90 %
//!   of the values at or below it (always one of the values);
//! - average: the arithmetic mean.

use switchboard_protocol::stats::Timer;

/// The median of ascending values.
pub fn median(sorted: &[i64]) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    Some(if n % 2 == 1 {
        sorted[mid] as f64
    } else {
        (sorted[mid - 1] as f64 + sorted[mid] as f64) / 2.0
    })
}

/// The `p`-th percentile (0 < p ≤ 100) of ascending values, nearest rank.
pub fn percentile(sorted: &[i64], p: u32) -> Option<i64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    // rank = ⌈p/100 · n⌉, in integers to stay exact.
    let rank = (u64::from(p.min(100)) * n as u64).div_ceil(100).max(1);
    let index = usize::try_from(rank).map_or(n - 1, |r| r - 1).min(n - 1);
    Some(sorted[index])
}

/// The mean.
pub fn average(values: &[i64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let sum: i128 = values.iter().map(|&v| i128::from(v)).sum();
    Some(sum as f64 / values.len() as f64)
}

/// A distribution of millisecond durations, in seconds (to the
/// millisecond).
pub fn timer(mut millis: Vec<i64>) -> Timer {
    millis.sort_unstable();
    Timer {
        median: median(&millis).map(seconds),
        p90: percentile(&millis, 90).map(|ms| seconds(ms as f64)),
        average: average(&millis).map(seconds),
        count: millis.len() as u64,
    }
}

/// Milliseconds as seconds, rounded to the millisecond.
pub fn seconds(ms: f64) -> f64 {
    ms.round() / 1000.0
}

/// A ratio or mean rounded to 4 decimals.
pub fn rounded(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_are_exact() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[7]), Some(7.0));
        assert_eq!(median(&[1, 3]), Some(2.0));
        assert_eq!(median(&[1, 2, 10]), Some(2.0));
        assert_eq!(median(&[1, 2, 3, 100]), Some(2.5));
    }

    #[test]
    fn p90_is_the_nearest_rank() {
        let ten: Vec<i64> = (1..=10).collect();
        assert_eq!(percentile(&ten, 90), Some(9));
        let eleven: Vec<i64> = (1..=11).collect();
        // ⌈9.9⌉ = 10th value.
        assert_eq!(percentile(&eleven, 90), Some(10));
        assert_eq!(percentile(&[5], 90), Some(5));
        assert_eq!(percentile(&[1, 2], 90), Some(2));
        assert_eq!(percentile(&[], 90), None);
        let hundred: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 90), Some(90));
        assert_eq!(percentile(&hundred, 100), Some(100));
    }

    #[test]
    fn timers_are_in_seconds_from_unsorted_milliseconds() {
        let t = timer(vec![30_000, 10_000, 20_000, 90_500]);
        assert_eq!(t.median, Some(25.0));
        assert_eq!(t.p90, Some(90.5));
        assert_eq!(t.average, Some(37.625));
        assert_eq!(t.count, 4);
        assert_eq!(timer(Vec::new()).median, None);
        // Averages round to the millisecond.
        assert_eq!(timer(vec![1, 2, 2]).average, Some(0.002));
    }
}
