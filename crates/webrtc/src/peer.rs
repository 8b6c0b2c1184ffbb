//! What viewer and publisher sessions do alike with their str0m peer: datagrams in,
//! time in, output out, the connect timeout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Event, Input, Output, Rtc};

use str0m::Candidate;
use str0m::change::SdpOffer;

use crate::session::offers_h264;
use crate::{OfferError, SessionOutput, WhepConfig};

/// How a datagram comes and goes: on the one UDP socket, or framed (RFC 4571) on a
/// peer's TCP connection to the same port (ICE-TCP, for networks that block UDP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

/// How long a session may take from its answer to a working ICE connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Answers `offer` (SDP text, which must offer H.264 video) as an ICE-lite peer with
/// the configured host candidates: the peer and the SDP answer.
pub(crate) fn accept_offer(
    config: &WhepConfig,
    builder: str0m::RtcConfig,
    offer: &str,
    now: Instant,
) -> Result<(Rtc, String), OfferError> {
    let parsed =
        SdpOffer::from_sdp_string(offer).map_err(|e| OfferError::Malformed(e.to_string()))?;
    if !offers_h264(offer) {
        return Err(OfferError::NoH264);
    }
    if config.candidates.is_empty() {
        return Err(OfferError::Candidate("none configured".into()));
    }
    let mut rtc = builder.build(now);
    for addr in &config.candidates {
        let candidate = Candidate::host(*addr, "udp")
            .map_err(|e| OfferError::Candidate(format!("{addr}: {e}")))?;
        rtc.add_local_candidate(candidate);
    }
    // Passive: the peer connects (an ICE-lite server never dials out).
    for addr in &config.tcp_candidates {
        let candidate = Candidate::builder()
            .tcp()
            .host(*addr)
            .tcptype(TcpType::Passive)
            .build()
            .map_err(|e| OfferError::Candidate(format!("TCP {addr}: {e}")))?;
        rtc.add_local_candidate(candidate);
    }
    let answer = rtc
        .sdp_api()
        .accept_offer(parsed)
        .map_err(|e| OfferError::Rejected(e.to_string()))?;
    Ok((rtc, answer.to_sdp_string()))
}

/// A datagram as str0m's input (`None`: not a datagram str0m can read).
pub(crate) fn receive(
    now: Instant,
    transport: Transport,
    source: SocketAddr,
    destination: SocketAddr,
    data: &[u8],
) -> Option<Input<'_>> {
    let contents = data.try_into().ok()?;
    Some(Input::Receive(
        now,
        Receive {
            proto: match transport {
                Transport::Udp => Protocol::Udp,
                Transport::Tcp => Protocol::Tcp,
            },
            source,
            destination,
            contents,
        },
    ))
}

/// Hands a datagram to `rtc`; input it refuses ends the session.
pub(crate) fn handle_datagram(
    rtc: &mut Rtc,
    now: Instant,
    transport: Transport,
    source: SocketAddr,
    destination: SocketAddr,
    data: &[u8],
) {
    let Some(input) = receive(now, transport, source, destination, data) else {
        return;
    };
    if let Err(e) = rtc.handle_input(input) {
        tracing::debug!(error = %e, "WebRTC input refused; session closed");
        rtc.disconnect();
    }
}

/// Whether a session is still within its connect timeout (else it is closed).
pub(crate) fn in_time(rtc: &mut Rtc, connected: bool, created: Instant, now: Instant) -> bool {
    if !connected && now.saturating_duration_since(created) > CONNECT_TIMEOUT {
        tracing::debug!("WebRTC session never connected; closed");
        rtc.disconnect();
        return false;
    }
    true
}

/// Moves `rtc`'s time forward; a failure ends the session.
pub(crate) fn handle_timeout(rtc: &mut Rtc, now: Instant) {
    if let Err(e) = rtc.handle_input(Input::Timeout(now)) {
        tracing::debug!(error = %e, "WebRTC timeout handling failed; session closed");
        rtc.disconnect();
    }
}

/// One step of a session's output: for the caller, or an event for the session.
// Consumed at once, as str0m's own `Output` (which carries the same `Event`) is.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Polled {
    Output(SessionOutput),
    Event(Event),
}

/// `rtc`'s next output; a failure ends the session.
pub(crate) fn poll(rtc: &mut Rtc) -> Polled {
    if !rtc.is_alive() {
        return Polled::Output(SessionOutput::Closed);
    }
    match rtc.poll_output() {
        Ok(Output::Transmit(t)) => Polled::Output(SessionOutput::Transmit {
            transport: match t.proto {
                Protocol::Udp => Transport::Udp,
                _ => Transport::Tcp,
            },
            destination: t.destination,
            data: t.contents.into(),
        }),
        Ok(Output::Timeout(t)) => Polled::Output(SessionOutput::Timeout(t)),
        Ok(Output::Event(event)) => Polled::Event(event),
        Err(e) => {
            tracing::debug!(error = %e, "WebRTC session failed; closed");
            rtc.disconnect();
            Polled::Output(SessionOutput::Closed)
        }
    }
}
