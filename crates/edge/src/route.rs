//! Spreading viewers across edges: each stream's viewers go to one edge, chosen by
//! rendezvous (highest-random-weight) hashing on the stream name among the healthy
//! edges, so that they share its cache; an edge far busier than the others is passed
//! over (bounded load), and a dead edge's streams move, alone, to their next choice.
//! Edges may be tied to countries: a viewer from one of them goes to those edges,
//! everybody else to the edges tied to none.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
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

/// An edge as configured: `https://edge-eu.example.com` serves everyone,
/// `https://edge-eu.example.com=DE,FR` serves viewers from Germany and France.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeSpec {
    /// Public base URL, without a trailing `/`.
    pub base: String,
    /// ISO 3166-1 alpha-2 codes, upper case; empty: no country of its own.
    pub countries: Vec<String>,
}

/// An `--edge` value that is not an edge URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{0}' is not an edge: expected an http:// or https:// URL, optionally followed by =CC,CC… (two-letter country codes), e.g. https://edge-eu.example.com=DE,FR"
)]
pub struct EdgeSpecError(String);

impl FromStr for EdgeSpec {
    type Err = EdgeSpecError;

    fn from_str(s: &str) -> Result<Self, EdgeSpecError> {
        let s = s.trim();
        // The last `=` splits off the countries only when what follows is a list of
        // two-letter codes: a URL may hold `=` itself.
        let (base, countries) = match s.rsplit_once('=') {
            Some((base, list))
                if !list.is_empty()
                    && list.split(',').all(|c| {
                        let c = c.trim();
                        c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic())
                    }) =>
            {
                let countries = list
                    .split(',')
                    .map(|c| c.trim().to_ascii_uppercase())
                    .collect();
                (base, countries)
            }
            _ => (s, Vec::new()),
        };
        let rest = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"));
        match rest {
            Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(EdgeSpec {
                base: base.trim_end_matches('/').to_owned(),
                countries,
            }),
            _ => Err(EdgeSpecError(s.to_owned())),
        }
    }
}

/// One edge as the router sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate<'a> {
    pub base: &'a str,
    pub healthy: bool,
    /// Requests per second it served lately.
    pub load: f64,
    /// Countries it is tied to (upper case); empty: none.
    pub countries: &'a [String],
}

/// The edge for `stream` watched from `country`: among the healthy edges tied to
/// that country, else those tied to no country, else any healthy edge, the one with
/// the highest hash score, skipping edges above 1.5 × the pool's mean load (+ a small
/// floor so idle systems are not shuffled by noise). `None` only when no edge is
/// healthy.
pub fn choose(candidates: &[Candidate<'_>], stream: &str, country: Option<&str>) -> Option<usize> {
    let pool = |keep: &dyn Fn(&Candidate<'_>) -> bool| -> Vec<usize> {
        (0..candidates.len())
            .filter(|i| candidates[*i].healthy && keep(&candidates[*i]))
            .collect()
    };
    let local = match country {
        Some(cc) => pool(&|c| c.countries.iter().any(|x| x.eq_ignore_ascii_case(cc))),
        None => Vec::new(),
    };
    let healthy = if !local.is_empty() {
        local
    } else {
        let global = pool(&|c| c.countries.is_empty());
        if global.is_empty() {
            pool(&|_| true)
        } else {
            global
        }
    };
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
    countries: Vec<String>,
    healthy: AtomicBool,
    /// Requests per second, ×1000.
    load_milli: AtomicU64,
}

/// The country of a viewer, from the TCP peer's address and the request's
/// `X-Forwarded-For` (which only the caller knows whether to believe). `None`:
/// unknown.
pub type CountryOf = Arc<dyn Fn(IpAddr, Option<&str>) -> Option<String> + Send + Sync>;

/// The router role: `GET /live/NAME/master.m3u8` and `/watch/NAME` answer with a
/// redirect to the chosen edge.
#[derive(Clone)]
pub struct ViewerRouter {
    edges: Arc<Vec<EdgeState>>,
    client: reqwest::Client,
    country_of: Option<CountryOf>,
}

impl ViewerRouter {
    /// A router over `edges`; with `country_of`, viewers go to their country's edges.
    pub fn new(edges: &[EdgeSpec], country_of: Option<CountryOf>) -> Self {
        Self {
            edges: Arc::new(
                edges
                    .iter()
                    .map(|e| EdgeState {
                        base: e.base.clone(),
                        countries: e.countries.clone(),
                        healthy: AtomicBool::new(true),
                        load_milli: AtomicU64::new(0),
                    })
                    .collect(),
            ),
            client: reqwest::Client::new(),
            country_of,
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

    fn target(&self, stream: &str, country: Option<&str>) -> Option<String> {
        let candidates: Vec<Candidate<'_>> = self
            .edges
            .iter()
            .map(|e| Candidate {
                base: &e.base,
                healthy: e.healthy.load(Ordering::Relaxed),
                load: e.load_milli.load(Ordering::Relaxed) as f64 / 1000.0,
                countries: &e.countries,
            })
            .collect();
        choose(&candidates, stream, country).map(|i| self.edges[i].base.clone())
    }

    /// The viewer's country, when the router knows how to tell and the request says.
    fn country(&self, request: &Request) -> Option<String> {
        let country_of = self.country_of.as_ref()?;
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())?;
        let forwarded = request
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        country_of(peer, forwarded)
    }

    fn redirect(
        &self,
        stream: &str,
        path: &str,
        query: Option<String>,
        request: &Request,
    ) -> Response {
        let country = self.country(request);
        match self.target(stream, country.as_deref()) {
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
    request: Request,
) -> Response {
    r.redirect(&name, &format!("/live/{name}/master.m3u8"), q, &request)
}

async fn redirect_watch(
    State(r): State<ViewerRouter>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    request: Request,
) -> Response {
    r.redirect(&name, &format!("/watch/{name}"), q, &request)
}

/// `rivulet route`'s start-up lines: where it answers, and the edges with their
/// countries.
pub fn banner(addr: std::net::SocketAddr, edges: &[EdgeSpec]) -> String {
    let mut text = format!(
        "Rivulet router is running.\n  HTTP router: http://{}/\n",
        httpd::display_addr(addr)
    );
    for e in edges {
        text += &match e.countries.is_empty() {
            true => format!("  edge: {}\n", e.base),
            false => format!(
                "  edge: {} (viewers from {})\n",
                e.base,
                e.countries.join(", ")
            ),
        };
    }
    text
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
                countries: &[],
            })
            .collect()
    }

    #[test]
    fn a_stream_sticks_to_one_edge_and_streams_spread() {
        let all = edges([true; 3], [0.0; 3]);
        let mut per_edge = [0usize; 3];
        for s in 0..300 {
            let name = format!("stream{s}");
            let first = choose(&all, &name, None).unwrap();
            assert_eq!(choose(&all, &name, None), Some(first), "stable");
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
            let before = choose(&all, &name, None).unwrap();
            let after = choose(&without_e2, &name, None).unwrap();
            assert_ne!(after, 1);
            if before != 1 {
                assert_eq!(before, after, "{name} moved though its edge lives");
            }
        }
        assert_eq!(choose(&edges([false; 3], [0.0; 3]), "x", None), None);
    }

    #[test]
    fn an_overloaded_edge_is_passed_over() {
        let name = (0..100)
            .map(|s| format!("s{s}"))
            .find(|n| choose(&edges([true; 3], [0.0; 3]), n, None) == Some(0))
            .unwrap();
        assert_ne!(
            choose(&edges([true; 3], [5000.0, 100.0, 100.0]), &name, None),
            Some(0)
        );
    }

    #[test]
    fn viewers_go_to_their_countrys_edges_and_others_to_the_global_ones() {
        let eu = vec!["DE".to_owned(), "FR".to_owned()];
        let us = vec!["US".to_owned()];
        let mut all = edges([true; 3], [0.0; 3]);
        all[0].countries = &eu;
        all[1].countries = &us;
        for s in 0..50 {
            let name = format!("s{s}");
            assert_eq!(choose(&all, &name, Some("DE")), Some(0));
            assert_eq!(choose(&all, &name, Some("fr")), Some(0), "case");
            assert_eq!(choose(&all, &name, Some("US")), Some(1));
            assert_eq!(
                choose(&all, &name, Some("JP")),
                Some(2),
                "no edge of its own"
            );
            assert_eq!(choose(&all, &name, None), Some(2), "unknown country");
        }
        // The German edge dies: Germans go to the global edge, not to the American.
        all[0].healthy = false;
        assert_eq!(choose(&all, "s1", Some("DE")), Some(2));
        // No global edge left either: any healthy edge beats no answer.
        all[2].healthy = false;
        assert_eq!(choose(&all, "s1", Some("DE")), Some(1));
        assert_eq!(choose(&all, "s1", None), Some(1));
    }

    #[test]
    fn edge_specs_parse_with_and_without_countries() {
        let plain: EdgeSpec = "https://edge.example.com/".parse().unwrap();
        assert_eq!(plain.base, "https://edge.example.com");
        assert!(plain.countries.is_empty());
        let eu: EdgeSpec = "http://10.0.0.5:8081=de, fr".parse().unwrap();
        assert_eq!(eu.base, "http://10.0.0.5:8081");
        assert_eq!(eu.countries, ["DE", "FR"]);
        // An `=` that is part of the URL stays in it.
        let q: EdgeSpec = "http://e.example.com/?a=bcd".parse().unwrap();
        assert_eq!(q.base, "http://e.example.com/?a=bcd");
        for bad in [
            "edge.example.com",
            "ftp://x",
            "http://",
            "https:///x",
            "=DE",
        ] {
            let err = bad.parse::<EdgeSpec>().unwrap_err().to_string();
            assert!(err.contains("http://"), "{bad}: {err}");
        }
    }
}
