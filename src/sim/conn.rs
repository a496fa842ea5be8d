//! Per-connection control: lets a request abort its own connection with a real RST
//! (SO_LINGER 0, then close), which is what a crashed engine or proxy looks like to a client.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

pub struct ConnCtl {
    /// A duplicate of the connection's socket, used only to set SO_LINGER 0 on a reset.
    dup: Mutex<Option<std::net::TcpStream>>,
    aborted: Notify,
}

impl ConnCtl {
    pub fn new(dup: Option<std::net::TcpStream>) -> Self {
        ConnCtl {
            dup: Mutex::new(dup),
            aborted: Notify::new(),
        }
    }

    /// Arrange an abrupt close: linger 0 on the socket, drop our duplicate fd, and tell the
    /// connection task to drop the connection (the last close then sends RST).
    pub fn reset(&self) {
        if let Some(s) = self.take() {
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        }
        self.aborted.notify_one();
    }

    /// Release the duplicate fd (connection ended normally).
    pub fn release(&self) {
        drop(self.take());
    }

    fn take(&self) -> Option<std::net::TcpStream> {
        match self.dup.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        }
    }

    pub async fn aborted(&self) {
        self.aborted.notified().await
    }
}
