//! The HTTP server's connections, bounded: a cap on how many are open, a
//! deadline for a request's headers (which is also the idle timeout of a
//! kept-alive connection: hyper arms it whenever it waits for a request), a
//! deadline for a request's body and handler, and the process's file limit
//! raised at start. Without them 300 idle sockets made the server loop on
//! "Too many open files", and a slow-loris held it forever.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::server::ApiError;

/// Limits of the server's connections; `Default` is what `ioclab misp serve` uses.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Time a client has to send a request's headers, and the longest a
    /// kept-alive connection stays idle between requests.
    pub header_read_timeout: Duration,
    /// Time a request's body and its handler may take before 408 (a
    /// streamed answer then goes on at the client's pace).
    pub request_timeout: Duration,
    /// Open connections at most; further clients wait in the listen backlog
    /// until one closes (the timeouts above make sure one does). Lowered to
    /// fit the file limit if needed.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(120),
            max_connections: 4_096,
        }
    }
}

/// File descriptors kept for the database, logs and the listener, besides connections.
const RESERVED_FDS: u64 = 64;

/// Raises the soft limit on open files to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            lim = raised;
        }
    }
    Ok(lim.rlim_cur as u64)
}

/// The connection cap that fits the file limit `nofile`.
fn fitted_cap(wanted: usize, nofile: u64) -> usize {
    wanted.min(nofile.saturating_sub(RESERVED_FDS).max(1) as usize)
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes;
/// then stops accepting and lets open connections finish their request.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let nofile = raise_nofile_limit().unwrap_or_else(|e| {
        tracing::warn!("cannot raise the open-file limit: {e}");
        1024
    });
    let cap = fitted_cap(limits.max_connections, nofile);
    if cap < limits.max_connections {
        tracing::warn!("at most {cap} connections: the open-file limit is {nofile}");
    }
    let slots = Arc::new(Semaphore::new(cap));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let app = app.layer(axum::middleware::from_fn_with_state(limits.request_timeout, request_deadline));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.map_err(std::io::Error::other)?,
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and the like: wait for a connection to close rather than spin
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = TowerToHyperService::new(app.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection from {peer}: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// 408 when a request's body and handler take longer than the deadline
/// (a client trickling its body holds a connection no longer than that).
async fn request_deadline(
    axum::extract::State(deadline): axum::extract::State<Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let uri = req.uri().clone();
    match tokio::time::timeout(deadline, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            let msg = format!("the request took over {} s (body and processing)", deadline.as_secs());
            ApiError::new(StatusCode::REQUEST_TIMEOUT, "Request timeout", msg, &uri).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_the_file_limit() {
        assert_eq!(fitted_cap(4096, 1024), 960);
        assert_eq!(fitted_cap(100, 65536), 100);
        assert_eq!(fitted_cap(100, 10), 1);
    }

    #[test]
    fn the_file_limit_is_raised_to_the_hard_limit() {
        let n = raise_nofile_limit().unwrap();
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: valid pointer to a local.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
        assert_eq!(n, lim.rlim_cur as u64);
    }
}

/// Resolves at Ctrl-C or SIGTERM: when a server started from the command line stops.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => return ctrl_c.await.unwrap_or(()),
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
