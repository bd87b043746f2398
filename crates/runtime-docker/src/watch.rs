//! A watch of an engine: a bare connection with an `/events` request on it, held until the
//! engine closes it. Nothing read is kept or parsed: whatever the engine answers (its silent
//! event stream, or an error on a connection kept alive) the connection lasts as long as the
//! engine does, and a killed dockerd's kernel closes it at once.
//!
//! Not bollard's event stream: one of those per engine held ~50 KiB of client state, 250 MiB
//! at 5,000 engines (`bench scale`); this is a socket and a 512-byte buffer. TLS engines
//! (`https`) still go through bollard: the bytes would need a TLS session anyway.

use orchestrator_core::{Error, Node, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Daemon events only (a reload, say): next to nothing ever comes.
const REQUEST: &[u8] =
    b"GET /events?filters=%7B%22type%22%3A%5B%22daemon%22%5D%7D HTTP/1.1\r\nHost: docker\r\nUser-Agent: orchestrator\r\n\r\n";

/// Connects to `node`'s engine over TCP or its unix socket and returns when the engine closes
/// the connection (`Ok`), or when it cannot be opened or breaks (`Unreachable`).
pub(crate) async fn hold_open(node: &Node, unix: bool) -> Result<()> {
    let target = node.address.target();
    let broke = |e: std::io::Error| Error::Unreachable { node: node.name.to_string(), message: e.to_string() };
    if unix {
        let stream = tokio::net::UnixStream::connect(target).await.map_err(broke)?;
        until_closed(stream).await.map_err(broke)
    } else {
        let stream = tokio::net::TcpStream::connect(target).await.map_err(broke)?;
        until_closed(stream).await.map_err(broke)
    }
}

async fn until_closed(mut stream: impl AsyncRead + AsyncWrite + Unpin) -> std::io::Result<()> {
    stream.write_all(REQUEST).await?;
    let mut discard = [0u8; 512];
    while stream.read(&mut discard).await? > 0 {}
    Ok(())
}
