//! One upstream fetch shared by every request that wants the same object: the bytes
//! are kept as they arrive, and each waiter reads them at its own pace from the
//! start. A slow viewer holds no lock and slows nobody; a part still being produced
//! upstream reaches every waiter chunk by chunk.

use std::sync::Mutex;

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use futures::Stream;
use tokio::sync::watch;

use crate::failover::UpstreamError;

/// Why a waiter got no answer (or only part of one).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// No upstream could answer; the last reason.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The fetch ended without a status line (a bug upstream of this type).
    #[error("no answer")]
    NoAnswer,
    /// The fetch was dropped before it ended.
    #[error("fetch abandoned")]
    Abandoned,
}

/// Status and headers of the upstream answer.
#[derive(Clone, Debug)]
pub struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
}

#[derive(Debug, Default)]
struct State {
    head: Option<Head>,
    chunks: Vec<Bytes>,
    /// `Some` once the body is complete (`Ok`) or broke off (`Err`).
    end: Option<Result<(), FetchError>>,
    /// The chunks joined, once complete: made once, shared by every waiter.
    whole: Option<Bytes>,
}

/// A fetch in flight.
#[derive(Debug)]
pub struct Fetch {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

impl Default for Fetch {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            changed: watch::channel(0).0,
        }
    }
}

impl Fetch {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn set_head(&self, head: Head) {
        self.lock().head = Some(head);
        self.bump();
    }

    pub fn push(&self, chunk: Bytes) {
        self.lock().chunks.push(chunk);
        self.bump();
    }

    pub fn finish(&self, result: Result<(), FetchError>) {
        {
            let mut s = self.lock();
            if result.is_ok() {
                s.whole = Some(match s.chunks.as_slice() {
                    [] => Bytes::new(),
                    [one] => one.clone(),
                    many => {
                        let mut body = Vec::with_capacity(many.iter().map(Bytes::len).sum());
                        for c in many {
                            body.extend_from_slice(c);
                        }
                        Bytes::from(body)
                    }
                });
            }
            s.end = Some(result);
        }
        self.bump();
    }

    /// The whole body, if it completed.
    pub fn complete_body(&self) -> Option<Bytes> {
        self.lock().whole.clone()
    }

    /// Waits for the whole answer: for small objects (playlists), where one write
    /// with a length beats a chunked stream, and a waiter wakes to work only once.
    pub async fn whole(&self) -> Result<(Head, Bytes), FetchError> {
        let mut rx = self.changed.subscribe();
        loop {
            {
                let s = self.lock();
                match (&s.end, &s.head, &s.whole) {
                    (Some(Ok(())), Some(head), Some(body)) => {
                        return Ok((head.clone(), body.clone()));
                    }
                    (Some(Ok(())), _, _) => return Err(FetchError::NoAnswer),
                    (Some(Err(e)), _, _) => return Err(e.clone()),
                    (None, _, _) => {}
                }
            }
            if rx.changed().await.is_err() {
                return Err(FetchError::Abandoned);
            }
        }
    }

    /// The status and headers, if they have arrived.
    pub fn head_now(&self) -> Option<Head> {
        self.lock().head.clone()
    }

    /// Waits for the status and headers; `Err` if the fetch failed before them.
    pub async fn head(&self) -> Result<Head, FetchError> {
        let mut rx = self.changed.subscribe();
        loop {
            {
                let s = self.lock();
                if let Some(h) = &s.head {
                    return Ok(h.clone());
                }
                if let Some(end) = &s.end {
                    return Err(end.clone().err().unwrap_or(FetchError::NoAnswer));
                }
            }
            if rx.changed().await.is_err() {
                return Err(FetchError::Abandoned);
            }
        }
    }

    /// The body from its first byte, as it arrives.
    pub fn body(
        self: std::sync::Arc<Self>,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
        let rx = self.changed.subscribe();
        futures::stream::unfold((self, 0usize, rx), |(fetch, next, mut rx)| async move {
            if next == usize::MAX {
                // After an error: the stream is over.
                return None;
            }
            loop {
                {
                    let s = fetch.lock();
                    if let Some(chunk) = s.chunks.get(next) {
                        let chunk = chunk.clone();
                        drop(s);
                        return Some((Ok(chunk), (fetch, next + 1, rx)));
                    }
                    match &s.end {
                        Some(Ok(())) => return None,
                        Some(Err(e)) => {
                            let e = std::io::Error::other(e.clone());
                            drop(s);
                            // Ends the response abnormally: the client sees a cut, not a short part.
                            return Some((Err(e), (fetch, usize::MAX, rx)));
                        }
                        None => {}
                    }
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::StreamExt;

    use super::*;
    use crate::failover::BodyError;

    fn went_away() -> FetchError {
        FetchError::Upstream(UpstreamError::Body {
            upstream: "http://a".into(),
            error: BodyError::Transport("connection reset".into()),
        })
    }

    #[tokio::test]
    async fn late_and_early_waiters_get_every_chunk() {
        let fetch = Arc::new(Fetch::default());
        let early = tokio::spawn(fetch.clone().body().collect::<Vec<_>>());
        fetch.set_head(Head {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
        });
        fetch.push(Bytes::from_static(b"moof1"));
        tokio::task::yield_now().await;
        fetch.push(Bytes::from_static(b"moof2"));
        let late = fetch.clone().body();
        fetch.finish(Ok(()));
        let late: Vec<_> = late.collect().await;
        let early = early.await.unwrap();
        for got in [early, late] {
            let bytes: Vec<Bytes> = got.into_iter().map(Result::unwrap).collect();
            assert_eq!(
                bytes,
                vec![Bytes::from_static(b"moof1"), Bytes::from_static(b"moof2")]
            );
        }
        assert_eq!(
            fetch.complete_body(),
            Some(Bytes::from_static(b"moof1moof2"))
        );
        assert_eq!(fetch.head().await.unwrap().status, StatusCode::OK);
        let (head, body) = fetch.whole().await.unwrap();
        assert_eq!(
            (head.status, body.as_ref()),
            (StatusCode::OK, &b"moof1moof2"[..])
        );
    }

    #[tokio::test]
    async fn whole_waits_for_the_end() {
        let fetch = Arc::new(Fetch::default());
        let waiter = tokio::spawn({
            let fetch = fetch.clone();
            async move { fetch.whole().await }
        });
        fetch.set_head(Head {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
        });
        fetch.push(Bytes::from_static(b"#EXTM3U\n"));
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "answered before the body was complete"
        );
        fetch.finish(Ok(()));
        let (_, body) = waiter.await.unwrap().unwrap();
        assert_eq!(body, Bytes::from_static(b"#EXTM3U\n"));
        let broken = Fetch::default();
        broken.finish(Err(went_away()));
        assert_eq!(broken.whole().await.unwrap_err(), went_away());
    }

    #[tokio::test]
    async fn a_broken_fetch_ends_bodies_with_an_error() {
        let fetch = Arc::new(Fetch::default());
        fetch.set_head(Head {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
        });
        fetch.push(Bytes::from_static(b"a"));
        fetch.finish(Err(went_away()));
        let items: Vec<_> = fetch.clone().body().collect().await;
        assert!(items[0].is_ok() && items[1].is_err() && items.len() == 2);
        assert_eq!(fetch.complete_body(), None);
        assert_eq!(fetch.whole().await.unwrap_err(), went_away());
        let failed = Fetch::default();
        failed.finish(Err(FetchError::Upstream(UpstreamError::NoUpstream)));
        assert_eq!(
            failed.head().await.unwrap_err().to_string(),
            "no upstream configured"
        );
    }
}
