//! Reading Prometheus text from the admin listener's `/metrics`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::client;

/// The value of the first sample of metric `name` that carries every label in `labels` (other
/// labels, and label order, do not matter).
///
/// ```
/// use palisade_blackbox::metrics::sample;
///
/// let text = "# TYPE up gauge\nup{site=\"blog\",origin=\"127.0.0.1:1\"} 0\n";
/// assert_eq!(sample(text, "up", &[("origin", "127.0.0.1:1")]), Some(0.0));
/// assert_eq!(sample(text, "up", &[("site", "shop")]), None);
/// ```
pub fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (series, value) = parse_line(line)?;
        let (series_name, series_labels) = series;
        let matches = series_name == name
            && labels
                .iter()
                .all(|(key, want)| series_labels.iter().any(|(k, v)| k == key && v == want));
        matches.then_some(value)
    })
}

/// The text of `GET /metrics` on `admin`, read with the suite's admin token; panics unless it
/// answers 200.
pub async fn scrape(admin: SocketAddr) -> String {
    let reply = client::admin_get(admin, "/metrics").await;
    assert_eq!(reply.status, 200, "/metrics answered {}", reply.text());
    reply.text()
}

/// Scrapes `GET /metrics` on `admin` until `done` holds for the text or `within` runs out;
/// returns the last scrape either way, for the test to assert on and show.
pub async fn scrape_until(
    admin: SocketAddr,
    within: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + within;
    loop {
        let text = scrape(admin).await;
        if done(&text) || Instant::now() >= deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A metric name with its labels, and the sample's value.
type Sample<'a> = ((&'a str, Vec<(&'a str, &'a str)>), f64);

/// Splits `name{k="v",...} value [timestamp]`; `None` for comments and blank lines. Label values
/// with escaped quotes or commas are not handled: Palisade's labels hold neither.
fn parse_line(line: &str) -> Option<Sample<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (series, rest) = match line.find('{') {
        Some(open) => {
            let close = open + line[open..].find('}')?;
            let labels = line[open + 1..close]
                .split(',')
                .filter(|pair| !pair.trim().is_empty())
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    Some((k.trim(), v.trim().trim_matches('"')))
                })
                .collect();
            ((&line[..open], labels), &line[close + 1..])
        }
        None => {
            let (name, rest) = line.split_once(char::is_whitespace)?;
            ((name, Vec::new()), rest)
        }
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((series, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_matches_labels_in_any_order_and_skips_comments() {
        let text = "# HELP x_total things\n# TYPE x_total counter\n\
                    x_total{site=\"blog\",origin=\"127.0.0.1:9\",kind=\"connect\"} 4\n\
                    x_total{site=\"blog\",origin=\"127.0.0.1:9\",kind=\"timeout\"} 1\n\
                    plain 7\n";
        assert_eq!(
            sample(text, "x_total", &[("kind", "timeout"), ("site", "blog")]),
            Some(1.0)
        );
        assert_eq!(sample(text, "x_total", &[("kind", "connect")]), Some(4.0));
        assert_eq!(sample(text, "x_total", &[("kind", "other")]), None);
        assert_eq!(sample(text, "plain", &[]), Some(7.0));
        assert_eq!(sample(text, "x", &[]), None);
    }
}
