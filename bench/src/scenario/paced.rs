//! Paced: one host at RATE lines/s, each line flushed; script-to-watcher latency.

use std::time::Duration;

use crate::Error;
use crate::report::{Row, reconnected, thousands};
use crate::scenario::live;

/// Runs the paced scenario; its rows, or why it failed.
pub async fn paced(watchers: usize, rate: u64, seconds: u64) -> Result<Vec<Row>, Error> {
    let lines = rate * seconds;
    let o = live(watchers, 1, lines, rate).await?;
    let target = match (watchers, rate) {
        (1, _) => Some(1),
        (100, 1_000) => Some(5),
        (1000, 100) => Some(25),
        _ => None,
    };
    let p99 = o.latency.percentile(0.99);
    Ok(vec![Row {
        figure: format!(
            "p99 latency, {watchers} watcher(s) at {} lines/s ({seconds} s)",
            thousands(rate as f64)
        ),
        measured: o.latency.summary(),
        target: target.map(|t| format!("≤ {t} ms")).unwrap_or_default(),
        met: target.map(|t| p99 <= Duration::from_millis(t)),
        notes: format!(
            "{} lines × {watchers} all checked{} ({} lines/s each); {}; {}",
            thousands(lines as f64),
            reconnected(o.reconnects),
            thousands(o.slowest_lps),
            o.cpu,
            o.gateway_notes,
        ),
    }])
}
