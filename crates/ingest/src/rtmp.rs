//! The tokio RTMP server: the only code that touches the socket. One task per
//! connection drives a sans-IO [`ServerSession`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hub::{Hub, HubError, Publisher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::assemble::{Assembled, StreamAssembler};
use access::{PublishRequest, StreamKeys, redact};
use rtmp::{HANDSHAKE_PACKET_LEN, ServerSession, SessionConfig, SessionEvent};

/// Settings of the RTMP listener.
#[derive(Clone, Debug, Default)]
pub struct RtmpConfig {
    pub session: SessionConfig,
}

/// Accepts RTMP connections on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    keys: Arc<dyn StreamKeys>,
    config: RtmpConfig,
    shutdown: impl Future<Output = ()>,
) {
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    metrics::counter!("rtmp_connections_total").increment(1);
                    let (hub, keys, config) = (hub.clone(), keys.clone(), config.clone());
                    connections.spawn(async move {
                        let _ = socket.set_nodelay(true);
                        Connection::new(peer, hub, keys, config).run(socket).await;
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the others.
                    tracing::warn!(error = %e, "cannot accept an RTMP connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
}

struct Connection {
    peer: SocketAddr,
    hub: Hub,
    keys: Arc<dyn StreamKeys>,
    session: ServerSession,
    assembler: StreamAssembler,
    publisher: Option<Publisher>,
    /// The redacted key and stream name, once known (for logs).
    key: Option<String>,
    stream: Option<String>,
}

impl Connection {
    fn new(peer: SocketAddr, hub: Hub, keys: Arc<dyn StreamKeys>, config: RtmpConfig) -> Self {
        let mut random = [0u8; HANDSHAKE_PACKET_LEN];
        rand::fill(&mut random[..]);
        let epoch_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u32);
        Self {
            session: ServerSession::new(config.session, Instant::now(), random, epoch_ms),
            peer,
            hub,
            keys,
            assembler: StreamAssembler::new(),
            publisher: None,
            key: None,
            stream: None,
        }
    }

    async fn run(mut self, mut socket: TcpStream) {
        let mut buf = vec![0u8; 64 * 1024];
        let mut out = Vec::with_capacity(8 * 1024);
        loop {
            if self.session.poll_transmit(&mut out) {
                if let Err(e) = socket.write_all(&out).await {
                    tracing::debug!(peer = %self.peer, error = %e, "write failed");
                    break;
                }
                out.clear();
            }
            if self.session.is_closing() {
                break;
            }
            let deadline = self
                .session
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                read = socket.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        metrics::counter!("ingest_bytes_total").increment(n as u64);
                        if let Err(e) = self.session.handle_input(Instant::now(), &buf[..n]) {
                            tracing::warn!(peer = %self.peer, key = self.key.as_deref().unwrap_or("-"), error = %e, "RTMP session failed; closing the connection");
                        }
                    }
                },
                () = sleep_until(deadline) => {
                    self.session.handle_timeout(Instant::now());
                    if let Some(e) = self.session.error() {
                        tracing::info!(peer = %self.peer, error = %e, "closing RTMP connection");
                    }
                }
            }
            if !self.handle_events().await {
                break;
            }
        }
        // Flush a final status (a refusal) before closing.
        if self.session.poll_transmit(&mut out) {
            let _ = socket.write_all(&out).await;
        }
        let _ = socket.shutdown().await;
        if let Some(stream) = &self.stream
            && self.publisher.take().is_some()
        {
            metrics::gauge!("rtmp_active_publishers").decrement(1.0);
            tracing::info!(peer = %self.peer, stream, "publisher disconnected");
        }
    }

    /// Handles what the session reported; `false` ends the connection.
    async fn handle_events(&mut self) -> bool {
        let mut produced = Vec::new();
        while let Some(event) = self.session.poll_event() {
            let result = match event {
                SessionEvent::Connected { app, .. } => {
                    tracing::debug!(peer = %self.peer, app, "RTMP connect");
                    Ok(())
                }
                SessionEvent::PublishRequested {
                    app, stream_key, ..
                } => {
                    self.authorize(app, stream_key).await;
                    Ok(())
                }
                SessionEvent::Metadata(meta) => {
                    self.assembler.handle_metadata(&meta);
                    Ok(())
                }
                SessionEvent::Video { timestamp_ms, body } => {
                    self.assembler
                        .handle_video(timestamp_ms, body, &mut produced)
                }
                SessionEvent::Audio { timestamp_ms, body } => {
                    self.assembler
                        .handle_audio(timestamp_ms, body, &mut produced)
                }
                SessionEvent::Unpublished => {
                    if self.publisher.take().is_some() {
                        metrics::gauge!("rtmp_active_publishers").decrement(1.0);
                        tracing::info!(peer = %self.peer, stream = self.stream.as_deref().unwrap_or("-"), "publisher stopped");
                    }
                    Ok(())
                }
            };
            if let Err(e) = result {
                tracing::warn!(peer = %self.peer, key = self.key.as_deref().unwrap_or("-"), error = %e, "refusing the publisher's media; closing");
                metrics::counter!("rtmp_publish_rejected_total", "reason" => "codec").increment(1);
                return false;
            }
            if let Some(publisher) = &self.publisher {
                for item in produced.drain(..) {
                    match item {
                        Assembled::Tracks(tracks) => publisher.send_tracks(tracks),
                        Assembled::Frame(frame) => publisher.send_frame(frame),
                    }
                }
            }
            produced.clear();
        }
        true
    }

    async fn authorize(&mut self, app: String, stream_key: String) {
        let redacted = redact(&stream_key);
        self.key = Some(redacted.clone());
        let request = PublishRequest {
            app,
            stream_key,
            peer: self.peer,
        };
        let name = match self.keys.authorize(&request).await {
            Ok(name) => name,
            Err(rejection) => {
                tracing::warn!(peer = %self.peer, key = %redacted, reason = %rejection, "publish refused");
                metrics::counter!("rtmp_publish_rejected_total", "reason" => "key").increment(1);
                self.session
                    .reject_publish("NetStream.Publish.BadName", &rejection.to_string());
                return;
            }
        };
        match self.hub.publish(&name, self.peer.to_string()) {
            Ok(publisher) => {
                tracing::info!(peer = %self.peer, stream = %name, "publishing");
                metrics::gauge!("rtmp_active_publishers").increment(1.0);
                self.session.accept_publish();
                self.publisher = Some(publisher);
                self.stream = Some(name);
            }
            Err(HubError::AlreadyPublishing(_)) | Err(_) => {
                tracing::warn!(peer = %self.peer, key = %redacted, stream = %name, "publish refused: the stream already has a live publisher");
                metrics::counter!("rtmp_publish_rejected_total", "reason" => "busy").increment(1);
                self.session.reject_publish(
                    "NetStream.Publish.BadName",
                    &format!(
                        "stream '{name}' already has a live publisher; stop the other encoder first"
                    ),
                );
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
