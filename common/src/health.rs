//! The `healthcheck` subcommand of both binaries: one GET of the service's own `/healthz`,
//! for container runtimes whose images have no shell and no HTTP client (Compose's
//! `healthcheck: ["CMD", "/usr/local/bin/gateway", "healthcheck"]`).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long the whole check may take.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Whether `GET /healthz` on the address the service listens on answers 200 within
/// `timeout`. A wildcard listen address (`0.0.0.0`, `[::]`) is probed on the loopback address
/// of its family.
pub fn healthy(listen: SocketAddr, timeout: Duration) -> bool {
    probe(local(listen), timeout).unwrap_or(false)
}

fn local(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, listen.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, listen.port()).into(),
        _ => listen,
    }
}

fn probe(addr: SocketAddr, timeout: Duration) -> std::io::Result<bool> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(std::io::ErrorKind::TimedOut)
    };
    let mut stream = TcpStream::connect_timeout(&addr, left()?)?;
    stream.set_write_timeout(Some(left()?))?;
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    // The status line is all that is needed: "HTTP/1.1 200 OK".
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') {
        stream.set_read_timeout(Some(left()?))?;
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let version = parts.next().unwrap_or_default();
    Ok(version.starts_with(b"HTTP/1.") && parts.next() == Some(b"200"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_address_is_probed_on_loopback() {
        assert_eq!(
            local("0.0.0.0:8080".parse().unwrap()),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            local("[::]:9090".parse().unwrap()),
            "[::1]:9090".parse().unwrap()
        );
        assert_eq!(
            local("10.1.2.3:80".parse().unwrap()),
            "10.1.2.3:80".parse().unwrap()
        );
    }

    #[test]
    fn only_a_200_status_line_is_healthy() {
        for (answer, want) in [
            ("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", true),
            ("HTTP/1.1 503 Service Unavailable\r\n\r\n", false),
            ("garbage", false),
        ] {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                // The whole request first: closing with some of it unread would reset the
                // connection under the answer.
                let mut req = Vec::new();
                let mut buf = [0u8; 512];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    req.extend_from_slice(&buf[..n]);
                }
                s.write_all(answer.as_bytes()).unwrap();
                s.shutdown(std::net::Shutdown::Write).unwrap();
                // Until the client has read the answer and closed.
                let _ = s.read_to_end(&mut req);
            });
            assert_eq!(healthy(addr, TIMEOUT), want, "{answer:?}");
            server.join().unwrap();
        }
    }

    #[test]
    fn nothing_listening_or_no_answer_is_unhealthy_within_the_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepted by the kernel's backlog, never answered.
        let start = Instant::now();
        assert!(!healthy(addr, Duration::from_millis(300)));
        assert!(start.elapsed() < Duration::from_secs(2));
        drop(listener);
        assert!(!healthy(addr, TIMEOUT));
    }
}
