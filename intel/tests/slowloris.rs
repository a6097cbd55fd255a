//! A slow-loris of 1,000 sockets against the store's server, on loopback,
//! with Debian's default soft limit of 1,024 open files: the server raises
//! it, closes sockets that never finish their headers, and answers a valid
//! key meanwhile. Alone in its test binary: it changes the process's limit.

mod common;

use std::time::Duration;

use ioclab_intel::server::ConnLimits;
use ioclab_intel::store::StoreLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sets the soft limit on open files (the hard one stays).
fn set_soft_nofile(n: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = n.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_loris_of_1000_sockets_does_not_lock_out_a_valid_key() {
    set_soft_nofile(1024);
    let conn = ConnLimits { header_read_timeout: Duration::from_secs(2), ..ConnLimits::default() };
    let lab = common::lab(StoreLimits::default(), conn).await;
    let addr = lab.url.trim_start_matches("http://").to_string();
    let mut loris = Vec::new();
    for _ in 0..1000 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /servers/getVersion HTTP/1.1\r\nHost: lab\r\n").await.unwrap();
        loris.push(s);
    }
    assert_eq!(lab.get("/servers/getVersion").await, 200);
    assert_eq!(lab.get("/users/view/me").await, 200);
    // the server closes a socket that never finishes its headers; the bound
    // is only there to fail (not hang) when it does not: 2 s is the server's
    let mut first = loris.swap_remove(0);
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(120), first.read(&mut buf)).await;
    let n = read.expect("the server never closed a socket stuck in its headers").unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "{answer}");
}
