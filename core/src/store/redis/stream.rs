//! The socket under a connection to one server: plain TCP, or TLS over it (rustls). Timeouts
//! are those of the TCP socket under either; the TLS handshake is done at once (`Stream::open`),
//! so that a refused certificate is told apart from a server that is down.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Instant;

use rustls::{ClientConnection, StreamOwned};

use super::conn::NoConnection;
use super::tls::Tls;

pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

pub(super) struct TlsStream {
    s: StreamOwned<ClientConnection, TcpStream>,
    /// Why the server refused the TLS session, once it said so (an alert after the handshake:
    /// a client certificate it wanted and did not get, or did not trust).
    refused: Option<String>,
}

impl TlsStream {
    /// Notes a TLS refusal in `r`'s error, which it passes on.
    fn note<T>(&mut self, r: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &r {
            if let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                self.refused = Some(tls.to_string());
            }
        }
        r
    }
}

impl Stream {
    /// Connects to `host:port` by `deadline`, over TLS if `tls` says so, handshake done.
    pub fn open(host: &str, port: u16, tls: Option<&Tls>, deadline: Instant) -> Result<Stream, NoConnection> {
        let addrs: Vec<SocketAddr> =
            (host, port).to_socket_addrs().map_err(|e| NoConnection::Unresolved(e.to_string()))?.collect();
        let mut failure = NoConnection::Unresolved("no address".into());
        for addr in addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NoConnection::Silent);
            }
            match TcpStream::connect_timeout(&addr, left) {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    return match tls {
                        None => Ok(Stream::Plain(tcp)),
                        Some(tls) => Self::handshake(host, tls, tcp, deadline),
                    };
                }
                Err(e) => failure = NoConnection::of(e.into()),
            }
        }
        Err(failure)
    }

    fn handshake(host: &str, tls: &Tls, tcp: TcpStream, deadline: Instant) -> Result<Stream, NoConnection> {
        let name = tls.server_name(host).map_err(NoConnection::Tls)?;
        let conn = ClientConnection::new(tls.config.clone(), name).map_err(|e| NoConnection::Tls(e.to_string()))?;
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NoConnection::Silent);
            }
            let timeouts = stream.sock.set_read_timeout(Some(left)).and(stream.sock.set_write_timeout(Some(left)));
            if let Err(e) = timeouts.and_then(|()| stream.conn.complete_io(&mut stream.sock).map(|_| ())) {
                return Err(io_failure(e));
            }
        }
        Ok(Stream::Tls(Box::new(TlsStream { s: stream, refused: None })))
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.s.sock,
        }
    }

    /// Why the server refused the TLS session, if it did.
    pub fn tls_refusal(&self) -> Option<NoConnection> {
        match self {
            Stream::Tls(t) => t.refused.clone().map(NoConnection::Tls),
            Stream::Plain(_) => None,
        }
    }

    pub fn set_read_timeout(&self, t: Option<std::time::Duration>) -> std::io::Result<()> {
        self.tcp().set_read_timeout(t)
    }

    pub fn set_write_timeout(&self, t: Option<std::time::Duration>) -> std::io::Result<()> {
        self.tcp().set_write_timeout(t)
    }

    /// Whether the connection still looks usable: the server has not closed it (EOF, a reset or
    /// a TLS close waiting to be read) and sent nothing unasked. Non-blocking, no round trip.
    pub fn alive(&mut self) -> bool {
        let would_block = |r: std::io::Result<usize>| matches!(r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        // A plain socket: one recv(MSG_PEEK | MSG_DONTWAIT) (socket2's safe call; no `unsafe`
        // in the core), rather than switching the socket to non-blocking and back around a
        // peek, which made it three system calls before every call.
        #[cfg(unix)]
        if let Stream::Plain(s) = self {
            let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
            return would_block(socket2::SockRef::from(&*s).recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT));
        }
        if self.tcp().set_nonblocking(true).is_err() {
            return false;
        }
        let alive = match self {
            Stream::Plain(s) => would_block(s.peek(&mut [0u8; 1])),
            // TLS records may wait that are no data (a TLS 1.3 session ticket): take them in,
            // then look for data or a close.
            Stream::Tls(t) => loop {
                let s = &mut t.s;
                match s.conn.read_tls(&mut s.sock) {
                    Ok(0) => break false,
                    Ok(_) if s.conn.process_new_packets().is_err() => break false,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        break would_block(s.conn.reader().read(&mut [0u8; 1]));
                    }
                    Err(_) => break false,
                }
            },
        };
        self.tcp().set_nonblocking(false).is_ok() && alive
    }
}

/// What an I/O failure while connecting means: a refused TLS handshake (the certificates), or
/// the network's.
pub(super) fn io_failure(e: std::io::Error) -> NoConnection {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(tls) => NoConnection::Tls(tls.to_string()),
        None => NoConnection::of(e.into()),
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => {
                let r = t.s.read(buf);
                t.note(r)
            }
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => {
                let r = t.s.write(buf);
                t.note(r)
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => {
                let r = t.s.flush();
                t.note(r)
            }
        }
    }
}
