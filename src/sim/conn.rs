//! Per-connection control: lets a request abort its own connection with a real RST
//! (SO_LINGER 0, then close), which is what a crashed engine or proxy looks like to a client.

use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

pub struct ConnCtl {
    /// The connection's socket, used only to set SO_LINGER 0 on a reset. Not a duplicate: a
    /// second fd per connection halved how many idle connections the sim could hold (10,000
    /// of them took the last fds, and accept then failed for everyone else).
    fd: Mutex<Option<RawFd>>,
    aborted: Notify,
}

impl ConnCtl {
    pub fn new(fd: RawFd) -> Self {
        ConnCtl {
            fd: Mutex::new(Some(fd)),
            aborted: Notify::new(),
        }
    }

    /// Arrange an abrupt close: linger 0 on the socket, and tell the connection task to drop
    /// the connection (its close then sends RST).
    pub fn reset(&self) {
        if let Some(fd) = self.take() {
            // SAFETY: reset is called only by a request of this connection (its handler or its
            // response body), which the connection owns: the socket is open while it runs.
            // `release` clears the fd once the connection is gone, before it could be reused.
            let sock = unsafe { BorrowedFd::borrow_raw(fd) };
            let _ = socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO));
        }
        self.aborted.notify_one();
    }

    /// Forget the fd (the connection has ended).
    pub fn release(&self) {
        self.take();
    }

    fn take(&self) -> Option<RawFd> {
        match self.fd.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        }
    }

    pub async fn aborted(&self) {
        self.aborted.notified().await
    }
}
