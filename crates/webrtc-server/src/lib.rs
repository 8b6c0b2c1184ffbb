//! Rivulet's WebRTC server: the async shell around the sans-IO [`webrtc`] sessions.
//!
//! - The driver ([`start`]) owns the one UDP socket every session shares: a datagram
//!   goes to the session that accepts it (ICE ufrag, DTLS/SRTP peer), time goes to
//!   all, and each session's datagrams go out of the same socket.
//! - [`router`]: the WHEP resource (`POST /live/NAME/whep`, `PATCH`/`DELETE` on the
//!   session) and, with [`WhipIngest`], the WHIP resource (`POST /whip/KEY` or `POST
//!   /whip` with the key as Bearer token; RFC 9725): an axum `Router` the binary mounts.
//!   A WHIP publisher's key is checked by the ingest's [`access::StreamKeys`] and its
//!   media goes to the [`hub::Hub`] like an RTMP or SRT publish; its Opus is made AAC
//!   on a thread of its own (`transcode::ToAac`, the transcoder's own MP3/Opus → AAC).
//! - The taps: the media of each (stream, rendition) that has viewers, followed on a
//!   dedicated thread (the AAC → Opus transcode is blocking work), converted once
//!   (H.264 to Annex B, AAC to Opus) and shared by `Arc` with every viewer.
//! - [`options`]: the `[webrtc]` table and `--webrtc-…` flags, checked, and the
//!   sockets bound by them (UDP, and TCP on the same port for ICE-TCP).
//!
//! Viewers are reported through [`ViewerReports`], which the binary implements on
//! its analytics emitter (the data path does not depend on the control plane).

mod driver;
pub mod options;
mod tap;
mod whep;
mod whip;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use origin::LiveStreams;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use webrtc::WhepConfig;

pub use options::{WebRtcOptions, WebRtcSettings};
pub use whep::{disabled_router, router};

/// Video RTP packets kept per viewer for NACK resends (and at most 0.5 s of them):
/// datagrams of at most 1200 bytes of payload (str0m's MTU). About 0.2 s of a
/// 2.5 Mbit/s rung: enough for the NACKs of a viewer with a round trip under ~150 ms;
/// a later loss is repaired by a keyframe. `rivulet-bench webrtc`, 200 viewers:
/// 312 KiB a viewer in all with this bound (542 KiB when str0m kept its default 3 s).
pub const SEND_BUFFER_VIDEO: usize = 50;
/// Opus packets kept per viewer (0.5 s of 20 ms packets, a few KB at 96 kbit/s).
pub const SEND_BUFFER_AUDIO: usize = 25;

/// How the server runs.
#[derive(Clone)]
pub struct ServerConfig {
    /// Host candidates: the address(es) of the socket as peers reach it.
    pub candidates: Vec<SocketAddr>,
    /// WebRTC sessions (viewers and publishers) at most in this process; more get 503.
    pub max_sessions: usize,
    /// ICE-TCP connections at most from one client address.
    pub tcp_max_per_ip: usize,
    /// WHIP ingest; `None`: `POST /whip` is answered 503.
    pub whip: Option<WhipIngest>,
}

/// What WHIP publishing needs: where streams go and who may publish.
#[derive(Clone)]
pub struct WhipIngest {
    pub hub: hub::Hub,
    /// The same key check as RTMP and SRT publishers get.
    pub keys: Arc<dyn access::StreamKeys>,
    /// A publisher that sends no media for this long is closed (the RTMP/SRT idle
    /// timeout).
    pub idle_timeout: Duration,
    /// A publisher sending above this for longer than `bitrate_burst` is closed (the
    /// RTMP/SRT cap). `None`: no cap.
    pub max_bitrate: Option<ingest::Bitrate>,
    pub bitrate_burst: Duration,
}

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("the WebRTC socket has no local address: {0}")]
    Socket(std::io::Error),
    #[error("cannot set up WebRTC: {0}")]
    Setup(webrtc::OfferError),
}

/// A playing WebRTC viewer's report (every few seconds while it plays).
#[derive(Clone, Debug)]
pub struct ViewerReport {
    pub stream: String,
    pub rendition: String,
    /// The WHEP session's id.
    pub session: String,
    pub client: Option<IpAddr>,
    /// Bytes sent since the last report.
    pub bytes: u64,
    /// Time since the last report.
    pub interval: Duration,
}

/// Where viewers are reported (the binary's analytics emitter).
pub trait ViewerReports: Send + Sync + 'static {
    /// Whether reports are wanted at all.
    fn is_enabled(&self) -> bool;
    fn report(&self, report: ViewerReport);
}

/// No reports (analytics off).
pub struct NoReports;

impl ViewerReports for NoReports {
    fn is_enabled(&self) -> bool {
        false
    }
    fn report(&self, _: ViewerReport) {}
}

/// The server's state as the HTTP handlers share it with the driver. Cheap to clone.
#[derive(Clone)]
pub struct WebRtc {
    config: Arc<WhepConfig>,
    streams: LiveStreams,
    commands: mpsc::Sender<driver::Command>,
    sessions: Arc<AtomicUsize>,
    max_sessions: usize,
    whip: Option<WhipIngest>,
}

/// Starts the driver on `sockets` (with a TCP listener, sessions also offer passive
/// TCP candidates: ICE-TCP, for networks that block UDP); returns the state for
/// [`router`] and the driver's task, which ends when `stop` completes.
pub fn start(
    sockets: options::Sockets,
    config: &ServerConfig,
    streams: LiveStreams,
    reports: Arc<dyn ViewerReports>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(WebRtc, JoinHandle<()>), StartError> {
    let options::Sockets { udp: socket, tcp } = sockets;
    let bound = socket.local_addr().map_err(StartError::Socket)?;
    let mut whep = WhepConfig::new(config.candidates.clone()).map_err(StartError::Setup)?;
    whep.send_buffer_video = SEND_BUFFER_VIDEO;
    whep.send_buffer_audio = SEND_BUFFER_AUDIO;
    if tcp.is_some() {
        // The same addresses: the listener shares the UDP socket's port.
        whep.tcp_candidates = config.candidates.clone();
    }
    let (commands, rx) = mpsc::channel(64);
    let sessions = Arc::new(AtomicUsize::new(0));
    let tcp_limits = driver::TcpLimits {
        // A peer may try a connection per candidate pair.
        max_total: 2 * config.max_sessions,
        max_per_ip: config.tcp_max_per_ip,
    };
    // The driver runs on a thread of its own (a current-thread runtime with its
    // sockets registered there): every session's datagrams, timers and allocations
    // stay on one thread instead of hopping between the server's workers.
    let udp = socket.into_std().map_err(StartError::Socket)?;
    let tcp = tcp
        .map(|listener| listener.into_std())
        .transpose()
        .map_err(StartError::Socket)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StartError::Socket)?;
    let (socket, tcp) = {
        // Registered with the driver's runtime, not the caller's.
        let _driver_runtime = runtime.enter();
        (
            tokio::net::UdpSocket::from_std(udp).map_err(StartError::Socket)?,
            tcp.map(tokio::net::TcpListener::from_std)
                .transpose()
                .map_err(StartError::Socket)?,
        )
    };
    let driver = driver::Driver::new(
        socket,
        tcp.map(|listener| (listener, tcp_limits)),
        bound,
        config.candidates.clone(),
        streams.clone(),
        sessions.clone(),
        reports,
    );
    let task = tokio::task::spawn_blocking(move || runtime.block_on(driver.run(rx, stop)));
    Ok((
        WebRtc {
            config: Arc::new(whep),
            streams,
            commands,
            sessions,
            max_sessions: config.max_sessions,
            whip: config.whip.clone(),
        },
        task,
    ))
}
