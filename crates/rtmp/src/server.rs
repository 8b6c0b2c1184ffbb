//! The server side of an RTMP connection, as a sans-IO state machine.
//!
//! Call order: [`ServerSession::handle_input`] with every received byte, then drain
//! [`ServerSession::poll_transmit`] to the socket and [`ServerSession::poll_event`] for
//! what the peer did; arm a timer at [`ServerSession::poll_timeout`] and call
//! [`ServerSession::handle_timeout`] when it fires. A [`SessionEvent::PublishRequested`]
//! must be answered with [`ServerSession::accept_publish`] or
//! [`ServerSession::reject_publish`], the way quinn hands back `Incoming`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use media::amf0::{self, Amf0Value, Limits};

use crate::chunk::{ChunkDecoder, ChunkEncoder, ChunkError, ChunkLimits, Message};
use crate::handshake::{self, HandshakeError, PACKET_LEN};
use crate::message::*;

/// Settings of a server session.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// The whole handshake must complete within this.
    pub handshake_timeout: Duration,
    /// From the start of the connection, `publish` must be requested within this
    /// (a peer that connects and then dawdles holds a connection slot for nothing).
    pub setup_timeout: Duration,
    /// A connection that completes no message for this long is closed; once publishing,
    /// only audio and video count. Bytes alone do not: a peer dripping a byte at a time
    /// would otherwise keep the connection (and the stream) forever.
    pub idle_timeout: Duration,
    pub chunk_limits: ChunkLimits,
    pub amf_limits: Limits,
    /// Our outgoing chunk size.
    pub chunk_size: u32,
    /// The acknowledgement window we announce.
    pub window_ack_size: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            setup_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(30),
            chunk_limits: ChunkLimits::default(),
            amf_limits: Limits::default(),
            chunk_size: 4096,
            window_ack_size: 2_500_000,
        }
    }
}

/// What the peer did.
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub enum SessionEvent {
    /// `connect` to an application (the path of the RTMP URL).
    Connected { app: String, tc_url: Option<String> },
    /// `publish`: answer with `accept_publish` or `reject_publish`.
    PublishRequested {
        app: String,
        stream_key: String,
        stream_id: u32,
    },
    /// `@setDataFrame` / `onMetaData`.
    Metadata(Amf0Value),
    /// An FLV audio tag body (only after an accepted publish).
    Audio { timestamp_ms: u32, body: Bytes },
    /// An FLV video tag body (only after an accepted publish).
    Video { timestamp_ms: u32, body: Bytes },
    /// `FCUnpublish` / `deleteStream` / `closeStream`: the publisher is done.
    Unpublished,
}

/// Why a session failed. After a fatal error the session keeps returning it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtmpError {
    /// Bytes that are not RTMP.
    #[error("malformed input at byte {offset}: {what}")]
    Malformed { what: String, offset: u64 },
    /// Well-formed RTMP that breaks the protocol's rules.
    #[error("protocol violation at byte {offset}: {what}")]
    Violation { what: String, offset: u64 },
    /// Something we do not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A deadline passed; the text names the rule.
    #[error("timed out: {0}")]
    Timeout(&'static str),
}

enum State {
    /// Waiting for C0+C1.
    Hello,
    /// Waiting for C2.
    Ack,
    Connected,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Publish {
    None,
    Requested {
        stream_id: u32,
    },
    Accepted {
        stream_id: u32,
    },
    /// The publisher said it stops (`FCUnpublish`, `closeStream`, `deleteStream`): the
    /// rest of its unpublish sequence is still taken, and the peer closes the connection
    /// (or it is closed after [`UNPUBLISH_LINGER`]).
    Unpublished,
    Closing,
}

/// How long a connection stays open after the publisher stopped, for the rest of its
/// unpublish sequence and for the peer to close first (GStreamer's `rtmp2sink` reports
/// an error and exits 1 at end of stream when the server closes before it does).
const UNPUBLISH_LINGER: Duration = Duration::from_secs(3);

/// The server side of one RTMP connection.
pub struct ServerSession {
    config: SessionConfig,
    state: State,
    input: BytesMut,
    output: Vec<u8>,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    events: VecDeque<SessionEvent>,
    app: Option<String>,
    publish: Publish,
    random: [u8; PACKET_LEN],
    epoch_ms: u32,
    bytes_in: u64,
    acked: u64,
    peer_window: u32,
    handshake_deadline: Instant,
    setup_deadline: Instant,
    idle_deadline: Instant,
    failed: Option<RtmpError>,
}

impl ServerSession {
    /// `random` fills the handshake's random bytes; `epoch_ms` is our time field.
    pub fn new(
        config: SessionConfig,
        now: Instant,
        random: [u8; PACKET_LEN],
        epoch_ms: u32,
    ) -> Self {
        Self {
            decoder: ChunkDecoder::new(config.chunk_limits.clone()),
            encoder: ChunkEncoder::default(),
            handshake_deadline: now + config.handshake_timeout,
            setup_deadline: now + config.setup_timeout,
            idle_deadline: now + config.idle_timeout,
            config,
            state: State::Hello,
            input: BytesMut::new(),
            output: Vec::new(),
            events: VecDeque::new(),
            app: None,
            publish: Publish::None,
            random,
            epoch_ms,
            bytes_in: 0,
            acked: 0,
            peer_window: 2_500_000,
            failed: None,
        }
    }

    /// Feeds received bytes.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) -> Result<(), RtmpError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.bytes_in += data.len() as u64;
        self.input.extend_from_slice(data);
        let result = self.process(now);
        if let Err(e) = &result {
            self.fail(e.clone());
        }
        result
    }

    /// Call when `poll_timeout` has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.failed.is_some() {
            return;
        }
        if !matches!(self.state, State::Connected) && now >= self.handshake_deadline {
            self.fail(RtmpError::Timeout(
                "handshake not completed within --rtmp-handshake-timeout-ms",
            ));
        } else if self.publish == Publish::None && now >= self.setup_deadline {
            self.fail(RtmpError::Timeout(
                "no publish request within --rtmp-setup-timeout-ms",
            ));
        } else if self.publish == Publish::Unpublished && now >= self.idle_deadline {
            // The publisher stopped and did not finish its sequence: close quietly.
            self.publish = Publish::Closing;
        } else if now >= self.idle_deadline {
            self.fail(RtmpError::Timeout(
                "no complete message (no media, once publishing) within --rtmp-idle-timeout-ms",
            ));
        }
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
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` should be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.failed.is_some() {
            return None;
        }
        let deadline = match self.state {
            State::Connected => self.idle_deadline,
            _ => self.handshake_deadline.min(self.idle_deadline),
        };
        Some(if self.publish == Publish::None {
            deadline.min(self.setup_deadline)
        } else {
            deadline
        })
    }

    /// The error the session failed with, if it did.
    pub fn error(&self) -> Option<&RtmpError> {
        self.failed.as_ref()
    }

    /// Whether the connection should be closed once the output is flushed (a rejected
    /// publish, a failure).
    pub fn is_closing(&self) -> bool {
        self.failed.is_some() || self.publish == Publish::Closing
    }

    /// Bytes received so far (for error context).
    pub fn bytes_received(&self) -> u64 {
        self.bytes_in
    }

    /// Accepts the pending publish request: media will flow as events.
    pub fn accept_publish(&mut self) {
        if let Publish::Requested { stream_id } = self.publish {
            self.send(user_control(USER_STREAM_BEGIN, &stream_id.to_be_bytes()));
            self.send(on_status(
                stream_id,
                "status",
                "NetStream.Publish.Start",
                "publishing",
            ));
            self.publish = Publish::Accepted { stream_id };
            // An accepted publisher gets room for its media.
            self.decoder
                .set_budget(self.config.chunk_limits.max_buffered);
        }
    }

    /// Ends an accepted publish with an error status the encoder shows (a limit the
    /// publisher crossed), then closes.
    pub fn stop_publish(&mut self, code: &str, description: &str) {
        if let Publish::Accepted { stream_id } = self.publish {
            self.send(on_status(stream_id, "error", code, description));
            self.publish = Publish::Closing;
        }
    }

    /// Refuses the pending publish request with an error status the encoder shows.
    pub fn reject_publish(&mut self, code: &str, description: &str) {
        if let Publish::Requested { stream_id } = self.publish {
            self.send(on_status(stream_id, "error", code, description));
            self.publish = Publish::Closing;
        }
    }

    /// Panics if internal bounds are broken. For tests and fuzzing.
    pub fn check_invariants(&self) {
        self.decoder.check_invariants();
        assert!(self.decoder.buffered() <= self.config.chunk_limits.max_buffered);
        if !matches!(self.publish, Publish::Accepted { .. }) {
            assert!(self.decoder.buffered() <= self.config.chunk_limits.max_buffered_setup);
        }
        // What a session holds: unfinished messages plus at most one incomplete chunk
        // (its header and the bytes the budget allowed for it).
        assert!(self.input.len() <= self.decoder.budget() + 4096 + 64 * 1024);
        assert!(self.acked <= self.bytes_in);
    }

    fn send(&mut self, msg: Message) {
        self.encoder.encode(&msg, &mut self.output);
    }

    /// Fails the session; a publisher is told why with an error status, which the
    /// protocol allows once a stream exists.
    fn fail(&mut self, error: RtmpError) {
        if let Publish::Requested { stream_id } | Publish::Accepted { stream_id } = self.publish {
            let code = match error {
                RtmpError::Timeout(_) => "NetStream.Publish.Idle",
                _ => "NetStream.Publish.Rejected",
            };
            self.send(on_status(stream_id, "error", code, &error.to_string()));
        }
        // The unfinished messages are dropped now, not when the connection is.
        self.decoder = ChunkDecoder::new(self.config.chunk_limits.clone());
        self.input = BytesMut::new();
        self.failed = Some(error);
    }

    fn process(&mut self, now: Instant) -> Result<(), RtmpError> {
        loop {
            match self.state {
                State::Hello => {
                    if self.input.len() < 1 + PACKET_LEN {
                        // Refuse a wrong version at once rather than after 1536 bytes.
                        if let Some(&v) = self.input.first()
                            && v != handshake::RTMP_VERSION
                        {
                            return Err(self.malformed(HandshakeError::Version(v).to_string()));
                        }
                        return Ok(());
                    }
                    let hello = self.input.split_to(1 + PACKET_LEN);
                    handshake::server_response(
                        &hello,
                        &self.random,
                        self.epoch_ms,
                        &mut self.output,
                    )
                    .map_err(|e| self.malformed(e.to_string()))?;
                    self.state = State::Ack;
                }
                State::Ack => {
                    if self.input.len() < PACKET_LEN {
                        return Ok(());
                    }
                    let _c2 = self.input.split_to(PACKET_LEN);
                    self.state = State::Connected;
                    self.idle_deadline = now + self.config.idle_timeout;
                }
                State::Connected => {
                    while let Some(decoded) = self
                        .decoder
                        .decode(&mut self.input)
                        .map_err(|e| self.chunk_error(e))?
                    {
                        if let Some(msg) = decoded {
                            // Progress is a whole message; once publishing, media.
                            let publishing = matches!(self.publish, Publish::Accepted { .. });
                            if !publishing || matches!(msg.type_id, AUDIO | VIDEO) {
                                self.idle_deadline = now + self.config.idle_timeout;
                            }
                            self.handle_message(msg)?;
                            if publishing && self.publish == Publish::Unpublished {
                                self.idle_deadline =
                                    now + UNPUBLISH_LINGER.min(self.config.idle_timeout);
                            }
                        }
                    }
                    if self.bytes_in - self.acked >= u64::from(self.peer_window) {
                        self.acked = self.bytes_in;
                        self.send(control(ACKNOWLEDGEMENT, u32_payload(self.bytes_in as u32)));
                    }
                    return Ok(());
                }
            }
        }
    }

    fn handle_message(&mut self, msg: Message) -> Result<(), RtmpError> {
        match apply_control(&msg, &mut self.decoder, &mut self.peer_window) {
            Ok((true, reply)) => {
                if let Some(r) = reply {
                    self.send(r);
                }
                return Ok(());
            }
            Ok((false, _)) => {}
            Err(ControlError::ShortChunkSize) => {
                return Err(self.malformed("short Set Chunk Size".into()));
            }
            Err(ControlError::ZeroChunkSize) => {
                return Err(self.violation("Set Chunk Size of 0".into()));
            }
        }
        match msg.type_id {
            ACKNOWLEDGEMENT | SET_PEER_BANDWIDTH => {}
            // Media before an accepted publish (or after a refusal) is dropped.
            AUDIO | VIDEO
                if matches!(self.publish, Publish::Accepted { .. }) && !msg.payload.is_empty() =>
            {
                let (timestamp_ms, body) = (msg.timestamp, msg.payload);
                self.events.push_back(if msg.type_id == AUDIO {
                    SessionEvent::Audio { timestamp_ms, body }
                } else {
                    SessionEvent::Video { timestamp_ms, body }
                });
            }
            DATA_AMF0 | DATA_AMF3 => {
                let body = if msg.type_id == DATA_AMF3 {
                    msg.payload.get(1..).unwrap_or_default()
                } else {
                    &msg.payload[..]
                };
                let values = amf0::decode_all(body, &self.config.amf_limits)
                    .map_err(|e| self.malformed(format!("data message: {e}")))?;
                let mut iter = values
                    .into_iter()
                    .skip_while(|v| v.as_str() == Some("@setDataFrame"));
                let is_metadata = iter
                    .next()
                    .is_some_and(|v| v.as_str() == Some("onMetaData"));
                if is_metadata && let Some(meta) = iter.next() {
                    self.events.push_back(SessionEvent::Metadata(meta));
                }
            }
            COMMAND_AMF0 | COMMAND_AMF3 => {
                let body = if msg.type_id == COMMAND_AMF3 {
                    msg.payload.get(1..).unwrap_or_default()
                } else {
                    &msg.payload[..]
                };
                let values = amf0::decode_all(body, &self.config.amf_limits)
                    .map_err(|e| self.malformed(format!("command message: {e}")))?;
                self.handle_command(msg.stream_id, values)?;
            }
            // Aggregate (22) and shared objects: not used by publishers we support.
            _ => {}
        }
        Ok(())
    }

    fn handle_command(&mut self, stream_id: u32, values: Vec<Amf0Value>) -> Result<(), RtmpError> {
        let name = values
            .first()
            .and_then(Amf0Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let txn = values.get(1).and_then(Amf0Value::as_f64).unwrap_or(0.0);
        let args = values.get(3..).unwrap_or_default();
        match name.as_str() {
            "connect" => {
                let props = values.get(2).cloned().unwrap_or(Amf0Value::Null);
                self.handle_connect(txn, &props);
            }
            "releaseStream" | "FCPublish" => {
                self.result(stream_id, txn, Amf0Value::Undefined);
            }
            "createStream" => {
                self.result(0, txn, Amf0Value::Number(1.0));
            }
            "publish" => self.handle_publish(stream_id, args)?,
            "FCUnpublish" | "deleteStream" | "closeStream" => {
                if matches!(self.publish, Publish::Accepted { .. }) {
                    self.publish = Publish::Unpublished;
                    self.events.push_back(SessionEvent::Unpublished);
                }
                if txn > 0.0 && name == "FCUnpublish" {
                    self.result(stream_id, txn, Amf0Value::Undefined);
                }
            }
            "play" | "play2" => {
                let sid = if stream_id == 0 { 1 } else { stream_id };
                self.send(on_status(
                    sid,
                    "error",
                    "NetStream.Play.Failed",
                    "playback over RTMP is not offered; watch over HLS",
                ));
                self.publish = Publish::Closing;
            }
            _ => {
                if txn > 0.0 {
                    self.send(command(
                        stream_id,
                        &[
                            Amf0Value::String("_error".into()),
                            Amf0Value::Number(txn),
                            Amf0Value::Null,
                            Amf0Value::Null,
                        ],
                    ));
                }
            }
        }
        Ok(())
    }

    /// `connect`: the window, bandwidth and chunk size, then `_result` with what the
    /// server offers.
    fn handle_connect(&mut self, txn: f64, props: &Amf0Value) {
        let app = props
            .get("app")
            .and_then(Amf0Value::as_str)
            .unwrap_or_default();
        let app = app
            .split('?')
            .next()
            .unwrap_or_default()
            .trim_matches('/')
            .to_owned();
        let tc_url = props
            .get("tcUrl")
            .and_then(Amf0Value::as_str)
            .map(str::to_owned);
        let encoding = props
            .get("objectEncoding")
            .and_then(Amf0Value::as_f64)
            .unwrap_or(0.0);
        self.send(control(
            WINDOW_ACK_SIZE,
            u32_payload(self.config.window_ack_size),
        ));
        let mut bw = u32_payload(self.config.window_ack_size);
        bw.push(2);
        self.send(control(SET_PEER_BANDWIDTH, bw));
        self.send(control(SET_CHUNK_SIZE, u32_payload(self.config.chunk_size)));
        self.encoder.set_chunk_size(self.config.chunk_size);
        let mut server_props = vec![
            ("fmsVer".into(), Amf0Value::String("FMS/3,5,7,7009".into())),
            ("capabilities".into(), Amf0Value::Number(31.0)),
            ("mode".into(), Amf0Value::Number(1.0)),
        ];
        // Enhanced RTMP: say which FourCCs we take, so capable encoders pick one. The
        // v1 list, and the v2 map (each FourCC's capability: 1 = we can decode it).
        if props.get("fourCcList").is_some() {
            server_props.push((
                "fourCcList".into(),
                Amf0Value::StrictArray(
                    ["avc1", "hvc1", "av01", "mp4a"]
                        .into_iter()
                        .map(|c| Amf0Value::String(c.into()))
                        .collect(),
                ),
            ));
        }
        if props.get("videoFourCcInfoMap").is_some() {
            server_props.push((
                "videoFourCcInfoMap".into(),
                Amf0Value::Object(
                    ["avc1", "hvc1", "av01"]
                        .into_iter()
                        .map(|c| (c.to_owned(), Amf0Value::Number(1.0)))
                        .collect(),
                ),
            ));
        }
        self.send(command(
            0,
            &[
                Amf0Value::String("_result".into()),
                Amf0Value::Number(txn),
                Amf0Value::Object(server_props),
                Amf0Value::Object(vec![
                    ("level".into(), Amf0Value::String("status".into())),
                    (
                        "code".into(),
                        Amf0Value::String("NetConnection.Connect.Success".into()),
                    ),
                    (
                        "description".into(),
                        Amf0Value::String("Connection succeeded.".into()),
                    ),
                    ("objectEncoding".into(), Amf0Value::Number(encoding)),
                ]),
            ],
        ));
        self.app = Some(app.clone());
        self.events
            .push_back(SessionEvent::Connected { app, tc_url });
    }

    /// `publish`: handed to the application as a request (answered with
    /// `accept_publish` or `reject_publish`).
    fn handle_publish(&mut self, stream_id: u32, args: &[Amf0Value]) -> Result<(), RtmpError> {
        let Some(app) = self.app.clone() else {
            return Err(self.violation("publish before connect".into()));
        };
        if self.publish != Publish::None {
            return Err(self.violation("a second publish on one connection".into()));
        }
        let key = args.first().and_then(Amf0Value::as_str).unwrap_or_default();
        // OBS and ffmpeg may append a query string to the key; it is not part of it.
        let stream_key = key.split('?').next().unwrap_or_default().to_owned();
        let stream_id = if stream_id == 0 { 1 } else { stream_id };
        self.publish = Publish::Requested { stream_id };
        self.events.push_back(SessionEvent::PublishRequested {
            app,
            stream_key,
            stream_id,
        });
        Ok(())
    }

    fn result(&mut self, stream_id: u32, txn: f64, value: Amf0Value) {
        if txn > 0.0 {
            self.send(command(
                stream_id,
                &[
                    Amf0Value::String("_result".into()),
                    Amf0Value::Number(txn),
                    Amf0Value::Null,
                    value,
                ],
            ));
        }
    }

    fn malformed(&self, what: String) -> RtmpError {
        RtmpError::Malformed {
            what,
            offset: self.bytes_in,
        }
    }

    fn violation(&self, what: String) -> RtmpError {
        RtmpError::Violation {
            what,
            offset: self.bytes_in,
        }
    }

    fn chunk_error(&self, e: ChunkError) -> RtmpError {
        match e {
            ChunkError::MessageTooLong { .. } | ChunkError::TooManyChunkStreams(_) => {
                RtmpError::Violation {
                    what: e.to_string(),
                    offset: self.bytes_in,
                }
            }
            ChunkError::OverBudget { .. } => {
                let rule = if matches!(self.publish, Publish::Accepted { .. }) {
                    "--rtmp-max-buffered-bytes"
                } else {
                    "--rtmp-max-setup-buffered-bytes (before the publish is accepted)"
                };
                RtmpError::Violation {
                    what: format!("{e}: buffer budget {rule}"),
                    offset: self.bytes_in,
                }
            }
            _ => RtmpError::Malformed {
                what: e.to_string(),
                offset: self.bytes_in,
            },
        }
    }
}

#[cfg(test)]
mod tests;
