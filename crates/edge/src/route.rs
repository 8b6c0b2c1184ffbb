//! Spreading viewers across edges: each stream's viewers go to one edge, chosen by
//! rendezvous (highest-random-weight) hashing on the stream name among the healthy
//! edges, so that they share its cache; an edge far busier than the others is passed
//! over (bounded load), and a dead edge's streams move, alone, to their next choice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// FNV-1a, 64 bits, finalised: stable across builds and machines, unlike `DefaultHasher`.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV's high bits mix poorly for short, similar keys; MurmurHash3's finaliser
    // spreads every input bit over the whole word.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// One edge as the router sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate<'a> {
    pub base: &'a str,
    pub healthy: bool,
    /// Requests per second it served lately.
    pub load: f64,
}

/// The edge for `stream`: the healthy one with the highest hash score, skipping
/// edges above 1.5 × the mean load (+ a small floor so idle systems are not
/// shuffled by noise). `None` only when no edge is healthy.
pub fn choose(candidates: &[Candidate<'_>], stream: &str) -> Option<usize> {
    let healthy: Vec<usize> = (0..candidates.len())
        .filter(|i| candidates[*i].healthy)
        .collect();
    if healthy.is_empty() {
        return None;
    }
    let mean = healthy.iter().map(|i| candidates[*i].load).sum::<f64>() / healthy.len() as f64;
    let limit = mean * 1.5 + 50.0;
    let score = |i: &usize| fnv1a(&[candidates[*i].base.as_bytes(), stream.as_bytes()]);
    healthy
        .iter()
        .filter(|i| candidates[**i].load <= limit)
        .max_by_key(|i| score(i))
        .or_else(|| healthy.iter().max_by_key(|i| score(i)))
        .copied()
}

struct EdgeState {
    base: String,
    healthy: AtomicBool,
    /// Requests per second, ×1000.
    load_milli: AtomicU64,
}

/// The router role: `GET /live/NAME/master.m3u8` and `/watch/NAME` answer with a
/// redirect to the chosen edge.
#[derive(Clone)]
pub struct ViewerRouter {
    edges: Arc<Vec<EdgeState>>,
    client: reqwest::Client,
}

impl ViewerRouter {
    pub fn new(edges: &[String]) -> Self {
        Self {
            edges: Arc::new(
                edges
                    .iter()
                    .map(|e| EdgeState {
                        base: e.trim_end_matches('/').to_owned(),
                        healthy: AtomicBool::new(true),
                        load_milli: AtomicU64::new(0),
                    })
                    .collect(),
            ),
            client: reqwest::Client::new(),
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/live/{name}/master.m3u8", get(redirect_master))
            .route("/watch/{name}", get(redirect_watch))
            .with_state(self.clone())
    }

    /// Probes every edge's `/healthz` and request rate (`/edge/load`) every `every`.
    pub async fn probe(&self, every: Duration, shutdown: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(every);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            for e in self.edges.iter() {
                let answer = tokio::time::timeout(
                    Duration::from_millis(800),
                    self.client.get(format!("{}/edge/load", e.base)).send(),
                )
                .await;
                let load = match answer {
                    Ok(Ok(r)) if r.status().is_success() => r
                        .text()
                        .await
                        .ok()
                        .and_then(|t| t.trim().parse::<f64>().ok()),
                    _ => None,
                };
                e.healthy.store(load.is_some(), Ordering::Relaxed);
                e.load_milli
                    .store((load.unwrap_or(0.0) * 1000.0) as u64, Ordering::Relaxed);
            }
        }
    }

    fn target(&self, stream: &str) -> Option<String> {
        let candidates: Vec<Candidate<'_>> = self
            .edges
            .iter()
            .map(|e| Candidate {
                base: &e.base,
                healthy: e.healthy.load(Ordering::Relaxed),
                load: e.load_milli.load(Ordering::Relaxed) as f64 / 1000.0,
            })
            .collect();
        choose(&candidates, stream).map(|i| self.edges[i].base.clone())
    }

    fn redirect(&self, stream: &str, path: &str, query: Option<String>) -> Response {
        match self.target(stream) {
            Some(base) => {
                let location = match query {
                    Some(q) => format!("{base}{path}?{q}"),
                    None => format!("{base}{path}"),
                };
                metrics::counter!("router_redirects_total").increment(1);
                match HeaderValue::from_str(&location) {
                    Ok(v) => (
                        StatusCode::FOUND,
                        [
                            (header::LOCATION, v),
                            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                        ],
                    )
                        .into_response(),
                    Err(_) => (StatusCode::BAD_REQUEST, "bad stream name\n").into_response(),
                }
            }
            None => (
                StatusCode::SERVICE_UNAVAILABLE,
                "no edge is healthy; retry shortly\n",
            )
                .into_response(),
        }
    }
}

async fn redirect_master(
    State(r): State<ViewerRouter>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    r.redirect(&name, &format!("/live/{name}/master.m3u8"), q)
}

async fn redirect_watch(
    State(r): State<ViewerRouter>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    r.redirect(&name, &format!("/watch/{name}"), q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(healthy: [bool; 3], load: [f64; 3]) -> Vec<Candidate<'static>> {
        let names = ["http://e1", "http://e2", "http://e3"];
        (0..3)
            .map(|i| Candidate {
                base: names[i],
                healthy: healthy[i],
                load: load[i],
            })
            .collect()
    }

    #[test]
    fn a_stream_sticks_to_one_edge_and_streams_spread() {
        let all = edges([true; 3], [0.0; 3]);
        let mut per_edge = [0usize; 3];
        for s in 0..300 {
            let name = format!("stream{s}");
            let first = choose(&all, &name).unwrap();
            assert_eq!(choose(&all, &name), Some(first), "stable");
            per_edge[first] += 1;
        }
        assert!(
            per_edge.iter().all(|n| (60..=140).contains(n)),
            "{per_edge:?}"
        );
    }

    #[test]
    fn only_a_dead_edges_streams_move() {
        let all = edges([true; 3], [0.0; 3]);
        let without_e2 = edges([true, false, true], [0.0; 3]);
        for s in 0..200 {
            let name = format!("s{s}");
            let before = choose(&all, &name).unwrap();
            let after = choose(&without_e2, &name).unwrap();
            assert_ne!(after, 1);
            if before != 1 {
                assert_eq!(before, after, "{name} moved though its edge lives");
            }
        }
        assert_eq!(choose(&edges([false; 3], [0.0; 3]), "x"), None);
    }

    #[test]
    fn an_overloaded_edge_is_passed_over() {
        let name = (0..100)
            .map(|s| format!("s{s}"))
            .find(|n| choose(&edges([true; 3], [0.0; 3]), n) == Some(0))
            .unwrap();
        assert_ne!(
            choose(&edges([true; 3], [5000.0, 100.0, 100.0]), &name),
            Some(0)
        );
    }
}
