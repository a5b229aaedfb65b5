//! The client side of the control socket, used by `cargo-blargh agent ctl`.

use std::io;
use std::path::Path;

use blargh_proto::control::{Reply, Request, encode_line};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Sends `req` (followed by `body` for a receive) and returns the agent's reply.
pub async fn request(
    socket: &Path,
    req: &Request,
    body: Option<&mut (dyn AsyncRead + Unpin + Send)>,
) -> io::Result<Reply> {
    let stream = UnixStream::connect(socket).await.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot reach the agent at {}: {e}. Is it running, and is this the app's root? \
                 (start it with `cargo-blargh agent run`, or check its service)",
                socket.display()
            ),
        )
    })?;
    let (read, mut write) = stream.into_split();
    write.write_all(encode_line(req).as_bytes()).await?;
    if let Some(body) = body {
        // The agent answers early (and stops reading) when it refuses the upload; its reply
        // explains more than the broken pipe would.
        let _ = tokio::io::copy(body, &mut write).await;
    }
    let _ = write.shutdown().await;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the agent closed the connection without answering (see its log)",
        ));
    }
    serde_json::from_str(line.trim_end()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the agent's answer is not understood ({e}); are the CLI and agent versions the same?"),
        )
    })
}
