//! The accept loop and one task per connection.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tower::ServiceExt;

use crate::accept::{MIN_BACKOFF, is_per_connection, next_backoff, what_ran_out};
use crate::clients::{Activity, Clients, InFlight, Refusal, Ticket};
use crate::io::WatchedIo;
use crate::limits::{HttpLimits, MIN_HEADER_BYTES};

/// Refused connections being told why at once, at most; beyond, they are just closed
/// (a flood must not cost a task and a descriptor per refusal).
const MAX_REFUSALS_ANSWERING: usize = 16;
/// How long a refused client is given to read its 503.
const REFUSAL_LINGER: Duration = Duration::from_millis(500);

/// Serves `app` over plain HTTP (HTTP/1.1, and HTTP/2 with prior knowledge) on
/// `listener` within `limits`, until `shutdown` completes; then stops accepting,
/// lets requests in flight finish within [`HttpLimits::shutdown_grace`], and
/// returns. Handlers can extract `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    Server::new(limits).run(listener, app, None, shutdown).await;
}

/// [`serve`] over TLS: `tls` should offer `h2` and `http/1.1` by ALPN. The handshake
/// must complete within the header timeout.
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    tls: Arc<ServerConfig>,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    Server::new(limits)
        .run(listener, app, Some(TlsAcceptor::from(tls)), shutdown)
        .await;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Run,
    /// Close idle connections, finish requests in flight.
    Graceful,
    /// The grace period is over: close everything.
    Now,
}

struct Server {
    limits: Arc<HttpLimits>,
    clients: Arc<Clients>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    answering_refusals: Arc<AtomicUsize>,
}

impl Server {
    fn new(limits: HttpLimits) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_headers(limits.max_headers)
            .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES));
        // No keep-alive pings: they would count as activity and keep idle HTTP/2
        // connections open forever.
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
        Self {
            clients: Arc::new(Clients::new(
                limits.max_connections,
                limits.max_connections_per_client,
            )),
            limits: Arc::new(limits),
            builder: Arc::new(builder),
            answering_refusals: Arc::new(AtomicUsize::new(0)),
        }
    }

    async fn run(
        self,
        listener: TcpListener,
        app: Router,
        tls: Option<TlsAcceptor>,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        let (stop_tx, stop_rx) = watch::channel(Stop::Run);
        tokio::pin!(shutdown);
        let mut backoff = MIN_BACKOFF;
        loop {
            let accepted = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => {
                    backoff = MIN_BACKOFF;
                    a
                }
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    // Accepting again at once would fail again: pause, and say why.
                    metrics::counter!("http_accept_errors_total").increment(1);
                    tracing::warn!(error = %e, pause = ?backoff, "cannot accept HTTP connections: out of {}", what_ran_out(&e));
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = next_backoff(backoff);
                    continue;
                }
            };
            let ticket = match self.clients.admit(peer.ip()) {
                Ok(t) => t,
                Err(refusal) => {
                    self.refuse(tcp, peer, refusal, tls.is_none());
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(connection(
                tcp,
                peer,
                ticket,
                app.clone(),
                self.builder.clone(),
                self.limits.clone(),
                tls.clone(),
                stop_rx.clone(),
            ));
        }
        drop(listener);
        let _ = stop_tx.send(Stop::Graceful);
        if tokio::time::timeout(self.limits.shutdown_grace, self.clients.all_closed())
            .await
            .is_err()
        {
            let open = self.clients.stats().open;
            tracing::info!(
                open,
                "HTTP connections still busy after the shutdown grace period: closing them"
            );
            let _ = stop_tx.send(Stop::Now);
            let _ = tokio::time::timeout(Duration::from_secs(1), self.clients.all_closed()).await;
        }
    }

    /// Closes a connection over the limits; a plain-HTTP client first gets a 503
    /// with the reason.
    fn refuse(&self, mut tcp: TcpStream, peer: SocketAddr, refusal: Refusal, plain: bool) {
        metrics::counter!("http_connections_refused_total", "limit" => refusal.label())
            .increment(1);
        tracing::debug!(%peer, reason = refusal.reason(), "HTTP connection refused");
        if !plain
            || self.answering_refusals.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSALS_ANSWERING
        {
            if plain {
                self.answering_refusals.fetch_sub(1, Ordering::Relaxed);
            }
            return;
        }
        let answering = self.answering_refusals.clone();
        tokio::spawn(async move {
            let reason = refusal.reason();
            let answer = format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 1\r\ncache-control: no-store\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{reason}\n",
                reason.len() + 1
            );
            let _ = tokio::time::timeout(REFUSAL_LINGER, async {
                tcp.write_all(answer.as_bytes()).await?;
                tcp.shutdown().await?;
                // Read what the client sent until it closes: closing with unread bytes
                // would send a reset that can destroy the answer in flight.
                let mut sink = [0u8; 1024];
                while tcp.read(&mut sink).await? > 0 {}
                std::io::Result::Ok(())
            })
            .await;
            answering.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    ticket: Ticket,
    app: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: Arc<HttpLimits>,
    tls: Option<TlsAcceptor>,
    stop: watch::Receiver<Stop>,
) {
    let activity = ticket.activity.clone();
    let io = WatchedIo::new(
        tcp,
        activity.clone(),
        limits.idle_timeout,
        limits.send_timeout,
    );
    match tls {
        None => drive(io, peer, &activity, app, &builder, &limits, stop).await,
        Some(acceptor) => {
            let handshake = tokio::select! {
                h = tokio::time::timeout(limits.header_timeout, acceptor.accept(io)) => h,
                () = activity.evict.notified() => return,
            };
            match handshake {
                Ok(Ok(tls)) => drive(tls, peer, &activity, app, &builder, &limits, stop).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => {
                    metrics::counter!("http_connections_closed_total", "reason" => "tls_handshake_timeout").increment(1);
                    tracing::debug!(%peer, "TLS handshake not complete within the header timeout");
                }
            }
        }
    }
    drop(ticket);
}

async fn drive<IO>(
    io: IO,
    peer: SocketAddr,
    activity: &Arc<Activity>,
    app: Router,
    builder: &auto::Builder<TokioExecutor>,
    limits: &HttpLimits,
    mut stop: watch::Receiver<Stop>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max_body = limits.max_body_bytes;
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request| {
            handle(request, peer, app.clone(), activity.begin(), max_body)
        })
    };
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            () = activity.evict.notified() => {
                tracing::debug!(%peer, "idle HTTP connection closed to make room for a new one");
                return;
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() == Stop::Now {
                    return;
                }
                if !closing {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

async fn handle(
    mut request: Request<Incoming>,
    peer: SocketAddr,
    app: Router,
    in_flight: InFlight,
    max_body: usize,
) -> Result<Response<Body>, Infallible> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body as u64) {
        return Ok(body_too_large(max_body));
    }
    request.extensions_mut().insert(ConnectInfo(peer));
    // A body without a length is cut at the limit: the handler's read fails, and
    // axum's extractors answer 413.
    let request = request.map(|b| Body::new(http_body_util::Limited::new(b, max_body)));
    let response = match app.oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    Ok(response.map(|inner| Body::new(Tracked { inner, in_flight })))
}

fn body_too_large(max_body: usize) -> Response<Body> {
    metrics::counter!("http_requests_refused_total", "limit" => "body").increment(1);
    let mut response = Response::new(Body::from(format!(
        "request body over {max_body} bytes, this server's limit; send a smaller body\n"
    )));
    *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A response body that keeps its request counted as in flight until it is sent
/// (or dropped), so that the idle clock never runs while a response streams.
struct Tracked {
    inner: Body,
    in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let _ = &this.in_flight;
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
