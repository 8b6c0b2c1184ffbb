//! The publishing side of an RTMP connection, as a sans-IO state machine: what our
//! encoder speaks to an ingest server (ours, nginx-rtmp, a commercial one).
//!
//! Call order mirrors [`crate::ServerSession`]: feed received bytes to
//! [`ClientSession::handle_input`], drain [`ClientSession::poll_transmit`] to the
//! socket and [`ClientSession::poll_event`] for progress; call
//! [`ClientSession::handle_timeout`] at [`ClientSession::poll_timeout`]. Once
//! [`ClientEvent::Publishing`] arrives, media goes in with
//! [`ClientSession::send_video`] / [`ClientSession::send_audio`].

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use media::amf0::{self, Amf0Value, Limits};

use crate::chunk::{ChunkDecoder, ChunkEncoder, ChunkLimits, Message};
use crate::handshake::{self, PACKET_LEN, RTMP_VERSION};
use crate::message::*;

/// Chunk streams for our media; any ids above the command stream work, these are the
/// ones ffmpeg and OBS use, which keeps captures comparable.
const AUDIO_CSID: u32 = 4;
const VIDEO_CSID: u32 = 6;
const DATA_CSID: u32 = 5;

const TXN_CONNECT: f64 = 1.0;
const TXN_CREATE_STREAM: f64 = 4.0;
const TXN_PUBLISH: f64 = 5.0;

/// `rtmp://host[:port]/app/stream_key` (or `rtmps://`), split into what the protocol
/// sends.
#[derive(Clone, PartialEq, Eq)]
pub struct PublishUrl {
    /// `rtmps://`: the connection is TLS (the caller's job), RTMP inside it.
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The application: every path segment but the last (`live`).
    pub app: String,
    /// The last path segment (with any query string, which some servers read).
    pub stream_key: String,
}

impl PublishUrl {
    /// Parses an RTMP publish URL; the error says what is missing.
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let bad = |why: &str| ClientError::BadUrl {
            url: redact_url(url),
            why: why.to_owned(),
        };
        let (tls, rest) = match (url.strip_prefix("rtmp://"), url.strip_prefix("rtmps://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return Err(bad("only rtmp:// and rtmps:// URLs are supported")),
        };
        // RTMPS has no port of its own: services listen on HTTPS's.
        let default_port = if tls { 443 } else { 1935 };
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("expected rtmp://HOST[:PORT]/APP/STREAM_KEY"))?;
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| bad(&format!("'{p}' is not a port number")))?;
                (h, port)
            }
            _ => (authority, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("the host is missing"));
        }
        let (app, stream_key) = path
            .rsplit_once('/')
            .ok_or_else(|| bad("expected rtmp://HOST[:PORT]/APP/STREAM_KEY (no stream key)"))?;
        if app.is_empty() {
            return Err(bad("the application (e.g. 'live') is missing"));
        }
        if stream_key.is_empty() {
            return Err(bad("the stream key is missing"));
        }
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
            app: app.to_owned(),
            stream_key: stream_key.to_owned(),
        })
    }

    /// The URL without the stream key, as `connect` sends it and logs may show it.
    pub fn tc_url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let scheme = if self.tls { "rtmps" } else { "rtmp" };
        format!("{scheme}://{}:{}/{}", host, self.port, self.app)
    }
}

/// Shows the URL with the key hidden: keys are secrets.
impl fmt::Display for PublishUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.stream_key.chars().take(3).collect();
        write!(f, "{}/{}…", self.tc_url(), shown)
    }
}

impl fmt::Debug for PublishUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn redact_url(url: &str) -> String {
    match url.rsplit_once('/') {
        Some((head, key)) if head.contains("://") && head.len() > "rtmp://".len() => {
            let shown: String = key.chars().take(3).collect();
            format!("{head}/{shown}…")
        }
        _ => url.to_owned(),
    }
}

/// Settings of a publishing session.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Handshake, connect and publish must all complete within this.
    pub setup_timeout: Duration,
    /// Our outgoing chunk size (large: media messages go out in few chunks).
    pub chunk_size: u32,
    pub chunk_limits: ChunkLimits,
    pub amf_limits: Limits,
    /// What `connect` says we are.
    pub flash_ver: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            setup_timeout: Duration::from_secs(10),
            chunk_size: 60_000,
            chunk_limits: ChunkLimits::default(),
            amf_limits: Limits::default(),
            flash_ver: "FMLE/3.0 (compatible; Rivulet)".to_owned(),
        }
    }
}

/// Progress of the session.
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub enum ClientEvent {
    /// The server accepted `connect`.
    Connected,
    /// The server accepted `publish`: media may flow.
    Publishing,
}

/// Why a publishing session failed. After a failure the session keeps returning it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("bad RTMP URL {url}: {why}")]
    BadUrl { url: String, why: String },
    /// The server said no (wrong key, wrong application, stream busy).
    #[error("the server refused to {action}: {code}{}", if description.is_empty() { String::new() } else { format!(" ({description})") })]
    Refused {
        action: &'static str,
        code: String,
        description: String,
    },
    #[error("the server sent something that is not RTMP: {0}")]
    Malformed(String),
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("the server stopped the stream: {0}")]
    Stopped(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// C0+C1 sent, waiting for S0+S1+S2.
    Handshake,
    /// `connect` sent.
    Connecting,
    /// `createStream` sent.
    CreatingStream,
    /// `publish` sent.
    PublishRequested {
        stream_id: u32,
    },
    Publishing {
        stream_id: u32,
    },
}

/// The client side of one RTMP publishing connection.
pub struct ClientSession {
    config: ClientConfig,
    url: PublishUrl,
    state: State,
    input: BytesMut,
    output: Vec<u8>,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    events: VecDeque<ClientEvent>,
    setup_deadline: Instant,
    bytes_in: u64,
    acked: u64,
    peer_window: u32,
    failed: Option<ClientError>,
}

impl ClientSession {
    /// Starts the handshake; `random` fills C1's random bytes.
    pub fn new(
        config: ClientConfig,
        url: PublishUrl,
        now: Instant,
        random: [u8; PACKET_LEN],
    ) -> Self {
        let mut output = Vec::with_capacity(1 + PACKET_LEN);
        handshake::client_hello(&random, 0, &mut output);
        Self {
            decoder: ChunkDecoder::new(config.chunk_limits.clone()),
            encoder: ChunkEncoder::default(),
            setup_deadline: now + config.setup_timeout,
            config,
            url,
            state: State::Handshake,
            input: BytesMut::new(),
            output,
            events: VecDeque::new(),
            bytes_in: 0,
            acked: 0,
            peer_window: 2_500_000,
            failed: None,
        }
    }

    pub fn url(&self) -> &PublishUrl {
        &self.url
    }

    /// Feeds bytes received from the server.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), ClientError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.bytes_in += data.len() as u64;
        self.input.extend_from_slice(data);
        let result = self.process();
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    /// Call when `poll_timeout` has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.failed.is_none() && !self.is_publishing() && now >= self.setup_deadline {
            self.failed = Some(ClientError::Timeout(match self.state {
                State::Handshake => "no RTMP handshake answer (is this an RTMP server?)",
                State::Connecting => "no answer to connect",
                State::CreatingStream => "no answer to createStream",
                _ => "no answer to publish",
            }));
        }
    }

    /// When `handle_timeout` should be called next (only while setting up).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.failed.is_none() && !self.is_publishing()).then_some(self.setup_deadline)
    }

    /// Appends bytes to send to `out`; returns whether there were any.
    #[must_use]
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        if self.output.is_empty() {
            return false;
        }
        out.append(&mut self.output);
        true
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    pub fn error(&self) -> Option<&ClientError> {
        self.failed.as_ref()
    }

    pub fn is_publishing(&self) -> bool {
        matches!(self.state, State::Publishing { .. })
    }

    /// `@setDataFrame onMetaData` with the given properties.
    pub fn send_metadata(&mut self, properties: Vec<(String, Amf0Value)>) {
        let Some(stream_id) = self.publishing_stream() else {
            return;
        };
        let mut payload = Vec::new();
        amf0::encode(&Amf0Value::String("@setDataFrame".into()), &mut payload);
        amf0::encode(&Amf0Value::String("onMetaData".into()), &mut payload);
        amf0::encode(&Amf0Value::EcmaArray(properties), &mut payload);
        self.send(Message {
            chunk_stream_id: DATA_CSID,
            timestamp: 0,
            type_id: DATA_AMF0,
            stream_id,
            payload: Bytes::from(payload),
        });
    }

    /// An FLV video tag body at `timestamp_ms` (RTMP's wrapping 32-bit milliseconds).
    pub fn send_video(&mut self, timestamp_ms: u32, body: Bytes) {
        self.send_media(VIDEO, VIDEO_CSID, timestamp_ms, body);
    }

    /// An FLV audio tag body.
    pub fn send_audio(&mut self, timestamp_ms: u32, body: Bytes) {
        self.send_media(AUDIO, AUDIO_CSID, timestamp_ms, body);
    }

    /// Ends the publish politely (`FCUnpublish`, `deleteStream`).
    pub fn finish(&mut self) {
        if let Some(stream_id) = self.publishing_stream() {
            let key = Amf0Value::String(self.url.stream_key.clone());
            self.send(command(
                0,
                &[
                    Amf0Value::String("FCUnpublish".into()),
                    Amf0Value::Number(6.0),
                    Amf0Value::Null,
                    key,
                ],
            ));
            self.send(command(
                0,
                &[
                    Amf0Value::String("deleteStream".into()),
                    Amf0Value::Number(7.0),
                    Amf0Value::Null,
                    Amf0Value::Number(f64::from(stream_id)),
                ],
            ));
            self.state = State::Connecting;
        }
    }

    /// Bytes waiting to be sent: the shell uses this to notice a server that does not
    /// keep up.
    pub fn pending_output(&self) -> usize {
        self.output.len()
    }

    fn publishing_stream(&self) -> Option<u32> {
        match self.state {
            State::Publishing { stream_id } if self.failed.is_none() => Some(stream_id),
            _ => None,
        }
    }

    fn send_media(&mut self, type_id: u8, csid: u32, timestamp: u32, payload: Bytes) {
        if let Some(stream_id) = self.publishing_stream() {
            self.send(Message {
                chunk_stream_id: csid,
                timestamp,
                type_id,
                stream_id,
                payload,
            });
        }
    }

    fn send(&mut self, msg: Message) {
        self.encoder.encode(&msg, &mut self.output);
    }

    fn process(&mut self) -> Result<(), ClientError> {
        if self.state == State::Handshake {
            // S0 + S1 + S2.
            if let Some(&v) = self.input.first()
                && v != RTMP_VERSION
            {
                return Err(ClientError::Malformed(format!(
                    "handshake version {v}, expected {RTMP_VERSION}"
                )));
            }
            if self.input.len() < 1 + 2 * PACKET_LEN {
                return Ok(());
            }
            let answer = self.input.split_to(1 + 2 * PACKET_LEN);
            // C2 echoes S1 (the simple handshake; servers that sent a digest S1 accept
            // an echo from a client that sent no digest).
            self.output.extend_from_slice(&answer[1..1 + PACKET_LEN]);
            self.send(control(SET_CHUNK_SIZE, u32_payload(self.config.chunk_size)));
            self.encoder.set_chunk_size(self.config.chunk_size);
            self.send(command(
                0,
                &[
                    Amf0Value::String("connect".into()),
                    Amf0Value::Number(TXN_CONNECT),
                    Amf0Value::Object(vec![
                        ("app".into(), Amf0Value::String(self.url.app.clone())),
                        ("type".into(), Amf0Value::String("nonprivate".into())),
                        (
                            "flashVer".into(),
                            Amf0Value::String(self.config.flash_ver.clone()),
                        ),
                        ("tcUrl".into(), Amf0Value::String(self.url.tc_url())),
                        // Enhanced RTMP: we may send HEVC and AV1 as well as H.264.
                        (
                            "fourCcList".into(),
                            Amf0Value::StrictArray(
                                ["avc1", "hvc1", "av01"]
                                    .into_iter()
                                    .map(|c| Amf0Value::String(c.into()))
                                    .collect(),
                            ),
                        ),
                    ]),
                ],
            ));
            self.state = State::Connecting;
        }
        while let Some(decoded) = self
            .decoder
            .decode(&mut self.input)
            .map_err(|e| ClientError::Malformed(e.to_string()))?
        {
            if let Some(msg) = decoded {
                self.handle_message(msg)?;
            }
        }
        if self.bytes_in - self.acked >= u64::from(self.peer_window) {
            self.acked = self.bytes_in;
            self.send(control(ACKNOWLEDGEMENT, u32_payload(self.bytes_in as u32)));
        }
        Ok(())
    }

    fn handle_message(&mut self, msg: Message) -> Result<(), ClientError> {
        match apply_control(&msg, &mut self.decoder, &mut self.peer_window) {
            Ok((true, reply)) => {
                if let Some(r) = reply {
                    self.send(r);
                }
                return Ok(());
            }
            Ok((false, _)) => {}
            Err(ControlError::ShortChunkSize) => {
                return Err(ClientError::Malformed("short Set Chunk Size".into()));
            }
            Err(ControlError::ZeroChunkSize) => {
                return Err(ClientError::Malformed("Set Chunk Size of 0".into()));
            }
        }
        match msg.type_id {
            COMMAND_AMF0 | COMMAND_AMF3 => {
                let body = if msg.type_id == COMMAND_AMF3 {
                    msg.payload.get(1..).unwrap_or_default()
                } else {
                    &msg.payload[..]
                };
                let values = amf0::decode_all(body, &self.config.amf_limits)
                    .map_err(|e| ClientError::Malformed(format!("command message: {e}")))?;
                self.handle_command(values)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn handle_command(&mut self, values: Vec<Amf0Value>) -> Result<(), ClientError> {
        let name = values
            .first()
            .and_then(Amf0Value::as_str)
            .unwrap_or_default();
        let txn = values.get(1).and_then(Amf0Value::as_f64).unwrap_or(0.0);
        let info = values.get(3);
        let field = |key: &str| {
            info.and_then(|i| i.get(key))
                .and_then(Amf0Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        match (name, self.state) {
            ("_result", State::Connecting) if txn == TXN_CONNECT => {
                self.events.push_back(ClientEvent::Connected);
                let key = Amf0Value::String(self.url.stream_key.clone());
                for (i, cmd) in ["releaseStream", "FCPublish"].into_iter().enumerate() {
                    self.send(command(
                        0,
                        &[
                            Amf0Value::String(cmd.into()),
                            Amf0Value::Number(2.0 + i as f64),
                            Amf0Value::Null,
                            key.clone(),
                        ],
                    ));
                }
                self.send(command(
                    0,
                    &[
                        Amf0Value::String("createStream".into()),
                        Amf0Value::Number(TXN_CREATE_STREAM),
                        Amf0Value::Null,
                    ],
                ));
                self.state = State::CreatingStream;
            }
            ("_error", State::Connecting) if txn == TXN_CONNECT => {
                return Err(ClientError::Refused {
                    action: "connect",
                    code: field("code"),
                    description: field("description"),
                });
            }
            ("_result", State::CreatingStream) if txn == TXN_CREATE_STREAM => {
                let stream_id = values
                    .get(3)
                    .and_then(Amf0Value::as_f64)
                    .filter(|id| *id >= 0.0 && *id <= f64::from(u32::MAX))
                    .ok_or_else(|| {
                        ClientError::Malformed("createStream answered without a stream id".into())
                    })? as u32;
                let mut publish = command(
                    stream_id,
                    &[
                        Amf0Value::String("publish".into()),
                        Amf0Value::Number(TXN_PUBLISH),
                        Amf0Value::Null,
                        Amf0Value::String(self.url.stream_key.clone()),
                        Amf0Value::String("live".into()),
                    ],
                );
                // Commands on a NetStream go on their own chunk stream.
                publish.chunk_stream_id = DATA_CSID;
                self.send(publish);
                self.state = State::PublishRequested { stream_id };
            }
            ("_error", State::CreatingStream) if txn == TXN_CREATE_STREAM => {
                return Err(ClientError::Refused {
                    action: "create a stream",
                    code: field("code"),
                    description: field("description"),
                });
            }
            ("onStatus", _) => {
                let level = field("level");
                let code = field("code");
                match self.state {
                    State::PublishRequested { stream_id } if code == "NetStream.Publish.Start" => {
                        self.state = State::Publishing { stream_id };
                        self.events.push_back(ClientEvent::Publishing);
                    }
                    State::PublishRequested { .. } if level == "error" => {
                        return Err(ClientError::Refused {
                            action: "accept the publish",
                            code,
                            description: field("description"),
                        });
                    }
                    State::Publishing { .. }
                        if level == "error"
                            || code == "NetStream.Publish.BadName"
                            || code == "NetStream.Unpublish.Success" =>
                    {
                        return Err(ClientError::Stopped(
                            format!("{code} {}", field("description")).trim().to_owned(),
                        ));
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
