//! Publishing encoded media over RTMP to one or more ingest servers at once.
//!
//! [`FlvMuxer`] (sans-IO) turns [`Encoded`] output into FLV tag bodies once; the
//! [`Publisher`] fans them out to one task per URL. Each task owns a socket and a
//! [`ClientSession`]. A URL that cannot be reached at start is an error for the
//! caller; a URL that drops later is reconnected with backoff (0.5 s doubling to
//! 10 s) and resumes at the next keyframe, while the others keep going. A URL that
//! falls behind skips to the next keyframe rather than slowing the rest.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use media::amf0::Amf0Value;
use media::flv::{self, AudioPacket, VideoFrameType, VideoPacket};
use media::{CodecConfig, Frame, MediaTime, TrackKind, Tracks, VideoCodec};
use rtmp::{
    ClientConfig, ClientError, ClientEvent, ClientSession, HANDSHAKE_PACKET_LEN, PublishUrl,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig as TlsClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::Encoded;

/// One FLV tag body ready for an RTMP audio/video message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlvPacket {
    pub kind: TrackKind,
    /// RTMP's 32-bit milliseconds (wrapping).
    pub timestamp_ms: u32,
    pub body: Bytes,
    /// A video IDR (or any audio frame): a place a new viewer may start.
    pub keyframe: bool,
    /// A sequence header (avcC / AudioSpecificConfig).
    pub header: bool,
}

/// Converts encoder output to FLV tag bodies. Remembers the latest sequence headers
/// so a reconnecting connection can start with them.
#[derive(Debug, Default)]
pub struct FlvMuxer {
    headers: Vec<FlvPacket>,
    /// The video codec of the current tracks: H.264 goes out as classic FLV (every
    /// server takes it), HEVC and AV1 as Enhanced RTMP.
    video_codec: Option<VideoCodec>,
    metadata: Vec<(String, Amf0Value)>,
}

fn millis(t: MediaTime) -> i64 {
    t.ticks.div_euclid(i64::from(t.timescale.get()).max(1)) * 1000
        + t.ticks.rem_euclid(i64::from(t.timescale.get())) * 1000 / i64::from(t.timescale.get())
}

impl FlvMuxer {
    pub fn push(&mut self, encoded: &Encoded, out: &mut Vec<FlvPacket>) {
        match encoded {
            Encoded::Tracks(tracks) => {
                self.headers = Self::sequence_headers(tracks);
                self.video_codec = tracks.video.as_ref().and_then(|t| t.codec.video_codec());
                self.metadata = Self::metadata_of(tracks);
                out.extend(self.headers.iter().cloned());
            }
            Encoded::Frame(frame) => out.push(self.packet(frame)),
        }
    }

    /// The sequence headers of the current tracks.
    pub fn headers(&self) -> &[FlvPacket] {
        &self.headers
    }

    /// `onMetaData` properties of the current tracks.
    pub fn metadata(&self) -> &[(String, Amf0Value)] {
        &self.metadata
    }

    fn sequence_headers(tracks: &Tracks) -> Vec<FlvPacket> {
        let mut out = Vec::new();
        for track in tracks.iter() {
            let mut body = Vec::new();
            match &track.codec {
                CodecConfig::Avc(avc) => flv::write_video_tag(
                    VideoFrameType::Key,
                    &VideoPacket::AvcSequenceHeader(avc.record.clone()),
                    &mut body,
                ),
                CodecConfig::Hevc(_) | CodecConfig::Av1(_) => {
                    let (Some(codec), Some(record)) =
                        (track.codec.video_codec(), track.codec.record())
                    else {
                        continue;
                    };
                    flv::write_ex_video_tag(
                        VideoFrameType::Key,
                        codec,
                        &VideoPacket::SequenceStart {
                            codec,
                            record: record.clone(),
                        },
                        &mut body,
                    )
                }
                CodecConfig::Aac(aac) => flv::write_audio_tag(
                    &AudioPacket::AacSequenceHeader(aac.asc.clone()),
                    &mut body,
                ),
                // MP3 has no sequence header (and our encoder makes AAC); Opus has no
                // FLV form (the transcoder makes AAC of it).
                CodecConfig::Mp3(_) | CodecConfig::Opus(_) => continue,
            }
            out.push(FlvPacket {
                kind: track.kind,
                timestamp_ms: 0,
                body: Bytes::from(body),
                keyframe: true,
                header: true,
            });
        }
        out
    }

    fn metadata_of(tracks: &Tracks) -> Vec<(String, Amf0Value)> {
        let mut m = Vec::new();
        if let Some(video) = tracks.video.as_ref().map(|t| &t.codec)
            && let (Some((width, height)), Some(codec)) = (video.video_size(), video.video_codec())
        {
            m.push(("width".to_owned(), Amf0Value::Number(f64::from(width))));
            m.push(("height".to_owned(), Amf0Value::Number(f64::from(height))));
            // Enhanced RTMP: a FourCC's number in place of the FLV codec id.
            let id = match codec {
                VideoCodec::Avc => 7.0,
                _ => f64::from(u32::from_be_bytes(codec.fourcc())),
            };
            m.push(("videocodecid".to_owned(), Amf0Value::Number(id)));
            // What OBS sends too; an AV1 sequence header carries no rate of its own.
            if let Some((n, d)) = video.frame_rate().filter(|(n, d)| *n > 0 && *d > 0) {
                let fps = f64::from(n) / f64::from(d);
                m.push(("framerate".to_owned(), Amf0Value::Number(fps)));
            }
        }
        if let Some(CodecConfig::Aac(aac)) = tracks.audio.as_ref().map(|t| &t.codec) {
            m.push(("audiocodecid".to_owned(), Amf0Value::Number(10.0)));
            m.push((
                "audiosamplerate".to_owned(),
                Amf0Value::Number(f64::from(aac.sample_rate)),
            ));
            m.push((
                "audiochannels".to_owned(),
                Amf0Value::Number(f64::from(aac.channels)),
            ));
        }
        m.push((
            "encoder".to_owned(),
            Amf0Value::String("Rivulet".to_owned()),
        ));
        m
    }

    fn packet(&self, frame: &Frame) -> FlvPacket {
        let dts_ms = millis(frame.dts);
        let mut body = Vec::with_capacity(frame.data.len() + 5);
        match frame.kind {
            TrackKind::Video => {
                let cts = (millis(frame.pts) - dts_ms).clamp(-(1 << 23), (1 << 23) - 1) as i32;
                let frame_type = if frame.keyframe {
                    VideoFrameType::Key
                } else {
                    VideoFrameType::Inter
                };
                match self.video_codec {
                    Some(codec @ (VideoCodec::Hevc | VideoCodec::Av1)) => flv::write_ex_video_tag(
                        frame_type,
                        codec,
                        &VideoPacket::CodedFrames {
                            codec,
                            composition_time_ms: cts,
                            data: frame.data.clone(),
                        },
                        &mut body,
                    ),
                    _ => flv::write_video_tag(
                        frame_type,
                        &VideoPacket::AvcNalus {
                            composition_time_ms: cts,
                            data: frame.data.clone(),
                        },
                        &mut body,
                    ),
                }
            }
            TrackKind::Audio => {
                flv::write_audio_tag(&AudioPacket::AacRaw(frame.data.clone()), &mut body)
            }
        }
        FlvPacket {
            kind: frame.kind,
            // RTMP timestamps are 32-bit milliseconds that wrap (after 49.7 days).
            timestamp_ms: dts_ms.rem_euclid(1 << 32) as u32,
            body: Bytes::from(body),
            keyframe: frame.keyframe,
            header: false,
        }
    }
}

/// Why publishing failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    #[error("{url}: cannot resolve the host: {reason}")]
    Resolve { url: String, reason: String },
    #[error("{url}: cannot connect: {reason}")]
    Connect { url: String, reason: String },
    /// The TLS handshake of an `rtmps://` URL failed (untrusted or wrong certificate,
    /// or not a TLS server).
    #[error("{url}: TLS: {reason}")]
    Tls { url: String, reason: String },
    #[error("{url}: {source}")]
    Rtmp {
        url: String,
        #[source]
        source: ClientError,
    },
    #[error("{url}: connection lost: {reason}")]
    Lost { url: String, reason: String },
}

/// Where one URL stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UrlState {
    Connecting,
    Publishing,
    /// Lost; trying again.
    Retrying {
        error: String,
    },
    Stopped,
}

/// Live figures of one URL (shared with the status line).
#[derive(Debug)]
pub struct UrlStatus {
    pub url: PublishUrl,
    state: Mutex<UrlState>,
    bytes_sent: AtomicU64,
    dropped_frames: AtomicU64,
    reconnects: AtomicU64,
}

impl UrlStatus {
    fn new(url: PublishUrl) -> Self {
        Self {
            url,
            state: Mutex::new(UrlState::Connecting),
            bytes_sent: AtomicU64::new(0),
            dropped_frames: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        }
    }

    pub fn state(&self) -> UrlState {
        self.state.lock().map_or(UrlState::Stopped, |s| s.clone())
    }

    fn set(&self, state: UrlState) {
        if let Ok(mut s) = self.state.lock() {
            *s = state;
        }
    }

    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent.load(Ordering::Relaxed)
    }

    /// Frames this URL skipped because it fell behind or was reconnecting.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped_frames.load(Ordering::Relaxed)
    }

    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }
}

/// Settings of a [`Publisher`].
#[derive(Clone, Debug)]
pub struct PublishConfig {
    pub client: ClientConfig,
    /// Whom `rtmps://` URLs trust; `None`: the web's public authorities.
    pub tls: Option<Arc<TlsClientConfig>>,
    pub connect_timeout: Duration,
    pub max_backoff: Duration,
    /// Packets a URL may fall behind before it skips to the next keyframe.
    pub queue_packets: usize,
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            client: ClientConfig::default(),
            tls: None,
            connect_timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(10),
            queue_packets: 2048,
        }
    }
}

/// What every connection needs to (re)start: the current headers and metadata.
#[derive(Clone, Debug, Default)]
struct StreamStart {
    headers: Vec<FlvPacket>,
    metadata: Vec<(String, Amf0Value)>,
}

/// Sends the same packets to every URL.
pub struct Publisher {
    muxer: FlvMuxer,
    packets: broadcast::Sender<Arc<FlvPacket>>,
    start: watch::Sender<StreamStart>,
    stop: watch::Sender<bool>,
    statuses: Vec<Arc<UrlStatus>>,
    tasks: Vec<JoinHandle<()>>,
    scratch: Vec<FlvPacket>,
}

impl Publisher {
    /// Connects to every URL and starts publishing. Fails (closing the others) if any
    /// URL cannot be reached or refuses the publish: at start, that is a mistake in
    /// the URL or key that retrying will not fix.
    pub async fn connect(
        urls: Vec<PublishUrl>,
        config: PublishConfig,
    ) -> Result<Self, PublishError> {
        let (packets, _) = broadcast::channel(config.queue_packets.max(16));
        let (start, _) = watch::channel(StreamStart::default());
        let (stop, _) = watch::channel(false);
        let mut statuses = Vec::new();
        let mut tasks = Vec::new();
        let mut firsts = Vec::new();
        for url in urls {
            let status = Arc::new(UrlStatus::new(url));
            let (first_tx, first_rx) = oneshot::channel();
            tasks.push(tokio::spawn(run_url(
                status.clone(),
                config.clone(),
                packets.clone(),
                start.subscribe(),
                stop.subscribe(),
                first_tx,
            )));
            statuses.push(status);
            firsts.push(first_rx);
        }
        let publisher = Self {
            muxer: FlvMuxer::default(),
            packets,
            start,
            stop,
            statuses,
            tasks,
            scratch: Vec::new(),
        };
        for first in firsts {
            let outcome = first.await.unwrap_or_else(|_| {
                Err(PublishError::Lost {
                    url: String::new(),
                    reason: "connection task ended".into(),
                })
            });
            if let Err(e) = outcome {
                publisher.abort();
                return Err(e);
            }
        }
        Ok(publisher)
    }

    /// Queues encoder output for every URL. Never waits for the network.
    pub fn send(&mut self, encoded: &Encoded) {
        self.muxer.push(encoded, &mut self.scratch);
        if matches!(encoded, Encoded::Tracks(_)) {
            let start = StreamStart {
                headers: self.muxer.headers().to_vec(),
                metadata: self.muxer.metadata().to_vec(),
            };
            self.start.send_replace(start);
        }
        for packet in self.scratch.drain(..) {
            // No receiver (every URL reconnecting) is fine: they start from `start`.
            let _ = self.packets.send(Arc::new(packet));
        }
    }

    pub fn statuses(&self) -> &[Arc<UrlStatus>] {
        &self.statuses
    }

    /// Ends the publish on every URL politely and waits (bounded) for the goodbyes.
    pub async fn finish(mut self) {
        self.stop.send_replace(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
    }

    fn abort(&self) {
        self.stop.send_replace(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

async fn run_url(
    status: Arc<UrlStatus>,
    config: PublishConfig,
    packets: broadcast::Sender<Arc<FlvPacket>>,
    start: watch::Receiver<StreamStart>,
    mut stop: watch::Receiver<bool>,
    first: oneshot::Sender<Result<(), PublishError>>,
) {
    let mut first = Some(first);
    let mut backoff = Duration::from_millis(500);
    loop {
        status.set(UrlState::Connecting);
        let outcome = match establish(&status.url, &config).await {
            Ok((socket, session)) => {
                // Subscribed before the caller hears we are up, so that not even the
                // first packets it sends (the first keyframe) can be missed.
                let rx = packets.subscribe();
                if let Some(f) = first.take() {
                    let _ = f.send(Ok(()));
                }
                backoff = Duration::from_millis(500);
                status.set(UrlState::Publishing);
                tracing::info!(url = %status.url, "publishing");
                stream_media(socket, session, rx, start.clone(), stop.clone(), &status).await
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => {
                status.set(UrlState::Stopped);
                return;
            }
            Err(e) => {
                if let Some(f) = first.take() {
                    status.set(UrlState::Stopped);
                    let _ = f.send(Err(e));
                    return;
                }
                tracing::warn!(url = %status.url, error = %e, retry_in = ?backoff, "publishing interrupted; reconnecting");
                status.set(UrlState::Retrying {
                    error: e.to_string(),
                });
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stopped(&mut stop) => {
                status.set(UrlState::Stopped);
                return;
            }
        }
        status.reconnects.fetch_add(1, Ordering::Relaxed);
        backoff = (backoff * 2).min(config.max_backoff);
    }
}

/// A connection to an RTMP server: TCP, or TLS over TCP for `rtmps://`.
pub trait RtmpIo: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> RtmpIo for T {}

/// Opens the connection `url` names, within `timeout`: resolves the host, connects
/// over TCP, and for `rtmps://` completes the TLS handshake with `tls` (the server's
/// certificate checked against the URL's host; `None`: trusting the web's public
/// authorities). What is sent inside is the caller's: anything that sends RTMP out
/// (the publisher, restreaming) opens its connections here.
pub async fn open_connection(
    url: &PublishUrl,
    tls: Option<&Arc<TlsClientConfig>>,
    timeout: Duration,
) -> Result<Box<dyn RtmpIo>, PublishError> {
    let shown = url.to_string();
    let open = async {
        let socket = connect_tcp(url, &shown).await?;
        let _ = socket.set_nodelay(true);
        if !url.tls {
            return Ok(Box::new(socket) as Box<dyn RtmpIo>);
        }
        let tls_err = |reason: String| PublishError::Tls {
            url: shown.clone(),
            reason,
        };
        let config = match tls {
            Some(c) => c.clone(),
            None => tls::client_config(&tls::ClientTrust::WebRoots)
                .map_err(|e| tls_err(e.to_string()))?,
        };
        let name = ServerName::try_from(url.host.clone())
            .map_err(|e| tls_err(format!("'{}' is not a host name: {e}", url.host)))?;
        let stream = TlsConnector::from(config)
            .connect(name, socket)
            .await
            .map_err(|e| tls_err(format!("handshake failed: {e}")))?;
        Ok(Box::new(stream) as Box<dyn RtmpIo>)
    };
    tokio::time::timeout(timeout, open)
        .await
        .map_err(|_| PublishError::Connect {
            url: shown.clone(),
            reason: format!("no answer within {timeout:?}"),
        })?
}

async fn connect_tcp(url: &PublishUrl, shown: &str) -> Result<TcpStream, PublishError> {
    let addrs: Vec<_> = tokio::net::lookup_host((url.host.as_str(), url.port))
        .await
        .map_err(|e| PublishError::Resolve {
            url: shown.to_owned(),
            reason: e.to_string(),
        })?
        .collect();
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e.to_string()),
        }
    }
    Err(PublishError::Connect {
        url: shown.to_owned(),
        reason: last.unwrap_or_else(|| "the host has no address".into()),
    })
}

/// Connect (TCP, TLS), handshake, connect, createStream, publish.
async fn establish(
    url: &PublishUrl,
    config: &PublishConfig,
) -> Result<(Box<dyn RtmpIo>, ClientSession), PublishError> {
    let shown = url.to_string();
    let mut socket = open_connection(url, config.tls.as_ref(), config.connect_timeout).await?;
    let mut random = [0u8; HANDSHAKE_PACKET_LEN];
    rand::fill(&mut random[..]);
    let mut session =
        ClientSession::new(config.client.clone(), url.clone(), Instant::now(), random);
    let rtmp_err = |source| PublishError::Rtmp {
        url: shown.clone(),
        source,
    };
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if session.poll_transmit(&mut out) {
            socket
                .write_all(&out)
                .await
                .map_err(|e| PublishError::Lost {
                    url: shown.clone(),
                    reason: e.to_string(),
                })?;
            out.clear();
        }
        while let Some(event) = session.poll_event() {
            if event == ClientEvent::Publishing {
                return Ok((socket, session));
            }
        }
        let deadline = session.poll_timeout().unwrap_or_else(Instant::now);
        tokio::select! {
            read = socket.read(&mut buf) => match read {
                Ok(0) => return Err(PublishError::Lost {
                    url: shown,
                    reason: "the server closed the connection during set-up (is this an RTMP server, and the right application?)".into(),
                }),
                Ok(n) => session.handle_input(&buf[..n]).map_err(rtmp_err)?,
                Err(e) => return Err(PublishError::Lost { url: shown, reason: e.to_string() }),
            },
            () = tokio::time::sleep_until(deadline.into()) => {
                session.handle_timeout(Instant::now());
                if let Some(e) = session.error() {
                    return Err(rtmp_err(e.clone()));
                }
            }
        }
    }
}

async fn stream_media(
    mut socket: Box<dyn RtmpIo>,
    mut session: ClientSession,
    mut packets: broadcast::Receiver<Arc<FlvPacket>>,
    start: watch::Receiver<StreamStart>,
    mut stop: watch::Receiver<bool>,
    status: &UrlStatus,
) -> Result<(), PublishError> {
    let shown = status.url.to_string();
    let lost = |reason: String| PublishError::Lost {
        url: shown.clone(),
        reason,
    };
    let initial = start.borrow().clone();
    let mut metadata_sent = initial.metadata.clone();
    session.send_metadata(initial.metadata);
    let has_video = initial.headers.iter().any(|h| h.kind == TrackKind::Video);
    for h in &initial.headers {
        send_packet(&mut session, h);
    }
    // Media starts at a keyframe, audio with it, so the server's first segment decodes.
    let mut waiting_for_keyframe = has_video;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if session.poll_transmit(&mut out) {
            socket
                .write_all(&out)
                .await
                .map_err(|e| lost(e.to_string()))?;
            status
                .bytes_sent
                .fetch_add(out.len() as u64, Ordering::Relaxed);
            out.clear();
        }
        tokio::select! {
            packet = packets.recv() => match packet {
                Ok(p) => {
                    if p.header {
                        // New tracks (the first ones, when this connection came up
                        // before the encoder's output): their onMetaData goes first.
                        let metadata = start.borrow().metadata.clone();
                        if metadata != metadata_sent {
                            session.send_metadata(metadata.clone());
                            metadata_sent = metadata;
                        }
                        send_packet(&mut session, &p);
                        waiting_for_keyframe |= p.kind == TrackKind::Video;
                        continue;
                    }
                    if waiting_for_keyframe {
                        if p.kind == TrackKind::Video && p.keyframe {
                            waiting_for_keyframe = false;
                        } else {
                            continue;
                        }
                    }
                    send_packet(&mut session, &p);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    status.dropped_frames.fetch_add(n, Ordering::Relaxed);
                    waiting_for_keyframe = has_video;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    session.finish();
                    let _ = session.poll_transmit(&mut out);
                    let _ = socket.write_all(&out).await;
                    return Ok(());
                }
            },
            read = socket.read(&mut buf) => match read {
                Ok(0) => return Err(lost("the server closed the connection".into())),
                Ok(n) => session.handle_input(&buf[..n]).map_err(|e| PublishError::Rtmp { url: shown.clone(), source: e })?,
                Err(e) => return Err(lost(e.to_string())),
            },
            () = stopped(&mut stop) => {
                session.finish();
                let _ = session.poll_transmit(&mut out);
                let _ = socket.write_all(&out).await;
                let _ = socket.shutdown().await;
                return Ok(());
            }
        }
    }
}

/// Completes once the stop flag is set (the watch guard never lives across an await).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn send_packet(session: &mut ClientSession, p: &FlvPacket) {
    match p.kind {
        TrackKind::Video => session.send_video(p.timestamp_ms, p.body.clone()),
        TrackKind::Audio => session.send_audio(p.timestamp_ms, p.body.clone()),
    }
}
