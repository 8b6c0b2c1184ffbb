//! `rivulet edge` (the CDN node) and `rivulet route` (which edge a viewer goes to).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use clap::Args;
use metrics_exporter_prometheus::PrometheusHandle;

/// The options of `rivulet edge`.
#[derive(Args, Debug, Clone)]
pub(crate) struct EdgeArgs {
    /// An upstream to pull from: an origin (`rivulet serve`) or another edge (a
    /// shield). Repeatable; the first healthy one in the order given is used, the
    /// others take over when it fails. In the environment: comma-separated.
    #[arg(
        long = "origin",
        env = "RIVULET_ORIGINS",
        value_name = "URL",
        value_delimiter = ',',
        required = true
    )]
    pub(crate) origins: Vec<String>,

    /// Address of the edge's HTTP server.
    #[arg(
        long,
        env = "RIVULET_HTTP_LISTEN",
        value_name = "ADDR",
        default_value = "0.0.0.0:8081"
    )]
    pub(crate) http_listen: SocketAddr,

    /// Memory for cached objects (bytes; K, M, G suffixes), least recently used
    /// going first.
    #[arg(long, env = "RIVULET_CACHE_SIZE", value_name = "SIZE", default_value = "512M", value_parser = edge::options::parse_cache_size)]
    pub(crate) cache_size: u64,

    /// A blocking playlist request unanswered this long means the playlist stopped
    /// advancing upstream: fail over. 3 × the part target.
    #[arg(
        long,
        env = "RIVULET_STALL_LIMIT_MS",
        value_name = "MS",
        default_value_t = 1002
    )]
    pub(crate) stall_limit_ms: u64,

    // With --tls-cert and --tls-key, the HTTP server speaks HTTPS (HTTP/2 by ALPN).
    #[command(flatten)]
    pub(crate) tls: crate::tls_options::TlsArgs,

    #[command(flatten)]
    pub(crate) send: crate::config::AnalyticsSendArgs,

    #[command(flatten)]
    pub(crate) token: crate::config::AnalyticsTokenArgs,

    #[command(flatten)]
    pub(crate) proxies: crate::config::TrustedProxyArgs,

    #[command(flatten)]
    pub(crate) upstream: crate::http_options::UpstreamArgs,

    #[command(flatten)]
    pub(crate) http: crate::http_options::HttpArgs,

    #[command(flatten)]
    pub(crate) held: crate::http_options::HeldArgs,

    #[command(flatten)]
    pub(crate) playback: crate::config::PlaybackKeyArgs,
}

/// The options of `rivulet route`.
#[derive(Args, Debug, Clone)]
pub(crate) struct RouteArgs {
    /// An edge to send viewers to: its public base URL, optionally tied to countries
    /// with `=CC,CC…` (ISO codes: `https://edge-eu.example.com=DE,FR`). Viewers from
    /// those countries go to those edges; everyone else to the edges tied to none.
    /// Repeatable. In the environment: space-separated.
    #[arg(
        long = "edge",
        env = "RIVULET_EDGES",
        value_name = "URL[=CC,CC…]",
        value_delimiter = ' ',
        required = true
    )]
    pub(crate) edges: Vec<edge::route::EdgeSpec>,

    /// GeoIP database (MaxMind format with a country_code field) for routing by
    /// country. [default: analytics-data/…/geo-whois-asn-country.mmdb, installed by
    /// scripts/setup.sh]
    #[arg(long, env = "RIVULET_GEOIP_DB", value_name = "FILE")]
    pub(crate) geoip_db: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub(crate) proxies: crate::config::TrustedProxyArgs,

    /// Address of the router's HTTP server.
    #[arg(
        long,
        env = "RIVULET_HTTP_LISTEN",
        value_name = "ADDR",
        default_value = "0.0.0.0:8080"
    )]
    pub(crate) http_listen: SocketAddr,

    #[command(flatten)]
    pub(crate) http: crate::http_options::HttpArgs,
}

fn metrics_route(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || crate::serve::metrics_page(handle.clone())),
    )
}

pub(crate) async fn run_edge(args: EdgeArgs) -> anyhow::Result<()> {
    edge::options::check_http_urls(&args.origins, "--origin")?;
    let prometheus = crate::serve::install_metrics()?;
    let mut config = edge::EdgeConfig {
        upstreams: args.origins.clone(),
        cache_bytes: args.cache_size,
        stall_limit: Duration::from_millis(args.stall_limit_ms.max(100)),
        held: args.held.resolve(&Default::default()),
        playback_keys: args.playback.resolve(None)?,
        ..edge::EdgeConfig::default()
    };
    if config.playback_keys.is_empty() {
        println!(
            "  No --playback-key: private streams are refused here (give the origin's key to serve them)"
        );
    }
    args.upstream.apply(&mut config);
    let edge = edge::Edge::new(config);
    let limits = crate::http_options::fit_to_process(args.http.resolve(&Default::default()));
    if let Some(url) = &args.send.analytics_url {
        edge::options::check_http_urls(std::slice::from_ref(url), "--analytics-url")?;
    }
    // Bound now, so that this node's name in analytics has the real port.
    let listener = tokio::net::TcpListener::bind(args.http_listen)
        .await
        .with_context(|| format!("cannot listen on {} (set --http-listen)", args.http_listen))?;
    let port = listener.local_addr()?.port();
    let analytics = analytics::Serving::remote(
        args.send.analytics_url.as_deref(),
        args.token.analytics_token.clone(),
        analytics::EmitConfig {
            edge: meta::live::node_name(port),
            trusted_proxies: analytics::TrustedProxies::new(args.proxies.trusted_proxies.clone()),
            queue: args.send.analytics_queue.unwrap_or(65_536).max(1),
            upstreams: args
                .origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_owned())
                .collect(),
            ..Default::default()
        },
    );
    let app = edge
        .router()
        .layer(axum::middleware::from_fn_with_state(
            analytics.emitter.clone(),
            analytics::record_delivery,
        ))
        // The viewer page too, so that a viewer the router sends here can watch; its
        // API calls (metadata, events, beacons) pass through to the upstream.
        .merge(web::router(web::WebConfig {
            rtmp_port: None,
            analytics: web::AnalyticsLink::Local,
            // The edge passes the rewind window through; it cannot know the origin's
            // recording default, so only streams that say they record get a seek bar.
            dvr_record_default: Some(false),
        }))
        .merge(metrics_route(prometheus));
    let stop = httpd::shutdown::Stop::on(httpd::shutdown::signal());
    let stopped = || stop.stopped();
    let prober = {
        let edge = edge.clone();
        let stop = stopped();
        tokio::spawn(async move { edge.probe_upstreams(stop).await })
    };
    let tls = match args.tls.resolve(None, None)? {
        Some(files) => {
            let cert = tls::load(&files)?;
            let config = tls::listener_config(&cert, true)?;
            tokio::spawn(tls::watch(cert, tls::WATCH_INTERVAL, stopped()));
            Some(config)
        }
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    print!(
        "{}",
        edge::options::banner(scheme, listener.local_addr()?, &args.origins)
    );
    crate::systemd::notify_ready();
    match tls {
        Some(tls) => httpd::serve_tls(listener, app, tls, limits, stopped()).await,
        None => httpd::serve(listener, app, limits, stopped()).await,
    }
    prober.abort();
    // The server (and its emitter) is gone: the last batch goes out, or times out.
    analytics.stop().await;
    Ok(())
}

pub(crate) async fn run_route(args: RouteArgs) -> anyhow::Result<()> {
    let prometheus = crate::serve::install_metrics()?;
    // Countries are looked up only when some edge is tied to one.
    let country_of: Option<edge::route::CountryOf> =
        if args.edges.iter().any(|e| !e.countries.is_empty()) {
            let geo = analytics::GeoIp::open_or_default(args.geoip_db.as_deref())?;
            let proxies = analytics::TrustedProxies::new(args.proxies.trusted_proxies.clone());
            Some(std::sync::Arc::new(analytics::viewer_country(geo, proxies)))
        } else {
            None
        };
    let router = edge::route::ViewerRouter::new(&args.edges, country_of);
    let stop = httpd::shutdown::Stop::on(httpd::shutdown::signal());
    let stopped = || stop.stopped();
    let probe = {
        let r = router.clone();
        let stop = stopped();
        tokio::spawn(async move { r.probe(Duration::from_secs(1), stop).await })
    };
    let listener = tokio::net::TcpListener::bind(args.http_listen)
        .await
        .with_context(|| format!("cannot listen on {} (set --http-listen)", args.http_listen))?;
    print!(
        "{}",
        edge::route::banner(listener.local_addr()?, &args.edges)
    );
    let app = router.router().merge(metrics_route(prometheus));
    let limits = crate::http_options::fit_to_process(args.http.resolve(&Default::default()));
    crate::systemd::notify_ready();
    httpd::serve(listener, app, limits, stopped()).await;
    probe.abort();
    Ok(())
}
