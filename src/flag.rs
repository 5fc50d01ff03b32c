//! The on/off flags tasks watch (stop asked, this replica leads), as `watch` channels.

use tokio::sync::watch;

/// Waits until the flag is `want`; false when its sender is gone. The guard `wait_for`
/// returns is dropped here, so callers' futures stay `Send`.
pub async fn until(rx: &mut watch::Receiver<bool>, want: bool) -> bool {
    rx.wait_for(|v| *v == want).await.is_ok()
}
