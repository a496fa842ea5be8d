//! The server: a background tokio runtime, our own accept loop (so a request can reset its
//! connection), hyper HTTP/1.1 connections, and the scheduler task.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

use super::conn::ConnCtl;
use super::error::SimError;
use super::metrics::Metrics;
use super::options::{Config, SimOptions};
use super::prefix_cache::PrefixCache;
use super::routes;
use super::scheduler::{self, NewSeq};
use super::tokenizer::{SimTokenizer, Vocab};

/// Everything request handlers share.
pub struct App {
    pub cfg: Config,
    pub tokenizer: SimTokenizer,
    pub vocab: Arc<Vocab>,
    pub metrics: Arc<Metrics>,
    pub sched: mpsc::UnboundedSender<NewSeq>,
    pub counter: AtomicU64,
    pub model_json: String,
    /// None when prefix caching is off.
    pub prefix: Option<Mutex<PrefixCache>>,
    /// Hashes of the `X-Session-ID` values seen (at most [`MAX_SESSIONS`]).
    pub sessions: Mutex<HashSet<u64>>,
}

/// Distinct session ids remembered for `sonic_sim:sessions_seen_total`; later new ids are not
/// counted (bounded memory under a client that sends a fresh id with every request).
pub const MAX_SESSIONS: usize = 1 << 20;

/// A started server; dropping it (or `shutdown`) stops everything and frees the port.
pub struct Running {
    rt: Option<Runtime>,
    pub addr: SocketAddr,
    pub host: String,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", host_port(&self.host, self.addr.port()))
    }

    /// Stop accepting, drop every connection and task.
    pub fn shutdown(mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Validate options, load the tokenizer, bind and start serving in the background.
pub fn start(opts: &SimOptions) -> Result<Running, SimError> {
    let cfg = opts.resolve()?;
    let (tokenizer, vocab) = SimTokenizer::load(cfg.tokenizer.as_deref())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sonic-sim")
        .build()
        .map_err(SimError::Runtime)?;
    let addr_text = host_port(&cfg.host, cfg.port);
    let listener = {
        let _entered = rt.enter(); // from_std registers with this runtime's reactor
        bind_listener(&addr_text).map_err(|source| SimError::Bind {
            addr: addr_text.clone(),
            source,
        })?
    };
    let addr = listener.local_addr().map_err(|source| SimError::Bind {
        addr: addr_text,
        source,
    })?;
    let metrics = Arc::new(Metrics::new(&cfg.model));
    let (tx, rx) = mpsc::unbounded_channel();
    rt.spawn(scheduler::run(cfg.engine, rx, metrics.clone()));
    let model_json = serde_json::to_string(&cfg.model).unwrap_or_default();
    let host = cfg.host.clone();
    let prefix = cfg
        .prefix
        .map(|p| Mutex::new(PrefixCache::new(p.block_size, p.capacity_blocks)));
    let app = Arc::new(App {
        prefix,
        sessions: Mutex::new(HashSet::new()),
        model_json: model_json.trim_matches('"').to_string(),
        cfg,
        tokenizer,
        vocab: Arc::new(vocab),
        metrics,
        sched: tx,
        counter: AtomicU64::new(0),
    });
    // Room for as many connections as the accept queue holds, so that `accept` does not
    // stall a worker to grow the descriptor table while streams are due.
    crate::descriptors::reserve(ACCEPT_BACKLOG as usize);
    rt.spawn(accept_loop(listener, app));
    Ok(Running {
        rt: Some(rt),
        addr,
        host,
    })
}

/// Bind with a deep accept queue: a client that opens thousands of streams at once must not
/// have SYNs dropped (each drop costs a 1 s retransmit, which would show up as fake latency).
fn bind_listener(addr: &str) -> std::io::Result<TcpListener> {
    use std::net::ToSocketAddrs;

    let sockaddr = addr.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind")
    })?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(sockaddr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&sockaddr.into())?;
    socket.listen(ACCEPT_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Capped by the kernel's net.core.somaxconn (4096 by default since Linux 5.4).
const ACCEPT_BACKLOG: i32 = 8192;

async fn accept_loop(listener: TcpListener, app: Arc<App>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_conn(stream, app.clone()));
            }
            // Out of fds and the like: back off a little instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn serve_conn(stream: TcpStream, app: Arc<App>) {
    let _ = stream.set_nodelay(true);
    let ctl = Arc::new(ConnCtl::new(stream.as_raw_fd()));
    let svc_ctl = ctl.clone();
    let svc = service_fn(move |req| {
        let app = app.clone();
        let ctl = svc_ctl.clone();
        async move { Ok::<_, std::convert::Infallible>(routes::handle(app, ctl, req).await) }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::select! {
        _ = conn => {}
        _ = ctl.aborted() => {}
    }
    ctl.release();
}
