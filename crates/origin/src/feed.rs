//! Moves frames from the hub through a rendition pipeline (passthrough, or a
//! transcoder) into the packagers, and drives each stream's lifecycle.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hub::{
    Hub, InputSignal, MediaEvent, RenditionOutput, RenditionPipeline, RenditionUpdate, Renditions,
    Session, SubscriberEvent,
};
use tokio::sync::{broadcast, mpsc, watch};

use crate::live::LiveStreams;

/// How long a finished session's pipeline may take to drain (an encoder's last frames).
const DRAIN_LIMIT: Duration = Duration::from_secs(3);

/// Runs until `shutdown` completes: starts one driver task per stream name the first
/// time it is published. A driver lives as long as the process, so a stream keeps one
/// continuous timeline (and so never reuses a media sequence number) across publishers.
pub async fn run_feed(
    streams: LiveStreams,
    hub: Hub,
    renditions: Arc<dyn Renditions>,
    shutdown: impl Future<Output = ()>,
) {
    let mut announcements = hub.announcements();
    let mut driven = HashSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    // Streams that went live before we subscribed to announcements.
    let mut pending: Vec<String> = hub.live_streams();
    tokio::pin!(shutdown);
    loop {
        for name in pending.drain(..) {
            if driven.insert(name.clone()) {
                tasks.spawn(drive_stream(
                    streams.clone(),
                    hub.clone(),
                    renditions.clone(),
                    name,
                ));
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
async fn drive_stream(
    streams: LiveStreams,
    hub: Hub,
    renditions: Arc<dyn Renditions>,
    name: String,
) {
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
        let RenditionPipeline {
            input,
            mut output,
            idr_requests,
        } = renditions.start(&name);
        live.set_idr_requests(idr_requests);
        let mut input = Some(input);
        let mut ready = Vec::new();
        loop {
            tokio::select! {
                event = subscriber.recv(), if input.is_some() => match event {
                    Some(SubscriberEvent::Media(media)) => {
                        if matches!(media, MediaEvent::Frame(_)) {
                            live.handle_input_frame(Instant::now());
                        }
                        if let Some(input) = input.as_mut() {
                            input.push(media, SystemTime::now(), &mut ready);
                        }
                        deliver(&live, ready.drain(..));
                    }
                    Some(SubscriberEvent::Skipped { missed }) => {
                        metrics::counter!("origin_frames_skipped_total").increment(missed);
                        tracing::warn!(stream = %name, missed, "packager fell behind; skipped to the next keyframe");
                    }
                    None => {
                        // The publisher is gone: end the pipeline and let it drain.
                        input = None;
                        if output.is_none() {
                            break;
                        }
                    }
                },
                update = recv_output(&mut output) => match update {
                    Some(update) => deliver(&live, std::iter::once(update)),
                    None => {
                        output = None;
                        if input.is_none() {
                            break;
                        }
                    }
                },
                () = tokio::time::sleep(DRAIN_LIMIT), if input.is_none() => {
                    tracing::warn!(stream = %name, "rendition pipeline did not drain in time");
                    break;
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

/// The next asynchronous update, or never if the pipeline has none.
async fn recv_output(
    output: &mut Option<mpsc::Receiver<RenditionOutput>>,
) -> Option<RenditionOutput> {
    match output {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn deliver(live: &crate::LiveStream, updates: impl Iterator<Item = RenditionOutput>) {
    for u in updates {
        match u {
            RenditionOutput::Media {
                rendition,
                update: RenditionUpdate::Tracks(tracks),
            } => live.handle_tracks(&rendition, tracks, SystemTime::now()),
            RenditionOutput::Media {
                rendition,
                update: RenditionUpdate::Frame(frame, at),
            } => live.handle_frame(&rendition, frame, at, Instant::now()),
            RenditionOutput::Input(InputSignal::Picture { black }) => {
                live.handle_input_picture(Instant::now(), black)
            }
            RenditionOutput::Input(InputSignal::Audio { silent }) => {
                live.handle_input_audio(Instant::now(), silent)
            }
            RenditionOutput::Announce(renditions) => live.handle_announce(renditions),
            RenditionOutput::Withdraw(rendition) => live.handle_withdraw(&rendition),
        }
    }
}
