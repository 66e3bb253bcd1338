//! The accept loop: HTTP/1.1 and h2c on one port, graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::sidecar::Sidecar;

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests
/// finish for up to `grace`.
pub async fn serve(
    listeners: Vec<TcpListener>,
    sidecar: Arc<Sidecar>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::channel(64);
    let acceptors: Vec<_> = listeners
        .into_iter()
        .map(|listener| {
            let tx = accepted_tx.clone();
            tokio::spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((stream, _)) => {
                            if tx.send(stream).await.is_err() {
                                break;
                            }
                        }
                        Err(err) => {
                            tracing::warn!("accepting a connection failed: {err}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            })
        })
        .collect();
    drop(accepted_tx);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            Some(stream) = accepted.recv() => stream,
            () = &mut shutdown => break,
            else => break,
        };
        let _ = stream.set_nodelay(true);
        let sidecar = Arc::clone(&sidecar);
        let service = service_fn(move |request| {
            let sidecar = Arc::clone(&sidecar);
            async move { Ok::<_, Infallible>(super::handle(sidecar, request).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!("connection ended with an error: {err}");
            }
        });
    }
    for acceptor in acceptors {
        acceptor.abort();
    }
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within {grace:?}; closing them");
    }
}
