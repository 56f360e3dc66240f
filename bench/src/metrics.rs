//! Where the time went inside tephra during a phase, from its own
//! Prometheus histograms (read at the end of the phase): the node's
//! receive-to-preconfirmation latency, batch log group commits, seals and
//! block signatures.
//! Quantiles are bucket upper bounds (the buckets double from 10 us), so
//! they are coarse; the means are exact.

use serde::{Deserialize, Serialize};

/// One of tephra's histograms, summarised.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeHistogram {
    pub count: u64,
    pub mean_us: f64,
    /// The upper bound of the bucket holding the 99th percentile.
    pub p99_us_at_most: f64,
}

/// The node's own view of a phase.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeTimes {
    /// Received by the node to preconfirmed (durable), per transaction.
    pub preconf: NodeHistogram,
    /// One batch log group commit (fdatasync), per mini-block or seal.
    pub fsync: NodeHistogram,
    /// Sealing a block: roots and header.
    pub seal: NodeHistogram,
    /// One block signature by the node's signer as configured (the
    /// double-sign guard, its audit log and the key or HSM).
    #[serde(default)]
    pub block_sign: NodeHistogram,
    /// A block's seal to its signature durable and published.
    #[serde(default)]
    pub block_signed: NodeHistogram,
}

/// Reads tephra's metrics at `url` (`http://host:port`).
pub fn scrape(url: &str) -> Result<NodeTimes, String> {
    let mut response = ureq::get(&format!("{url}/metrics")).call().map_err(|e| format!("metrics: {e}"))?;
    let text = response.body_mut().read_to_string().map_err(|e| format!("metrics: {e}"))?;
    Ok(NodeTimes {
        preconf: histogram(&text, "tephra_preconf_latency_us"),
        fsync: histogram(&text, "tephra_fsync_time_us"),
        seal: histogram(&text, "tephra_seal_time_us"),
        block_sign: histogram(&text, "tephra_block_sign_time_us"),
        block_signed: histogram(&text, "tephra_block_signed_latency_us"),
    })
}

fn value(line: &str) -> Option<f64> {
    line.rsplit(' ').next()?.parse().ok()
}

/// The histogram `name` of an exposition `text`.
fn histogram(text: &str, name: &str) -> NodeHistogram {
    let (bucket, sum, count) = (format!("{name}_bucket{{"), format!("{name}_sum "), format!("{name}_count "));
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    let (mut total, mut n) = (0.0, 0.0);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(&bucket) {
            let bound = rest.split('"').nth(1).map_or(f64::INFINITY, |le| le.parse().unwrap_or(f64::INFINITY));
            if let Some(cumulative) = value(line) {
                buckets.push((bound, cumulative));
            }
        } else if line.starts_with(&sum) {
            total = value(line).unwrap_or(0.0);
        } else if line.starts_with(&count) {
            n = value(line).unwrap_or(0.0);
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let p99_us_at_most = buckets.iter().find(|(_, cumulative)| *cumulative >= 0.99 * n).map_or(0.0, |b| b.0);
    NodeHistogram { count: n as u64, mean_us: if n > 0.0 { total / n } else { 0.0 }, p99_us_at_most }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_prometheus_histogram() {
        let text = "# TYPE tephra_fsync_time_us histogram\n\
            tephra_fsync_time_us_sum 3000.0\n\
            tephra_fsync_time_us_count 100\n\
            tephra_fsync_time_us_bucket{le=\"10.0\"} 0\n\
            tephra_fsync_time_us_bucket{le=\"20.0\"} 98\n\
            tephra_fsync_time_us_bucket{le=\"40.0\"} 100\n\
            tephra_fsync_time_us_bucket{le=\"+Inf\"} 100\n";
        let h = histogram(text, "tephra_fsync_time_us");
        assert_eq!(h.count, 100);
        assert!((h.mean_us - 30.0).abs() < 1e-9);
        assert!((h.p99_us_at_most - 40.0).abs() < 1e-9);
        assert_eq!(histogram(text, "tephra_seal_time_us").count, 0);
    }
}
