//! Moves frames from the hub into the packagers and drives each stream's lifecycle.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use hub::{Hub, MediaEvent, Session, SubscriberEvent};
use tokio::sync::{broadcast, watch};

use crate::live::LiveStreams;

/// Runs until `shutdown` completes: starts one driver task per stream name the first
/// time it is published. A driver lives as long as the process, so a stream keeps one
/// continuous timeline (and so never reuses a media sequence number) across publishers.
pub async fn run_feed(streams: LiveStreams, hub: Hub, shutdown: impl Future<Output = ()>) {
    let mut announcements = hub.announcements();
    let mut driven = HashSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    // Streams that went live before we subscribed to announcements.
    let mut pending: Vec<String> = hub.live_streams();
    tokio::pin!(shutdown);
    loop {
        for name in pending.drain(..) {
            if driven.insert(name.clone()) {
                tasks.spawn(drive_stream(streams.clone(), hub.clone(), name));
            }
        }
        tokio::select! {
            () = &mut shutdown => break,
            announcement = announcements.recv() => match announcement {
                Ok(session) => pending.push(session.info().stream.clone()),
                Err(broadcast::error::RecvError::Lagged(_)) => pending = hub.live_streams(),
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    tasks.abort_all();
}

/// One stream's lifecycle, forever: wait for a publisher, package its frames, then
/// give it the grace period to come back before ending the playlist.
async fn drive_stream(streams: LiveStreams, hub: Hub, name: String) {
    let live = streams.get_or_create(&name);
    let config = streams.config().clone();
    let mut sessions = hub.watch_stream(&name);
    let mut last_session = 0;
    loop {
        let Some(session) = next_session(&mut sessions, last_session).await else {
            return;
        };
        last_session = session.info().id;
        tracing::info!(stream = %name, peer = %session.info().peer, "stream is live");
        live.handle_session_start();
        let mut subscriber = session.subscribe();
        while let Some(event) = subscriber.recv().await {
            match event {
                SubscriberEvent::Media(MediaEvent::Tracks(tracks)) => {
                    live.handle_tracks(tracks, SystemTime::now())
                }
                SubscriberEvent::Media(MediaEvent::Frame(frame)) => {
                    live.handle_frame(frame, SystemTime::now(), Instant::now())
                }
                SubscriberEvent::Skipped { missed } => {
                    metrics::counter!("origin_frames_skipped_total").increment(missed);
                    tracing::warn!(stream = %name, missed, "packager fell behind; skipped to the next keyframe");
                }
            }
        }
        live.handle_publisher_gone();
        tracing::info!(stream = %name, grace = ?config.grace_period, "publisher left; waiting for it to return");
        let returned = tokio::time::timeout(
            config.grace_period,
            next_session(&mut sessions, last_session),
        )
        .await;
        if returned.is_ok() {
            continue;
        }
        tracing::info!(stream = %name, "grace period over; playlist ended");
        live.handle_end(SystemTime::now());
        if tokio::time::timeout(
            config.ended_linger,
            next_session(&mut sessions, last_session),
        )
        .await
        .is_err()
        {
            live.handle_offline();
        }
    }
}

/// Waits for a live session other than the one already handled. Does not consume it:
/// the caller's next call returns the same session.
async fn next_session(
    sessions: &mut watch::Receiver<Option<Arc<Session>>>,
    handled: u64,
) -> Option<Arc<Session>> {
    loop {
        let current = sessions.borrow_and_update().clone();
        if let Some(session) = current {
            // The hub may still show a session whose publisher has just gone.
            if session.info().id != handled && !session.is_ended() {
                return Some(session);
            }
        }
        sessions.changed().await.ok()?;
    }
}
