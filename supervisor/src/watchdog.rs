//! systemd's watchdog: `WATCHDOG=1` at half of `WATCHDOG_USEC`, sent only when the
//! supervisor's loop is turning (it starts the probe) and the gateway's health check
//! answers (the probe's reply).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::SupervisorEvent;

/// Half of `WATCHDOG_USEC` when systemd wants pings from us (`WATCHDOG_PID`, when set,
/// names us; sd_watchdog_enabled(3) accepts it unset too).
pub(crate) fn interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros((usec / 2).max(1000)))
}

/// Asks the gateway's `/healthz` in a task; the loop hears `WatchdogHealthy` when it
/// answered.
pub(crate) fn probe(
    listen: std::net::SocketAddr,
    events: &mpsc::UnboundedSender<SupervisorEvent>,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) {
    let events = events.clone();
    let stop = stop.clone();
    tasks.spawn(async move {
        let healthy = tokio::select! {
            healthy = gateway_healthy(listen) => healthy,
            () = stop.cancelled() => false,
        };
        if healthy {
            let _ = events.send(SupervisorEvent::WatchdogHealthy);
        }
    });
}

/// GET /healthz answers 200 within a second.
async fn gateway_healthy(listen: std::net::SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(listen).await.ok()?;
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 16];
        let n = stream.read(&mut head).await.ok()?;
        let head = std::str::from_utf8(&head[..n]).ok()?;
        Some(head.starts_with("HTTP/1.") && head.get(9..12) == Some("200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), probe).await,
        Ok(Some(true))
    )
}
