//! One WHEP viewer: offer → answer, ICE-lite on the caller's socket, media out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use str0m::config::{CryptoProvider, DtlsCert};
use str0m::format::Codec;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::rtp::RtpWrite;
use str0m::{Event, IceConnectionState, Rtc};

use crate::peer::Transport;

/// Video RTP packets kept for NACK resends per viewer (str0m's bounded ring buffer; a
/// packet's payload is the stream's, shared, so each costs the viewer its header and
/// bookkeeping, about 0.2 KB; about 0.4 s of a 2.5 Mbit/s rung).
pub const DEFAULT_SEND_BUFFER_VIDEO: usize = 100;
/// Opus packets kept per viewer (half a second of 20 ms packets).
pub const DEFAULT_SEND_BUFFER_AUDIO: usize = 25;

/// What every session of a process shares: the DTLS identity (generated once: key
/// generation per viewer would be slow) and the addresses it advertises.
#[derive(Clone)]
pub struct WhepConfig {
    crypto: Arc<CryptoProvider>,
    cert: DtlsCert,
    /// Host candidates: the address(es) of the one UDP socket, as viewers reach it.
    pub candidates: Vec<SocketAddr>,
    /// Passive TCP host candidates (ICE-TCP), if the caller listens for them.
    pub tcp_candidates: Vec<SocketAddr>,
    /// Video packets kept per viewer for NACK resends.
    pub send_buffer_video: usize,
    /// Audio packets kept per viewer for NACK resends.
    pub send_buffer_audio: usize,
}

impl WhepConfig {
    /// A configuration advertising `candidates`, with a fresh DTLS certificate.
    pub fn new(candidates: Vec<SocketAddr>) -> Result<Self, OfferError> {
        let crypto = str0m::crypto::from_feature_flags();
        let cert = crypto
            .dtls_provider
            .generate_certificate()
            .ok_or(OfferError::Certificate)?;
        Ok(Self {
            crypto: Arc::new(crypto),
            cert,
            candidates,
            tcp_candidates: Vec::new(),
            send_buffer_video: DEFAULT_SEND_BUFFER_VIDEO,
            send_buffer_audio: DEFAULT_SEND_BUFFER_AUDIO,
        })
    }
}

impl WhepConfig {
    /// str0m's configuration of every session, viewer or publisher: ICE-lite, the
    /// shared DTLS identity, H.264 and Opus only, the bounded resend buffers.
    pub(crate) fn builder(&self) -> str0m::RtcConfig {
        Rtc::builder()
            .set_ice_lite(true)
            .set_crypto_provider(self.crypto.clone())
            .set_dtls_cert(self.cert.clone())
            .clear_codecs()
            .enable_h264(true)
            .enable_opus(true, false)
            .set_send_buffer_video(self.send_buffer_video.max(1))
            .set_send_buffer_audio(self.send_buffer_audio.max(1))
    }
}

impl WhepConfig {
    /// A viewer's configuration: RTP mode (the stream is packetised once, by the
    /// caller, and every viewer sends the same payloads), without transport-wide
    /// congestion control. We send at the rung's rate with no bandwidth estimation, so
    /// its feedback was of no use, and str0m kept a record of each of the last 1,000
    /// packets sent for it (about 180 KB a viewer, heaptrack).
    pub(crate) fn viewer_builder(&self) -> str0m::RtcConfig {
        use str0m::rtp::{Extension, ExtensionMap};
        let mut exts = ExtensionMap::empty();
        // Chrome's standard ids (str0m's ExtensionMap::standard) less id 3, TWCC.
        exts.set(1, Extension::AudioLevel);
        exts.set(2, Extension::AbsoluteSendTime);
        exts.set(4, Extension::RtpMid);
        exts.set(10, Extension::RtpStreamId);
        exts.set(11, Extension::RepairedRtpStreamId);
        exts.set(13, Extension::VideoOrientation);
        self.builder().set_extension_map(exts).set_rtp_mode(true)
    }
}

/// Why an offer was not answered. The text is the HTTP answer's body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError {
    #[error("the SDP offer cannot be parsed: {0}")]
    Malformed(String),
    #[error(
        "the SDP offer has no H.264 video (a=rtpmap:… H264/90000 on a video m-line): this server takes and sends H.264 only"
    )]
    NoH264,
    #[error("the SDP offer cannot be answered: {0}")]
    Rejected(String),
    #[error("no usable host candidate address: {0}")]
    Candidate(String),
    #[error("cannot generate the DTLS certificate")]
    Certificate,
}

/// One H.264 access unit as its RTP payloads ([`crate::rtp_payloads`]), shared by
/// every viewer.
#[derive(Clone, Debug)]
pub struct VideoAccessUnit {
    pub payloads: Vec<Arc<[u8]>>,
    /// Presentation time.
    pub pts: media::MediaTime,
    pub keyframe: bool,
}

/// One Opus packet, shared by every viewer.
#[derive(Clone, Debug)]
pub struct AudioPacket {
    pub data: Arc<[u8]>,
    pub pts: media::MediaTime,
}

/// What the caller must do next for a session.
#[derive(Debug)]
pub enum SessionOutput {
    /// Send this datagram from the session's socket (UDP), or on the peer's TCP
    /// connection from `destination`.
    Transmit {
        transport: Transport,
        destination: SocketAddr,
        data: Vec<u8>,
    },
    /// Call [`WhepSession::handle_timeout`] at this time (or earlier, with new input).
    Timeout(Instant),
    /// The viewer needs a keyframe: it has just connected, or it lost a picture and
    /// asked (PLI/FIR). Until one comes its deltas are held back; the caller may ask
    /// the encoder for an IDR sooner than the ladder's next.
    KeyframeRequest,
    /// The session has ended (ICE consent stopped, DTLS failed, or closed).
    Closed,
}

/// Where a kind of media goes: its m-line, payload type, RTP clock and the next
/// sequence number.
#[derive(Clone, Copy, Debug)]
struct Track {
    mid: Mid,
    pt: Pt,
    clock_rate: u32,
    next_seq: u64,
}

impl Track {
    fn new(mid: Mid, pt: Pt, clock_rate: u32) -> Self {
        // A random first sequence number (RFC 3550 5.1), below 2^16: the viewer's SRTP
        // rollover counter starts at zero.
        let next_seq = u64::from(rand::random::<u16>() >> 1);
        Self {
            mid,
            pt,
            clock_rate,
            next_seq,
        }
    }
}

/// One viewer's WebRTC session.
pub struct WhepSession {
    rtc: Rtc,
    video: Option<Track>,
    audio: Option<Track>,
    connected: bool,
    created: Instant,
    /// No video is sent until a keyframe: a new viewer, or one after a gap.
    waiting_for_keyframe: bool,
    /// The first keyframe was asked for (on connecting).
    asked: bool,
    /// Packets kept for NACK resends: video, audio.
    resend_packets: (usize, usize),
}

/// How long a sent packet is kept for a NACK (str0m keeps 3 s unless told): a viewer
/// whose NACK takes longer has lost the picture anyway and asks for a keyframe.
const RESEND_WINDOW: std::time::Duration = std::time::Duration::from_millis(500);

impl WhepSession {
    /// Answers `offer` (SDP text). The offer must have a video m-line with H.264.
    pub fn answer(
        config: &WhepConfig,
        offer: &str,
        now: Instant,
    ) -> Result<(Self, String), OfferError> {
        let (rtc, answer) = crate::peer::accept_offer(config, config.viewer_builder(), offer, now)?;
        let session = Self {
            rtc,
            video: None,
            audio: None,
            connected: false,
            created: now,
            waiting_for_keyframe: true,
            asked: false,
            resend_packets: (
                config.send_buffer_video.max(1),
                config.send_buffer_audio.max(1),
            ),
        };
        Ok((session, answer))
    }

    /// Whether the datagram belongs to this session (ICE ufrag, DTLS/SRTP peer).
    pub fn accepts(
        &self,
        now: Instant,
        transport: Transport,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        crate::peer::receive(now, transport, source, destination, data)
            .is_some_and(|i| self.rtc.accepts(&i))
    }

    /// Handles a datagram [accepted](Self::accepts) for this session.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        transport: Transport,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        crate::peer::handle_datagram(&mut self.rtc, now, transport, source, destination, data);
    }

    /// Moves time forward.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !crate::peer::in_time(&mut self.rtc, self.connected, self.created, now) {
            return;
        }
        crate::peer::handle_timeout(&mut self.rtc, now);
    }

    /// The next thing to do; call until it is a `Timeout` or `Closed`.
    pub fn poll_output(&mut self) -> SessionOutput {
        loop {
            match crate::peer::poll(&mut self.rtc) {
                crate::peer::Polled::Output(out) => return out,
                crate::peer::Polled::Event(event) => {
                    if let Some(out) = self.handle_event(event) {
                        return out;
                    }
                }
            }
        }
    }

    fn handle_event(&mut self, event: Event) -> Option<SessionOutput> {
        match event {
            Event::Connected => {
                self.connected = true;
                return self.ask_for_a_first_keyframe();
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                // ICE-lite: the viewer stopped its consent checks (RFC 7675).
                self.rtc.disconnect();
                return Some(SessionOutput::Closed);
            }
            Event::MediaAdded(added) => {
                let (wanted, clock_rate) = match added.kind {
                    MediaKind::Video => (Codec::H264, 90_000),
                    MediaKind::Audio => (Codec::Opus, 48_000),
                };
                let negotiated = self.rtc.media(added.mid).map(|m| m.remote_pts().to_vec());
                let pt = negotiated.and_then(|remote| {
                    let params: Vec<_> = self
                        .rtc
                        .codec_config()
                        .params()
                        .iter()
                        .filter(|p| remote.contains(&p.pt()) && p.spec().codec == wanted)
                        .collect();
                    // Packetization mode 1 (STAP-A, FU-A): what rtp_payloads makes.
                    params
                        .iter()
                        .find(|p| p.spec().format.packetization_mode == Some(1))
                        .or(params.first())
                        .map(|p| p.pt())
                });
                // str0m 0.25 keeps every sent packet of the last 3 s (up to 2,000) for
                // resends whatever RtcConfig's send buffers say: ~1 MB a viewer at
                // 2.5 Mbit/s. Bounded here, on the stream itself.
                let (packets, cap) = match added.kind {
                    MediaKind::Video => (self.resend_packets.0, Some(0.15)),
                    MediaKind::Audio => (self.resend_packets.1, Some(0.15)),
                };
                if let Some(tx) = self.rtc.direct_api().stream_tx_by_mid(added.mid, None) {
                    tx.set_rtx_cache(packets, RESEND_WINDOW, cap);
                }
                if let Some(pt) = pt {
                    let track = Track::new(added.mid, pt, clock_rate);
                    match added.kind {
                        MediaKind::Video if self.video.is_none() => {
                            self.video = Some(track);
                            return self.ask_for_a_first_keyframe();
                        }
                        MediaKind::Audio if self.audio.is_none() => self.audio = Some(track),
                        _ => {}
                    }
                }
            }
            Event::KeyframeRequest(req) if Some(req.mid) == self.video.map(|v| v.mid) => {
                self.waiting_for_keyframe = true;
                return Some(SessionOutput::KeyframeRequest);
            }
            _ => {}
        }
        None
    }

    /// Once connected with a video track (str0m reports the two in either order), a
    /// viewer that joined mid-GOP asks for the keyframe it must start on, once.
    fn ask_for_a_first_keyframe(&mut self) -> Option<SessionOutput> {
        if self.connected && self.video.is_some() && self.waiting_for_keyframe && !self.asked {
            self.asked = true;
            return Some(SessionOutput::KeyframeRequest);
        }
        None
    }

    /// Whether DTLS and ICE are up (media written before is dropped).
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Whether the offer had a video m-line with H.264 that media can go to.
    pub fn has_video(&self) -> bool {
        self.video.is_some()
    }

    /// Whether the offer had an audio m-line with Opus.
    pub fn has_audio(&self) -> bool {
        self.audio.is_some()
    }

    /// Whether the session is waiting for a keyframe before it sends video again.
    pub fn is_waiting_for_keyframe(&self) -> bool {
        self.waiting_for_keyframe
    }

    /// The stream skipped frames (a slow tap): send nothing until the next keyframe.
    pub fn handle_gap(&mut self) {
        self.waiting_for_keyframe = true;
    }

    /// Sends one access unit (dropped before the first keyframe and after a gap).
    pub fn write_video(&mut self, now: Instant, unit: &VideoAccessUnit) {
        if !self.connected || self.video.is_none() {
            return;
        }
        if self.waiting_for_keyframe {
            if !unit.keyframe {
                return;
            }
            self.waiting_for_keyframe = false;
        }
        send(
            &mut self.rtc,
            &mut self.video,
            now,
            unit.pts,
            &unit.payloads,
            true,
        );
    }

    /// Sends one Opus packet.
    pub fn write_audio(&mut self, now: Instant, packet: &AudioPacket) {
        if !self.connected {
            return;
        }
        let payload = std::slice::from_ref(&packet.data);
        send(
            &mut self.rtc,
            &mut self.audio,
            now,
            packet.pts,
            payload,
            false,
        );
    }

    /// Ends the session (WHEP DELETE).
    pub fn close(&mut self) {
        self.rtc.disconnect();
    }

    pub fn is_alive(&self) -> bool {
        self.rtc.is_alive()
    }
}

/// Writes one access unit's (or audio packet's) payloads to the track's RTP stream,
/// each by reference. Video is kept for NACK resends and its last packet has the
/// marker bit (the end of the access unit); audio neither: a lost 20 ms of Opus is
/// concealed, as browsers send it.
fn send(
    rtc: &mut Rtc,
    track: &mut Option<Track>,
    now: Instant,
    pts: media::MediaTime,
    payloads: &[Arc<[u8]>],
    video: bool,
) {
    let Some(track) = track.as_mut() else { return };
    let mut api = rtc.direct_api();
    let Some(tx) = api.stream_tx_by_mid(track.mid, None) else {
        return;
    };
    let time = rtp_time(pts, track.clock_rate);
    let last = payloads.len().saturating_sub(1);
    for (i, payload) in payloads.iter().enumerate() {
        let write = RtpWrite::new(track.pt, track.next_seq.into(), time, now, payload.clone())
            .marker(video && i == last)
            .nackable(video);
        tx.write_rtp(write);
        track.next_seq += 1;
    }
}

/// Media time on an RTP clock of `rate` Hz, as the 32-bit RTP timestamp (which wraps).
fn rtp_time(t: media::MediaTime, rate: u32) -> u32 {
    let ticks = i128::from(t.ticks) * i128::from(rate) / i128::from(t.timescale.get());
    // Truncation is the RTP timestamp's wrap-around.
    ticks as u32
}

/// Whether a video m-line of the offer lists H.264.
pub(crate) fn offers_h264(sdp: &str) -> bool {
    let mut in_video = false;
    for line in sdp.lines() {
        let line = line.trim();
        if let Some(m) = line.strip_prefix("m=") {
            in_video = m.starts_with("video ");
        } else if in_video
            && let Some(rtpmap) = line.strip_prefix("a=rtpmap:")
            && rtpmap
                .split_whitespace()
                .nth(1)
                .is_some_and(|c| c.to_ascii_uppercase().starts_with("H264/"))
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests;
