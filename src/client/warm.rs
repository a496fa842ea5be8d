//! Open the run's connections before t0, so that the first wave of measured requests does not
//! pay for TCP (and TLS) setup that later requests never pay: the tools we compare with send
//! their warm-up requests over the pool that the run then uses.

use std::time::Duration;

use futures_util::future::join_all;

/// How long one opening request may take; a server that does not answer is left to the run.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The pool takes a connection back on a background task once its answer has been read, and a
/// GET whose own connect lost the race to such a return leaves that connect to finish in the
/// background: this wait lets all of them land in the pool before t0, so that the first wave
/// finds every connection idle (seen on a loaded 2-core host).
const SETTLE: Duration = Duration::from_millis(20);

/// Sweeps of `k` GETs. The second takes the idle connections the first left and connects
/// for any it did not leave: on a loaded host one sweep left 392-399 of 400, two left 400 in
/// eight runs of eight (the cause of the few is not found; the pool may drop a connection
/// handed to a GET that had just got its own).
const SWEEPS: usize = 2;

/// Send `k` concurrent GETs to `url`, twice, and read their answers, so the pool keeps `k`
/// connections.
///
/// One task polls every GET of a sweep once before any of them can be answered, so each
/// finds no idle connection and starts a connect of its own. (With a task per GET, a quick
/// server answered the first GETs before the later ones were first polled, and those took
/// the returned connections instead: 256 GETs left 192-226 connections against the sim on a
/// core of its own, 512 left 206 against the sim in the same process, and the first wave
/// opened the rest on the clock.) The sweep runs outside tokio's cooperative budget, which
/// would otherwise end it after 128 GETs. The answers' status does not matter (a 404 still
/// leaves a kept-alive connection); errors are ignored: the measured requests report
/// whatever is wrong with the server.
pub async fn open_connections(client: &reqwest::Client, url: &reqwest::Url, k: usize) {
    for _ in 0..SWEEPS {
        let gets = (0..k).map(|_| {
            let req = client.get(url.clone()).timeout(OPEN_TIMEOUT);
            async move {
                if let Ok(resp) = req.send().await {
                    let _ = resp.bytes().await;
                }
            }
        });
        tokio::task::unconstrained(join_all(gets)).await;
        tokio::time::sleep(SETTLE).await;
    }
}
