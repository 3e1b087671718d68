//! The accept loop the protocol servers share: each connection runs in its own task, and
//! at most `connections_max` run at once; a connection over the limit gets the protocol's
//! busy line and is closed, never queued.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Accept on `listener` until it fails, running `handle` for each connection.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    connections_max: usize,
    protocol: &'static str,
    busy_line: &'static [u8],
    handle: F,
) -> std::io::Result<()>
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(connections_max));
    loop {
        let (mut stream, peer) = listener.accept().await?;
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, protocol, "connection limit reached");
            let _ = stream.write_all(busy_line).await;
            continue;
        };
        // Boxed: a future moved into an async block is stored twice in the task (as the
        // block's capture and again while awaited), and a connection's task lives as
        // long as the client stays connected, idle or not.
        let conn = Box::pin(handle(stream, peer));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, protocol, error = %e, "connection ended");
            }
            drop(permit);
        });
    }
}
