//! Reading Prometheus text as a scraper would: fetch `/metrics`, find a
//! series' value, sum a metric over its labels, list the names shown.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::http;

/// `GET /metrics` of `addr`; panics unless it answers 200 with text.
pub async fn scrape(addr: SocketAddr) -> String {
    let response = http::get(addr, "/metrics").await;
    assert_eq!(
        response.status, 200,
        "GET /metrics of {addr}: {}",
        response.body
    );
    response.body
}

/// The samples of `text`: `(series, value)`, where the series is the name
/// with its labels as written (`name{label="v"}`).
fn samples(text: &str) -> impl Iterator<Item = (&str, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series, value.trim().parse::<f64>().ok()?))
        })
}

/// The value of one series (`name` or `name{labels}`, exactly as shown).
pub fn value(text: &str, series: &str) -> Option<f64> {
    samples(text).find(|(s, _)| *s == series).map(|(_, v)| v)
}

/// The sum of a metric over all its label sets (0 when it has none).
pub fn sum(text: &str, name: &str) -> f64 {
    samples(text)
        .filter(|(series, _)| series.split('{').next() == Some(name))
        .map(|(_, v)| v)
        .sum()
}

/// Every sample name shown (`…_bucket`, `…_count` and `…_sum` of
/// histograms included), and every name declared by `# TYPE`.
pub fn names(text: &str) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = samples(text)
        .filter_map(|(series, _)| series.split('{').next())
        .map(str::to_owned)
        .collect();
    names.extend(text.lines().filter_map(|line| {
        line.strip_prefix("# TYPE ")
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
    }));
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_values_and_names_are_read() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{k=\"x\"} 2\na_total{k=\"y\"} 3\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n";
        assert_eq!(value(text, "a_total{k=\"y\"}"), Some(3.0));
        assert_eq!(sum(text, "a_total"), 5.0);
        assert_eq!(sum(text, "missing"), 0.0);
        let names = names(text);
        assert!(names.contains("a_total") && names.contains("h_bucket") && names.contains("h"));
    }
}
