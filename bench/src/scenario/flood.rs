//! Flood: every host writes as fast as it can; lines/s at the slowest watcher.

use std::time::Duration;

use crate::Error;
use crate::report::{Row, reconnected, thousands};
use crate::scenario::live;

/// Runs the flood scenario; its rows, or why it failed.
pub async fn flood(watchers: usize, hosts: usize, per_host: u64) -> Result<Vec<Row>, Error> {
    let o = live(watchers, hosts, per_host, 0).await?;
    let lines = hosts as u64 * per_host;
    let (target, want) = match watchers {
        1 => ("≥ 200,000 lines/s (stretch 400,000)", Some(200_000.0)),
        100 => ("≥ 20,000 lines/s each", Some(20_000.0)),
        1000 => ("≥ 5,000 lines/s each", Some(5_000.0)),
        _ => ("", None),
    };
    let each = if watchers == 1 { "" } else { " each" };
    let mut rows = vec![Row {
        figure: format!(
            "{watchers} watcher(s), as fast as possible ({hosts} hosts × {} lines)",
            thousands(per_host as f64)
        ),
        measured: format!(
            "{} lines/s{each} ({:.2}M deliveries/s)",
            thousands(o.slowest_lps),
            o.deliveries_ps / 1e6
        ),
        target: target.into(),
        met: want.map(|w| o.slowest_lps >= w),
        notes: format!(
            "{} lines × {watchers} all checked{}; latency {}; {}; peak RSS gateway {:.0} MiB, runner {:.0} MiB; {}",
            thousands(lines as f64),
            reconnected(o.reconnects),
            o.latency.summary(),
            o.cpu,
            o.gateway_peak_mib,
            o.runner_peak_mib,
            o.gateway_notes,
        ),
    }];
    if watchers == 1 {
        let p99 = o.latency.percentile(0.99);
        rows.push(Row {
            figure: "p99 latency, 1 watcher, unthrottled".into(),
            measured: o.latency.summary(),
            target: "≤ 1 ms".into(),
            met: Some(p99 <= Duration::from_millis(1)),
            notes: "same run as the row above: scripts write faster than the pipeline drains, \
                    so lines queue in the runner (its peak RSS above): queueing, \
                    not path, latency; the path is the 1,000 lines/s row"
                .into(),
        });
    }
    Ok(rows)
}
