//! Opening a connection to one Redis node: TCP (or TLS with certificate and host-name
//! verification), then the session handshake (AUTH, SELECT, HELLO, CLIENT SETNAME).
//!
//! The handshake is pipelined in one write: a fresh connection costs one round trip.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use resp::ReplyScanner;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::TlsConnector;

use crate::{ConnectError, RedisUrl};

/// What a new connection must look like once set up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SessionSetup {
    pub db: u32,
    pub resp3: bool,
    /// CLIENT SETNAME after connecting (dedicated connections carry the client's name).
    pub name: Option<Bytes>,
    /// Whose credentials the connection logs in with.
    pub auth: Auth,
}

/// A user's credentials, as a client gave them to the proxy (`AUTH [user] pass`). Never
/// printed: `Debug` shows neither the name nor the password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Login {
    /// None: the default user (`AUTH pass`).
    pub user: Option<Bytes>,
    pub pass: Bytes,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Login(..)")
    }
}

impl Login {
    /// The user's name (`default` for `AUTH pass`).
    pub fn user_name(&self) -> &[u8] {
        self.user.as_deref().unwrap_or(b"default")
    }
}

/// How a connection authenticates after connecting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum Auth {
    /// With the URL's credentials (if it has any).
    #[default]
    Url,
    /// Not at all: the server's default user as it is.
    Anonymous,
    /// As a client's user.
    Login(Arc<Login>),
}

/// Knows how to reach one node: address, TLS settings, credentials.
#[derive(Clone)]
pub struct Connector {
    url: RedisUrl,
    tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
    timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").field("url", &self.url).finish()
    }
}

impl Connector {
    /// `ca_file`: PEM certificates to trust for `rediss://` in addition to the web PKI roots.
    pub fn new(
        url: RedisUrl,
        ca_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, ConnectError> {
        let tls = if url.tls {
            Some(tls_connector(&url, ca_file)?)
        } else {
            None
        };
        Ok(Connector { url, tls, timeout })
    }

    pub fn url(&self) -> &RedisUrl {
        &self.url
    }

    /// A connector for another node of the same deployment (a cluster node named by a slot
    /// map or a redirection): same credentials, TLS roots and timeout; the TLS server name
    /// becomes the node's host, and the db is 0 (a cluster has only db 0).
    pub fn for_node(&self, host: &str, port: u16) -> Result<Connector, ConnectError> {
        let mut url = self.url.clone();
        url.host = host.to_string();
        url.port = port;
        url.db = 0;
        let tls = match &self.tls {
            None => None,
            Some((connector, _)) => {
                let name =
                    rustls::pki_types::ServerName::try_from(url.host.clone()).map_err(|e| {
                        ConnectError::Tls {
                            addr: url.addr(),
                            reason: format!("invalid TLS server name: {e}"),
                        }
                    })?;
                Some((connector.clone(), name))
            }
        };
        Ok(Connector {
            url,
            tls,
            timeout: self.timeout,
        })
    }

    /// `host:port` of the node (never credentials).
    pub fn addr(&self) -> String {
        self.url.addr()
    }

    /// Connects and runs the handshake for `setup`. The URL's db is the default; `setup.db`
    /// overrides it (the proxy passes the client's selected db).
    pub async fn connect(&self, setup: &SessionSetup) -> Result<NodeStream, ConnectError> {
        let addr = self.addr();
        let fut = async {
            let tcp = TcpStream::connect((self.url.host.as_str(), self.url.port))
                .await
                .map_err(|source| ConnectError::Io {
                    addr: addr.clone(),
                    source,
                })?;
            let _ = tcp.set_nodelay(true);
            let mut stream = match &self.tls {
                None => NodeStream::Plain(tcp),
                Some((connector, name)) => {
                    let tls = connector.connect(name.clone(), tcp).await.map_err(|e| {
                        ConnectError::Tls {
                            addr: addr.clone(),
                            reason: e.to_string(),
                        }
                    })?;
                    NodeStream::Tls(Box::new(tls))
                }
            };
            self.handshake(&mut stream, setup).await?;
            Ok(stream)
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::Timeout { addr }),
        }
    }

    async fn handshake(
        &self,
        stream: &mut NodeStream,
        setup: &SessionSetup,
    ) -> Result<(), ConnectError> {
        let mut steps: Vec<(&'static str, Vec<&[u8]>)> = Vec::new();
        match &setup.auth {
            Auth::Url => {
                if let Some(pass) = &self.url.password {
                    match &self.url.username {
                        Some(user) => steps.push(("AUTH", vec![b"AUTH", user, pass])),
                        None => steps.push(("AUTH", vec![b"AUTH", pass])),
                    }
                }
            }
            Auth::Anonymous => {}
            Auth::Login(l) => match &l.user {
                Some(user) => steps.push(("AUTH", vec![b"AUTH", user, &l.pass])),
                None => steps.push(("AUTH", vec![b"AUTH", &l.pass])),
            },
        }
        let db = setup.db.to_string();
        if setup.db != 0 {
            steps.push(("SELECT", vec![b"SELECT", db.as_bytes()]));
        }
        if setup.resp3 {
            steps.push(("HELLO", vec![b"HELLO", b"3"]));
        }
        if let Some(name) = &setup.name {
            steps.push(("CLIENT SETNAME", vec![b"CLIENT", b"SETNAME", name]));
        }
        if steps.is_empty() {
            return Ok(());
        }
        let cmds: Vec<&[&[u8]]> = steps.iter().map(|(_, a)| a.as_slice()).collect();
        let replies = stream
            .request(&cmds)
            .await
            .map_err(|_| ConnectError::BadReply {
                addr: self.addr(),
                step: "handshake",
            })?;
        for ((step, _), reply) in steps.iter().zip(replies.iter()) {
            if reply.first() == Some(&b'-') {
                let text = String::from_utf8_lossy(&reply[1..]).trim_end().to_string();
                return Err(ConnectError::Refused {
                    addr: self.addr(),
                    step,
                    reply: text,
                });
            }
        }
        Ok(())
    }
}

fn tls_connector(
    url: &RedisUrl,
    ca_file: Option<&Path>,
) -> Result<(TlsConnector, rustls::pki_types::ServerName<'static>), ConnectError> {
    let addr = url.addr();
    let tls_err = |reason: String| ConnectError::Tls {
        addr: addr.clone(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| tls_err(format!("reading CA file {}: {e}", path.display())))?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| tls_err(format!("CA file {}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| tls_err(format!("CA file {}: {e}", path.display())))?;
            added += 1;
        }
        if added == 0 {
            return Err(tls_err(format!(
                "CA file {} holds no PEM certificate",
                path.display()
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(url.host.clone())
        .map_err(|e| tls_err(format!("invalid TLS server name: {e}")))?;
    Ok((TlsConnector::from(Arc::new(config)), name))
}

/// A connection to a node, plain or TLS.
pub enum NodeStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl NodeStream {
    /// Sends `cmds` in one write and reads one raw reply per command. For the control plane
    /// (handshakes, INFO, CONFIG GET), not for the data path.
    pub async fn request(&mut self, cmds: &[&[&[u8]]]) -> io::Result<Vec<Bytes>> {
        let mut out = BytesMut::new();
        for args in cmds {
            resp::encode::command(&mut out, args.iter().copied());
        }
        self.request_raw(&out, cmds.len()).await
    }

    /// Sends already-encoded commands and reads `count` raw replies.
    pub async fn request_raw(&mut self, out: &[u8], count: usize) -> io::Result<Vec<Bytes>> {
        self.write_all(out).await?;
        self.flush().await?;
        let mut buf = BytesMut::with_capacity(4096);
        let mut scanner = ReplyScanner::default();
        let mut replies = Vec::with_capacity(count);
        while replies.len() < count {
            match scanner.scan(&buf) {
                Ok(Some(len)) => replies.push(buf.split_to(len).freeze()),
                Ok(None) => {
                    if self.read_buf(&mut buf).await? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
        Ok(replies)
    }
}

impl AsyncRead for NodeStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NodeStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            NodeStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for NodeStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            NodeStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            NodeStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NodeStream::Plain(s) => Pin::new(s).poll_flush(cx),
            NodeStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NodeStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            NodeStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            NodeStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            NodeStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            NodeStream::Plain(s) => s.is_write_vectored(),
            NodeStream::Tls(s) => s.is_write_vectored(),
        }
    }
}
