//! Which upstream answers a request, as a sans-IO state machine: the rules of
//! `docs/ab-pipelines.md` ("What the edge does while A catches up", "Input health"),
//! with no HTTP client, no timer and no task inside. Time comes in as `now`.
//!
//! Call order, for one request (one [`CacheKey`]):
//!
//! 1. [`Failover::next`] names the upstream to ask and how long to wait for its
//!    status line ([`Attempt`]); `None`: every upstream has been tried.
//! 2. The caller sends the request. No answer in time, or a transport error:
//!    [`Failover::handle_error`], back to 1.
//! 3. An answer's status line: [`Failover::handle_head`] says how to read the body
//!    ([`BodyPlan`]): whole (playlists and errors, checked before anyone sees them) or
//!    streamed to viewers box by box (media), skipping the boxes viewers already have
//!    from an upstream that broke off.
//! 4. A whole body: [`Failover::handle_answer`] gives the [`Verdict`]: serve it, or try
//!    the next upstream (keeping it as a fallback). A streamed body that breaks off:
//!    [`Failover::handle_stream_error`], back to 1. One that ends: done.
//! 5. After `next` returns `None`: [`Failover::finish`] gives the fallback answer to
//!    serve, or the error that explains why nothing could be.
//!
//! Marks on the shared [`Upstreams`] (down, stalled for a stream) are made here, as
//! part of the decision, so that the next request already avoids a broken upstream.

use std::time::{Duration, Instant};

use crate::key::{CacheKey, ObjectKind};
use crate::playlist::{answers_blocking, lacks_segments};
use crate::upstream::Upstreams;

/// The limits the decisions use (from the edge's settings).
#[derive(Clone, Copy, Debug)]
pub struct FailoverConfig {
    /// How long to wait for an upstream's first byte, and for a whole body after it.
    pub first_byte_timeout: Duration,
    /// A held request (blocking reload, part) unanswered this long, or a body silent
    /// this long, on an upstream that is not the last candidate: it stalled.
    pub stall_limit: Duration,
    /// A body from the last candidate silent this long is broken off.
    pub body_stall_timeout: Duration,
    /// Bytes of a playlist, error answer or other small object at most.
    pub max_playlist_bytes: usize,
    /// Bytes of a media object (200) at most.
    pub max_media_bytes: usize,
}

/// The next upstream to ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Attempt {
    /// Index into [`Upstreams`].
    pub upstream: usize,
    /// How long to wait for the status line and headers.
    pub first_byte: Duration,
}

/// How to read an answer's body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum BodyPlan {
    /// Read it whole, then ask [`Failover::handle_answer`]: a playlist or an error
    /// is small and useless in pieces, and a broken one is simply fetched elsewhere.
    Whole {
        /// Longest silence between two chunks.
        idle: Duration,
        /// The whole body must have arrived by then (a host dripping bytes).
        deadline: Instant,
        /// Longer than this is an upstream gone wrong.
        max_bytes: usize,
    },
    /// Stream it to viewers as it arrives, cut into whole boxes.
    Stream {
        /// Longest silence between two chunks.
        idle: Duration,
        /// Longer than this is an upstream gone wrong.
        max_bytes: usize,
        /// Boxes viewers already have from an upstream that broke off: not sent again.
        skip_boxes: usize,
        /// Whether this answer's status and headers go to viewers (the first answer
        /// streamed; a continuation keeps the first one's).
        send_head: bool,
    },
}

/// What to do with a whole answer.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Verdict<A> {
    /// Serve it to every waiting viewer.
    Serve(A),
    /// Ask the next upstream; the answer may still be served by [`Failover::finish`]
    /// if none does better.
    TryNext,
}

/// What went wrong with an attempt, as the caller saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptError {
    /// No status line within [`Attempt::first_byte`].
    NoAnswerInTime,
    /// Connection refused or reset, DNS, TLS: the transport's message.
    Transport(String),
    /// The body broke off.
    Body(BodyError),
}

/// Why a body was not received whole.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// Silent between two chunks for this long.
    #[error("no bytes for {0:?}")]
    Idle(Duration),
    /// Still incomplete at its deadline (a drip).
    #[error("body not complete in time")]
    Deadline,
    /// Longer than allowed (endless).
    #[error("body over {0} bytes")]
    TooLarge(usize),
    /// The transport failed mid-body.
    #[error("{0}")]
    Transport(String),
}

/// Why no upstream could answer a request (the last thing that went wrong).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The edge has no upstream.
    #[error("no upstream configured")]
    NoUpstream,
    /// A held request was not answered within the stall limit.
    #[error("{upstream} held the request beyond {wait:?}")]
    Held { upstream: String, wait: Duration },
    /// No status line in time.
    #[error("{upstream} did not answer within {wait:?}")]
    NoAnswer { upstream: String, wait: Duration },
    /// Connection refused, reset, DNS, TLS.
    #[error("{upstream}: {reason}")]
    Transport { upstream: String, reason: String },
    /// The body broke off.
    #[error("{upstream} broke off the body: {error}")]
    Body { upstream: String, error: BodyError },
    /// Part of a media object went to viewers and this upstream answered something
    /// else than the object, so it cannot be continued.
    #[error("{upstream} cannot continue the object: {status}")]
    CannotContinue { upstream: String, status: u16 },
}

/// One request's way through the upstreams. `A` is the caller's answer (status,
/// headers and body), kept as a fallback without being copied.
#[derive(Debug)]
pub struct Failover<'a, A> {
    upstreams: &'a Upstreams,
    config: FailoverConfig,
    stream: &'a str,
    playlist: bool,
    media: bool,
    /// Held upstream until something that comes within a part duration exists: a
    /// blocking reload (the part completes) or a part (it starts).
    held: bool,
    blocking_target: Option<(u64, Option<u32>)>,
    tried: Vec<usize>,
    current: Option<Current>,
    /// The last answer passed over (an error, a playlist behind or without segments).
    passed_over: Option<A>,
    /// The first good answer from an upstream whose input is unwell: served only if
    /// no other upstream answers as well.
    unwell: Option<A>,
    last_error: UpstreamError,
    /// Once a media body has started to reach viewers: how many whole boxes they have.
    delivered: Option<usize>,
}

#[derive(Clone, Copy, Debug)]
struct Current {
    index: usize,
    last_candidate: bool,
    first_byte: Duration,
}

impl<'a, A> Failover<'a, A> {
    /// The failover for `key` over `upstreams`.
    pub fn new(upstreams: &'a Upstreams, key: &'a CacheKey, config: FailoverConfig) -> Self {
        Self {
            upstreams,
            config,
            stream: key.stream(),
            playlist: key.is_playlist(),
            media: key.kind() == ObjectKind::Media,
            held: key.is_blocking() || key.is_part(),
            blocking_target: key.blocking_target(),
            tried: Vec::new(),
            current: None,
            passed_over: None,
            unwell: None,
            last_error: UpstreamError::NoUpstream,
            delivered: None,
        }
    }

    /// The next upstream to ask: the preferred one that is up and not stalled for
    /// this stream, among those not tried yet; `None` when all have been.
    pub fn next(&mut self, now: Instant) -> Option<Attempt> {
        let index = self.upstreams.pick(self.stream, &self.tried, now)?;
        self.tried.push(index);
        let last_candidate = self.upstreams.pick(self.stream, &self.tried, now).is_none();
        // Far longer than a part duration means the stream stopped advancing there (or
        // the host went silent). The last candidate gets the full hold time: there is
        // nowhere else to go.
        let first_byte = if self.held && !last_candidate {
            self.config.stall_limit
        } else {
            self.config.first_byte_timeout
        };
        self.current = Some(Current {
            index,
            last_candidate,
            first_byte,
        });
        Some(Attempt {
            upstream: index,
            first_byte,
        })
    }

    /// The current attempt failed before a whole answer.
    pub fn handle_error(&mut self, now: Instant, error: AttemptError) {
        let Some(current) = self.current else {
            return;
        };
        let upstream = self.base(current.index);
        self.last_error = match error {
            AttemptError::NoAnswerInTime if self.held => {
                // The playlist stopped advancing there: other streams may be fine.
                self.upstreams.mark_stalled(current.index, self.stream, now);
                UpstreamError::Held {
                    upstream,
                    wait: current.first_byte,
                }
            }
            AttemptError::NoAnswerInTime => {
                self.upstreams.mark_down(current.index);
                UpstreamError::NoAnswer {
                    upstream,
                    wait: current.first_byte,
                }
            }
            AttemptError::Transport(reason) => {
                self.upstreams.mark_down(current.index);
                UpstreamError::Transport { upstream, reason }
            }
            AttemptError::Body(error) => {
                self.upstreams.mark_down(current.index);
                UpstreamError::Body { upstream, error }
            }
        };
    }

    /// The current attempt's status line arrived: how to read its body.
    pub fn handle_head(&mut self, now: Instant, status: u16) -> BodyPlan {
        let last_candidate = self.current.is_some_and(|c| c.last_candidate);
        // Between bytes of a body: a part grows by a frame at a time, so a silence far
        // longer than a part means the host is gone (a cut link sends no reset) or
        // drips bytes to hold viewers.
        let idle = if last_candidate {
            self.config.body_stall_timeout
        } else {
            self.config.stall_limit
        };
        // An endless or huge body is an upstream gone wrong: bounded per kind, so that
        // it cannot grow this edge's memory.
        let max_bytes = if self.media && status == 200 {
            self.config.max_media_bytes
        } else {
            self.config.max_playlist_bytes
        };
        if self.playlist || status != 200 {
            return BodyPlan::Whole {
                idle,
                deadline: now + self.config.first_byte_timeout,
                max_bytes,
            };
        }
        let send_head = self.delivered.is_none();
        let skip_boxes = *self.delivered.get_or_insert(0);
        BodyPlan::Stream {
            idle,
            max_bytes,
            skip_boxes,
            send_head,
        }
    }

    /// A whole answer of the current attempt: serve it, or ask the next upstream.
    /// `input` is its `X-Rivulet-Input` header, `body` its bytes (read for playlists).
    pub fn handle_answer(
        &mut self,
        now: Instant,
        status: u16,
        input: Option<&[u8]>,
        body: &[u8],
        answer: A,
    ) -> Verdict<A> {
        let Some(current) = self.current else {
            return Verdict::TryNext;
        };
        let last_candidate = current.last_candidate;
        let success = (200..300).contains(&status);
        // Another upstream may have what this one lacks (a restarted origin has no
        // history; one whose publisher dropped has no live playlist; one that is
        // behind answers 400 to a reload too far ahead).
        if !success && (!last_candidate || self.unwell.is_some()) {
            if (500..600).contains(&status) {
                self.upstreams.mark_down(current.index);
            }
            self.passed_over = Some(answer);
            return Verdict::TryNext;
        }
        if self.delivered.is_some() {
            self.last_error = UpstreamError::CannotContinue {
                upstream: self.base(current.index),
                status,
            };
            return Verdict::TryNext;
        }
        if success && !last_candidate && self.playlist {
            let text = String::from_utf8_lossy(body);
            let behind = self
                .blocking_target
                .is_some_and(|(msn, part)| !answers_blocking(&text, msn, part));
            if behind {
                // It answered without the part asked for: its window starts later (a
                // restarted origin catching up). The other pipeline has it.
                self.upstreams.mark_stalled(current.index, self.stream, now);
            }
            if behind || lacks_segments(&text) {
                // Nor a playlist without a whole segment (its first seconds): ask the
                // next upstream, this time only, since at a stream's start every
                // pipeline looks like that (a cool-down would make the edge swing
                // between them).
                self.passed_over = Some(answer);
                return Verdict::TryNext;
            }
        }
        let input_ok = input.is_none_or(|v| v == media::live_path::INPUT_OK.as_bytes());
        if !input_ok && !last_candidate {
            // Its input stalled, went black or silent: prefer the other pipeline for
            // this stream for a while (as if its playlist had stopped advancing).
            self.upstreams.mark_stalled(current.index, self.stream, now);
            self.unwell.get_or_insert(answer);
            return Verdict::TryNext;
        }
        Verdict::Serve(answer)
    }

    /// A streamed body broke off after `boxes` whole boxes of it (counted from its
    /// start, including those skipped): the next upstream continues after them.
    pub fn handle_stream_error(&mut self, now: Instant, boxes: usize, error: BodyError) {
        let delivered = self.delivered.get_or_insert(0);
        *delivered = (*delivered).max(boxes);
        self.handle_error(now, AttemptError::Body(error));
    }

    /// Every upstream has been tried: the answer to serve (one passed over, or one
    /// whose input is unwell, that one first), or why there is none.
    pub fn finish(self) -> Result<A, UpstreamError> {
        match self.unwell.or(self.passed_over) {
            // Viewers have part of an object: another answer cannot follow it.
            Some(answer) if self.delivered.is_none() => Ok(answer),
            _ => Err(self.last_error),
        }
    }

    fn base(&self, index: usize) -> String {
        self.upstreams
            .get(index)
            .map(|u| u.base.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
