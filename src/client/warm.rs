//! Open the run's connections before t0, so that the first wave of measured requests does not
//! pay for TCP (and TLS) setup that later requests never pay: the tools we compare with send
//! their warm-up requests over the pool that the run then uses.

use std::time::Duration;

use tokio::task::JoinSet;

/// How long one opening request may take; a server that does not answer is left to the run.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The pool takes a connection back on a background task once its answer has been read, and a
/// GET that found another's connection idle first leaves its own connect to finish in the
/// background: this wait lets both land in the pool before t0, so that the first wave finds
/// every connection idle instead of racing a new connect against a return (seen on a loaded
/// 2-core host).
const SETTLE: Duration = Duration::from_millis(20);

/// Send `k` concurrent GETs to `url` and read their answers, so the pool keeps `k` connections.
/// The answers' status does not matter (a 404 still leaves a kept-alive connection); errors are
/// ignored: the measured requests report whatever is wrong with the server.
pub async fn open_connections(client: &reqwest::Client, url: &reqwest::Url, k: usize) {
    let mut set = JoinSet::new();
    for _ in 0..k {
        let req = client.get(url.clone()).timeout(OPEN_TIMEOUT);
        set.spawn(async move {
            if let Ok(resp) = req.send().await {
                let _ = resp.bytes().await;
            }
        });
    }
    while set.join_next().await.is_some() {}
    tokio::time::sleep(SETTLE).await;
}
