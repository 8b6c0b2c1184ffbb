//! Configuration: one TOML file, every key overridable by a flag and a `RIVULET_…`
//! environment variable. Precedence: flag > environment > file > default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;

/// The options every server role shares: its configuration file, its HTTP address,
/// its state directory and its database (`serve`, `meta`, `analytics`).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct NodeArgs {
    /// TOML configuration file (one file for every role; keys a role does not use are
    /// ignored). Every key in it can also be given as a flag or a RIVULET_…
    /// environment variable, which win over the file.
    #[arg(long, env = "RIVULET_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Address of the HTTP server (playlists, segments, API, pages, /metrics: what
    /// the role serves). [default: 0.0.0.0:8080]
    #[arg(long, env = "RIVULET_HTTP_LISTEN", value_name = "ADDR")]
    pub(crate) http_listen: Option<SocketAddr>,

    /// Directory for state (database, generated tokens). [default: ./rivulet-data]
    #[arg(long, env = "RIVULET_DATA_DIR", value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,

    /// The database (streams and analytics): postgres://USER:PASSWORD@HOST/DB for
    /// PostgreSQL (several nodes sharing it), or sqlite://PATH. [default: the SQLite
    /// file DATA_DIR/meta.db]
    #[arg(long, env = "RIVULET_DATABASE_URL", value_name = "URL")]
    pub(crate) database_url: Option<String>,

    #[command(flatten)]
    pub(crate) http: crate::http_options::HttpArgs,

    /// Read and check the configuration (file, flags, environment), say whether it is
    /// valid, and exit without starting anything (e.g. `ExecStartPre=` or before
    /// `systemctl reload`). Exits non-zero, naming what is wrong, if it is not.
    #[arg(long)]
    pub(crate) check: bool,
}

/// The metadata store's own options (`serve` with its store in-process, `meta`).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct StoreArgs {
    /// Bearer token for the admin API (creating streams, keys). If none is set, one is
    /// generated on the first start, stored in DATA_DIR/admin-token and printed once.
    #[arg(
        long,
        env = "RIVULET_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub(crate) admin_token: Option<String>,

    /// Declares a stream: its public NAME (in play URLs) and its secret KEY (in the
    /// publish URL), created (or given this key) at start. Repeatable. In the
    /// environment: comma-separated NAME=KEY pairs.
    #[arg(
        long = "stream",
        env = "RIVULET_STREAMS",
        value_name = "NAME=KEY",
        value_delimiter = ','
    )]
    pub(crate) streams: Vec<StreamDecl>,

    #[command(flatten)]
    pub(crate) api_limits: crate::api_limits::ApiLimitArgs,

    #[command(flatten)]
    pub(crate) webhooks: crate::hooks_options::WebhookArgs,

    #[command(flatten)]
    pub(crate) playback: PlaybackKeyArgs,
}

/// The keys of signed playback for private streams (`serve`, `meta`, `edge`).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct PlaybackKeyArgs {
    /// A key that signs and checks the playback tokens of private streams, as
    /// ID=SECRET (ID: letters, digits, '-', '_'; SECRET: at least 16 bytes).
    /// Repeatable for rotation: the first signs, all verify. Give the origins, the
    /// edges and the metadata server the same keys. In the environment:
    /// comma-separated. [default (serve, meta): a key generated into
    /// DATA_DIR/playback-key, id `local`; edge: none, private streams refused]
    #[arg(
        long = "playback-key",
        env = "RIVULET_PLAYBACK_KEYS",
        value_name = "ID=SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub(crate) playback_keys: Vec<String>,
}

impl PlaybackKeyArgs {
    /// The keys from the flags/environment, else the file's; empty if neither has any.
    pub(crate) fn resolve(
        &self,
        file: Option<&[String]>,
    ) -> anyhow::Result<access::playback::PlaybackKeys> {
        let specs = if self.playback_keys.is_empty() {
            file.unwrap_or_default()
        } else {
            &self.playback_keys
        };
        access::playback::PlaybackKeys::parse(specs)
            .context("check --playback-key (RIVULET_PLAYBACK_KEYS, playback_keys)")
    }
}

/// The options of `rivulet serve` (and of `demo`, which runs `serve` in-process).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub(crate) node: NodeArgs,

    #[command(flatten)]
    pub(crate) store: StoreArgs,

    #[command(flatten)]
    pub(crate) record: crate::recording::RecordArgs,

    /// Address of the RTMP listener (publish to rtmp://HOST:PORT/live/STREAM_KEY).
    /// [default: 0.0.0.0:1935]
    #[arg(long, env = "RIVULET_RTMP_LISTEN", value_name = "ADDR")]
    pub(crate) rtmp_listen: Option<SocketAddr>,

    /// Address of an RTMPS listener (publish to rtmps://HOST:PORT/live/STREAM_KEY):
    /// RTMP inside TLS, with the same stream keys and limits as RTMP. Needs
    /// --tls-cert and --tls-key. [default: none]
    #[arg(long, env = "RIVULET_RTMPS_LISTEN", value_name = "ADDR")]
    pub(crate) rtmps_listen: Option<SocketAddr>,

    /// Address of an HTTPS listener (HTTP/2 by ALPN) serving what the HTTP listener
    /// serves, with the same limits. Needs --tls-cert and --tls-key. [default: none]
    #[arg(long, env = "RIVULET_HTTPS_LISTEN", value_name = "ADDR")]
    pub(crate) https_listen: Option<SocketAddr>,

    #[command(flatten)]
    pub(crate) tls: crate::tls_options::TlsArgs,

    /// Use the metadata server at this base URL (a `rivulet meta`, e.g.
    /// http://meta.internal:8080) instead of the one in this process: stream keys are
    /// checked there (answers cached, see --meta-cache-ttl-ms; keys that worked keep
    /// working while it is unreachable), --stream declarations are stored there, and
    /// live state is reported there. Needs --meta-token.
    #[arg(long, env = "RIVULET_META_URL", value_name = "URL")]
    pub(crate) meta_url: Option<String>,

    /// The admin token of the metadata server at --meta-url.
    #[arg(
        long,
        env = "RIVULET_META_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub(crate) meta_token: Option<String>,

    /// How long the metadata server's "this key publishes stream X" is used without
    /// asking it again (with --meta-url). A key rotated out on the server still works
    /// here for up to this long. [default: 30000]
    #[arg(long, env = "RIVULET_META_CACHE_TTL_MS", value_name = "MS")]
    pub(crate) meta_cache_ttl_ms: Option<u64>,

    /// How long the metadata server's "no stream has this key" is used without asking
    /// it again (with --meta-url). [default: 2000]
    #[arg(long, env = "RIVULET_META_NEGATIVE_TTL_MS", value_name = "MS")]
    pub(crate) meta_negative_ttl_ms: Option<u64>,

    /// Time limit of one request to the metadata server at --meta-url; a key check
    /// that gets no answer within it counts as "unreachable". [default: 2000]
    #[arg(long, env = "RIVULET_META_TIMEOUT_MS", value_name = "MS")]
    pub(crate) meta_timeout_ms: Option<u64>,

    /// This node's name in the streams' live state (`ingest_node`).
    /// [default: HOSTNAME:RTMP_PORT]
    #[arg(long, env = "RIVULET_NODE_NAME", value_name = "NAME")]
    pub(crate) node_name: Option<String>,

    /// Target segment duration in milliseconds; segments are cut at the first
    /// keyframe at or after each multiple of it. [default: 2000]
    #[arg(long, env = "RIVULET_SEGMENT_TARGET_MS", value_name = "MS")]
    pub(crate) segment_target_ms: Option<u32>,

    /// Target part duration in milliseconds (LL-HLS partial segments). Players stay
    /// about three parts behind live. [default: 201]
    #[arg(long, env = "RIVULET_PART_TARGET_MS", value_name = "MS")]
    pub(crate) part_target_ms: Option<u32>,

    /// Complete segments listed in each media playlist (the sliding window). [default: 8]
    #[arg(long, env = "RIVULET_WINDOW_SEGMENTS", value_name = "N")]
    pub(crate) window_segments: Option<usize>,

    /// How long a stream's playlist stays live after its publisher leaves; a
    /// publisher that returns within it continues the same playlist after an
    /// EXT-X-DISCONTINUITY. [default: 10000]
    #[arg(long, env = "RIVULET_GRACE_PERIOD_MS", value_name = "MS")]
    pub(crate) grace_period_ms: Option<u64>,

    /// A stream whose publisher is connected but has sent no frame for this long
    /// reports its input `stalled` (X-Rivulet-Input on playlists, /live/NAME/health),
    /// and edges in front of an A/B pair prefer the other pipeline. [default: 2000]
    #[arg(long, env = "RIVULET_INPUT_STALL_MS", value_name = "MS")]
    pub(crate) input_stall_ms: Option<u64>,

    /// A stream whose decoded picture has been black for this long reports its input
    /// `black` (seen on transcoded streams: the passthrough is never decoded).
    /// [default: 5000]
    #[arg(long, env = "RIVULET_INPUT_BLACK_MS", value_name = "MS")]
    pub(crate) input_black_ms: Option<u64>,

    /// A stream whose decoded audio has been silent (below -60 dBFS) for this long
    /// reports its input `silent` (seen on transcoded streams). [default: 10000]
    #[arg(long, env = "RIVULET_INPUT_SILENT_MS", value_name = "MS")]
    pub(crate) input_silent_ms: Option<u64>,

    /// The renditions every stream gets, by name: `source` passes the published stream
    /// through untouched; any other name is a rung of the ladder (the config file's
    /// [[ladder]], or the default 1080p, 720p, 480p, 360p, 234p), transcoded with
    /// libx264 and never above the source's height. `--renditions source` turns
    /// transcoding off. [default: every rung of the ladder]
    #[arg(
        long,
        env = "RIVULET_RENDITIONS",
        value_name = "NAME,…",
        value_delimiter = ','
    )]
    pub(crate) renditions: Vec<String>,
    #[command(flatten)]
    pub(crate) analytics: AnalyticsArgs,
    #[command(flatten)]
    pub(crate) rtmp_limits: crate::rtmp_limits::RtmpLimitArgs,
    #[command(flatten)]
    pub(crate) webrtc: crate::webrtc_options::WebRtcArgs,
    #[command(flatten)]
    pub(crate) srt: crate::srt_options::SrtArgs,

    #[command(flatten)]
    pub(crate) held: crate::http_options::HeldArgs,

    #[command(flatten)]
    pub(crate) publish_hook: crate::hooks_options::PublishHookArgs,

    #[command(flatten)]
    pub(crate) send: AnalyticsSendArgs,

    /// Turn analytics off: no delivery events, no /api/analytics.
    #[arg(long, env = "RIVULET_NO_ANALYTICS")]
    pub(crate) no_analytics: bool,
}

/// Where delivery events go, shared by `serve` and `edge`.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct AnalyticsSendArgs {
    /// Send a delivery event for every request this node answers to the analytics
    /// server at this base URL (`rivulet analytics`, or `rivulet serve` for an edge),
    /// e.g. http://analytics.example:8080; `serve` then runs no analytics of its own.
    /// Events it cannot take are dropped and counted, never waited for. [default:
    /// `serve` records in-process, `edge` sends none]
    #[arg(long, env = "RIVULET_ANALYTICS_URL", value_name = "URL")]
    pub(crate) analytics_url: Option<String>,

    /// Delivery events queued for analytics at most; more are dropped (and counted in
    /// analytics_events_dropped_total) rather than slow serving down. [default: 65536]
    #[arg(long, env = "RIVULET_ANALYTICS_QUEUE", value_name = "EVENTS")]
    pub(crate) analytics_queue: Option<usize>,
}

/// The options of the analytics server, shared by `serve` and `analytics`.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct AnalyticsArgs {
    /// The IP-to-country database (MaxMind format with a `country_code` field).
    /// [default: analytics-data/node_modules/@ip-location-db/geo-whois-asn-country-mmdb/
    /// geo-whois-asn-country.mmdb, installed by scripts/setup.sh; without it every
    /// country is "unknown"]
    #[arg(long, env = "RIVULET_GEOIP_DB", value_name = "FILE")]
    pub(crate) geoip_db: Option<PathBuf>,

    #[command(flatten)]
    pub(crate) proxies: TrustedProxyArgs,

    /// Hours raw analytics events (which hold client addresses) are kept before they
    /// are deleted; per-minute rollups (no addresses) are kept. [default: 48]
    #[arg(long, env = "RIVULET_ANALYTICS_RETENTION_HOURS", value_name = "HOURS")]
    pub(crate) analytics_retention_hours: Option<u64>,

    /// A session counts as a concurrent viewer while its last request or beacon is at
    /// most this old, and gaps longer than this are not watch time. [default: three
    /// segment target durations, 6000 with the default segments]
    #[arg(long, env = "RIVULET_ANALYTICS_WINDOW_MS", value_name = "MS")]
    pub(crate) analytics_window_ms: Option<u64>,

    #[command(flatten)]
    pub(crate) token: AnalyticsTokenArgs,

    #[command(flatten)]
    pub(crate) limits: crate::analytics_limits::AnalyticsLimitArgs,
}

/// The analytics events token: `serve`, `analytics` and `edge`.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct AnalyticsTokenArgs {
    /// Bearer token of delivery events POSTed to /api/analytics/events: the one the
    /// analytics server checks (`rivulet analytics` without one generates it into
    /// DATA_DIR/analytics-token; `serve` without one records its own deliveries
    /// in-process and refuses events over HTTP), and the one `serve --analytics-url`
    /// and `edge` send theirs with; set the same on both sides. [default: none]
    #[arg(
        long,
        env = "RIVULET_ANALYTICS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub(crate) analytics_token: Option<String>,
}

/// The proxies whose `X-Forwarded-For` is believed for a client's address (for its
/// country and its per-client limits): `serve`, `analytics`, `edge`, `route`.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct TrustedProxyArgs {
    /// A proxy (address, or network as ADDRESS/PREFIX) in front of this server whose
    /// X-Forwarded-For header is believed for the client's address. Repeatable. In the
    /// environment: comma-separated. From any other peer the header is ignored.
    #[arg(
        long = "trusted-proxy",
        env = "RIVULET_TRUSTED_PROXIES",
        value_name = "ADDR[/PREFIX]",
        value_delimiter = ','
    )]
    pub(crate) trusted_proxies: Vec<analytics::ProxyNet>,
}

/// `NAME=KEY`.
pub(crate) use meta::declared::StreamDecl;

/// The TOML file. Field names are the long flag names with `_` for `-`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    rtmp_listen: Option<SocketAddr>,
    http_listen: Option<SocketAddr>,
    rtmps_listen: Option<SocketAddr>,
    https_listen: Option<SocketAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    admin_token: Option<String>,
    playback_keys: Option<Vec<String>>,
    meta_url: Option<String>,
    meta_token: Option<String>,
    meta_cache_ttl_ms: Option<u64>,
    meta_negative_ttl_ms: Option<u64>,
    meta_timeout_ms: Option<u64>,
    node_name: Option<String>,
    segment_target_ms: Option<u32>,
    part_target_ms: Option<u32>,
    window_segments: Option<usize>,
    grace_period_ms: Option<u64>,
    input_stall_ms: Option<u64>,
    input_black_ms: Option<u64>,
    input_silent_ms: Option<u64>,
    renditions: Option<Vec<String>>,
    #[serde(default)]
    streams: Vec<StreamDecl>,
    /// Replaces the default ladder.
    ladder: Option<Vec<transcode::Rung>>,
    geoip_db: Option<PathBuf>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    analytics_retention_hours: Option<u64>,
    analytics_window_ms: Option<u64>,
    analytics_token: Option<String>,
    analytics_url: Option<String>,
    no_analytics: Option<bool>,
    analytics_queue: Option<usize>,
    /// The RTMP listener's limits.
    #[serde(default)]
    rtmp: crate::rtmp_limits::RtmpLimitFile,
    /// WebRTC (WHEP): the UDP socket, candidates, the session cap.
    #[serde(default)]
    webrtc: crate::webrtc_options::WebRtcFile,
    /// The SRT listener's address (or `off`) and its `[srt]` options.
    srt_listen: Option<String>,
    #[serde(default)]
    srt: crate::srt_options::SrtFile,
    /// The HTTP server's limits and held requests.
    #[serde(default)]
    http: crate::http_options::HttpFile,
    analytics_limits: Option<crate::analytics_limits::AnalyticsLimitsFile>,
    api_limits: Option<crate::api_limits::ApiLimitsFile>,
    #[serde(default)]
    webhooks: Vec<meta::webhooks::DeclaredWebhook>,
    webhook_timeout_ms: Option<u64>,
    webhook_retry_for_ms: Option<u64>,
    on_publish_url: Option<String>,
    on_publish_timeout_ms: Option<u64>,
    on_publish_fail_open: Option<bool>,
    on_publish_secret: Option<String>,
    /// Recording (docs/recording.md).
    record: Option<crate::recording::RecordFile>,
}

impl FileConfig {
    /// The keys of webhooks and the authorisation hook.
    fn hooks(&self) -> crate::hooks_options::HooksFile {
        crate::hooks_options::HooksFile {
            webhooks: self.webhooks.clone(),
            webhook_timeout_ms: self.webhook_timeout_ms,
            webhook_retry_for_ms: self.webhook_retry_for_ms,
            on_publish_url: self.on_publish_url.clone(),
            on_publish_timeout_ms: self.on_publish_timeout_ms,
            on_publish_fail_open: self.on_publish_fail_open,
            on_publish_secret: self.on_publish_secret.clone(),
        }
    }
}

/// The resolved configuration of `serve`.
#[derive(Debug, Clone)]
pub(crate) struct ServeConfig {
    pub(crate) rtmp_listen: SocketAddr,
    pub(crate) http_listen: SocketAddr,
    /// The TLS listeners, if any, and the certificate they present.
    pub(crate) tls: tls::ListenOptions,
    pub(crate) data_dir: PathBuf,
    pub(crate) database_url: Option<String>,
    /// `None`: use the one in the data directory, or generate it.
    pub(crate) admin_token: Option<meta::AdminToken>,
    pub(crate) streams: Vec<StreamDecl>,
    pub(crate) packager: package::PackagerConfig,
    pub(crate) grace_period: Duration,
    pub(crate) health: origin::HealthConfig,
    /// The renditions to make: `source` (passthrough) and/or rungs of `ladder`.
    pub(crate) renditions: Vec<String>,
    pub(crate) ladder: Vec<transcode::Rung>,
    pub(crate) record: crate::recording::RecordSettings,
    pub(crate) analytics: AnalyticsSettings,
    /// Where streams and keys live.
    pub(crate) meta: MetaMode,
    /// `None`: HOSTNAME:RTMP_PORT.
    pub(crate) node_name: Option<String>,
    /// The RTMP listener's limits and timeouts.
    pub(crate) rtmp: ingest::RtmpConfig,
    pub(crate) srt: crate::srt_options::SrtOptions,
    /// The HTTP server's limits and timeouts.
    pub(crate) http: httpd::HttpLimits,
    /// Requests held open (blocking reloads, part waits) at most.
    pub(crate) held: httpd::HeldLimits,
    /// Largest request body of the metadata API.
    pub(crate) api_max_body: usize,
    /// Webhooks (declared, and how they are sent), where the metadata store runs here.
    pub(crate) webhooks: crate::hooks_options::WebhookSettings,
    /// The publish authorisation hook, if one is configured.
    pub(crate) publish_hook: Option<meta::publish_hook::PublishHookConfig>,
    /// Keys of signed playback; empty: the one in the data directory, or generate it.
    pub(crate) playback_keys: access::playback::PlaybackKeys,
    /// WebRTC (WHEP) playback.
    pub(crate) webrtc: crate::webrtc_options::WebRtcSettings,
}

/// Where `serve`'s streams and keys live.
#[derive(Debug, Clone)]
pub(crate) enum MetaMode {
    /// The metadata store and API run in this process.
    Local,
    /// A remote metadata server (`rivulet meta`).
    Remote(RemoteMetaSettings),
}

/// How `serve` talks to a remote metadata server.
pub(crate) use meta::remote::RemoteSettings as RemoteMetaSettings;

pub(crate) use analytics::{AnalyticsMode, AnalyticsSettings};

impl ServeArgs {
    /// Merges flags/environment over the config file over the defaults, and validates.
    pub(crate) fn resolve(&self) -> anyhow::Result<ServeConfig> {
        let file = match &self.node.config {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        let hooks = file.hooks();
        let packager = self.packager_config(&file)?;
        let streams = self.declared_streams(&file)?;
        let (renditions, ladder) = self.renditions(&file)?;
        let analytics = self.analytics_settings(&file, &packager)?;
        let meta = self.meta_mode(&file)?;
        let health = self.health_config(&file);
        let tls = self.tls_listeners(&file)?;
        let node_name = self.node_name.clone().or(file.node_name);
        if let Some(node) = &node_name {
            meta::validate_node_name(node, "node_name")
                .map_err(|e| anyhow::anyhow!(e.reason))
                .context("check --node-name (RIVULET_NODE_NAME, node_name)")?;
        }

        Ok(ServeConfig {
            tls,
            webhooks: self
                .store
                .webhooks
                .resolve(&hooks)
                .context("check the webhooks")?,
            publish_hook: self
                .publish_hook
                .resolve(&hooks)
                .context("check the authorisation hook (on_publish_url)")?,
            playback_keys: self.store.playback.resolve(file.playback_keys.as_deref())?,
            rtmp: self.rtmp_limits.resolve(&file.rtmp)?,
            webrtc: self.webrtc.resolve(&file.webrtc)?,
            srt: self
                .srt
                .resolve(file.srt_listen.as_deref(), &file.srt)
                .context("check the SRT options")?,
            http: {
                let mut http = self.node.http.resolve(&file.http);
                // The analytics events endpoint takes batches up to 8 MiB: unless the
                // operator set a limit, the server-wide one does not cut below it.
                if !self.node.http.body_limit_given(&file.http) {
                    http.max_body_bytes = http.max_body_bytes.max(analytics::api::MAX_EVENTS_BODY);
                }
                http
            },
            held: self.held.resolve(&file.http),
            api_max_body: self.store.api_limits.resolve(file.api_limits.as_ref())?,
            record: self
                .record
                .resolve(file.record.as_ref())
                .context("check the [record] options")?,
            meta,
            node_name,
            analytics,
            rtmp_listen: self
                .rtmp_listen
                .or(file.rtmp_listen)
                .unwrap_or(([0, 0, 0, 0], 1935).into()),
            http_listen: self
                .node
                .http_listen
                .or(file.http_listen)
                .unwrap_or(([0, 0, 0, 0], 8080).into()),
            data_dir: self
                .node
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("rivulet-data")),
            database_url: self.node.database_url.clone().or(file.database_url),
            admin_token: self
                .store
                .admin_token
                .clone()
                .or(file.admin_token)
                .map(meta::AdminToken::new)
                .transpose()
                .context("check --admin-token (RIVULET_ADMIN_TOKEN, admin_token)")?,
            streams,
            packager,
            grace_period: Duration::from_millis(
                self.grace_period_ms
                    .or(file.grace_period_ms)
                    .unwrap_or(10_000),
            ),
            health,
            renditions,
            ladder,
        })
    }

    /// The RTMPS and HTTPS listeners and the certificate files they need.
    fn tls_listeners(&self, file: &FileConfig) -> anyhow::Result<tls::ListenOptions> {
        let files = self
            .tls
            .resolve(file.tls_cert.clone(), file.tls_key.clone())?;
        let options = tls::ListenOptions {
            rtmps_listen: self.rtmps_listen.or(file.rtmps_listen),
            https_listen: self.https_listen.or(file.https_listen),
            files,
        };
        Ok(options.check()?)
    }

    /// Segment and part targets, and the playlist window.
    fn packager_config(&self, file: &FileConfig) -> anyhow::Result<package::PackagerConfig> {
        package::PackagerConfig::with(
            self.segment_target_ms.or(file.segment_target_ms),
            self.part_target_ms.or(file.part_target_ms),
            self.window_segments.or(file.window_segments),
        )
        .context("check segment_target_ms, part_target_ms and window_segments")
    }

    /// The streams of the file, with those given as flags (which win by name).
    fn declared_streams(&self, file: &FileConfig) -> anyhow::Result<Vec<StreamDecl>> {
        Ok(StreamDecl::merge(&file.streams, &self.store.streams)?)
    }

    /// The renditions every stream gets, and the ladder their rungs come from.
    fn renditions(&self, file: &FileConfig) -> anyhow::Result<(Vec<String>, Vec<transcode::Rung>)> {
        let given = (!self.renditions.is_empty()).then(|| self.renditions.clone());
        Ok(transcode::ladder::resolve_renditions(
            given.or(file.renditions.clone()),
            file.ladder.clone(),
        )?)
    }

    /// Where delivery events go, and the analytics server's options.
    fn analytics_settings(
        &self,
        file: &FileConfig,
        packager: &package::PackagerConfig,
    ) -> anyhow::Result<AnalyticsSettings> {
        let a = &self.analytics;
        let options = analytics::AnalyticsOptions {
            url: self
                .send
                .analytics_url
                .clone()
                .or(file.analytics_url.clone()),
            off: self.no_analytics || file.no_analytics == Some(true),
            geoip_db: a.geoip_db.clone().or(file.geoip_db.clone()),
            trusted_proxies: a.proxies.trusted_proxies.clone(),
            file_trusted_proxies: file.trusted_proxies.clone(),
            retention_hours: a
                .analytics_retention_hours
                .or(file.analytics_retention_hours),
            window_ms: a.analytics_window_ms.or(file.analytics_window_ms),
            token: a
                .token
                .analytics_token
                .clone()
                .or(file.analytics_token.clone()),
            queue: self.send.analytics_queue.or(file.analytics_queue),
            limits: a.limits.resolve(file.analytics_limits.as_ref())?,
        };
        Ok(options.resolve(packager.segment_target_ms)?)
    }

    /// Where streams and keys live: here, or on a remote metadata server.
    fn meta_mode(&self, file: &FileConfig) -> anyhow::Result<MetaMode> {
        let remote = meta::remote::RemoteOptions {
            url: self.meta_url.clone().or(file.meta_url.clone()),
            token: self.meta_token.clone().or(file.meta_token.clone()),
            cache_ttl_ms: self.meta_cache_ttl_ms.or(file.meta_cache_ttl_ms),
            negative_ttl_ms: self.meta_negative_ttl_ms.or(file.meta_negative_ttl_ms),
            timeout_ms: self.meta_timeout_ms.or(file.meta_timeout_ms),
        };
        Ok(remote.resolve()?.map_or(MetaMode::Local, MetaMode::Remote))
    }

    /// When the input counts as stalled, black or silent.
    fn health_config(&self, file: &FileConfig) -> origin::HealthConfig {
        origin::HealthConfig::from_ms(
            self.input_stall_ms.or(file.input_stall_ms),
            self.input_black_ms.or(file.input_black_ms),
            self.input_silent_ms.or(file.input_silent_ms),
        )
    }
}

/// The options of `rivulet meta`: the metadata server alone (API and database).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct MetaArgs {
    #[command(flatten)]
    pub(crate) node: NodeArgs,

    #[command(flatten)]
    pub(crate) store: StoreArgs,
}

/// The resolved configuration of `meta`.
#[derive(Debug, Clone)]
pub(crate) struct MetaConfig {
    pub(crate) http_listen: SocketAddr,
    pub(crate) data_dir: PathBuf,
    pub(crate) database_url: Option<String>,
    pub(crate) admin_token: Option<meta::AdminToken>,
    pub(crate) streams: Vec<StreamDecl>,
    pub(crate) http: httpd::HttpLimits,
    pub(crate) api_max_body: usize,
    pub(crate) webhooks: crate::hooks_options::WebhookSettings,
    pub(crate) playback_keys: access::playback::PlaybackKeys,
}

impl MetaArgs {
    /// Merges flags/environment over the config file over the defaults, and validates.
    pub(crate) fn resolve(&self) -> anyhow::Result<MetaConfig> {
        // `serve`'s resolution does the merging and checks; `meta` takes its share.
        let serve = ServeArgs {
            node: self.node.clone(),
            store: self.store.clone(),
            ..Default::default()
        }
        .resolve()?;
        Ok(MetaConfig {
            http: serve.http,
            api_max_body: serve.api_max_body,
            http_listen: serve.http_listen,
            data_dir: serve.data_dir,
            database_url: serve.database_url,
            admin_token: serve.admin_token,
            streams: serve.streams,
            webhooks: serve.webhooks,
            playback_keys: serve.playback_keys,
        })
    }
}

/// The options of `rivulet analytics`: the analytics server alone.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct AnalyticsCmdArgs {
    #[command(flatten)]
    pub(crate) node: NodeArgs,

    /// The segment target duration of the servers that feed this one, in
    /// milliseconds: the default activity window is three of them. [default: 2000]
    #[arg(long, env = "RIVULET_SEGMENT_TARGET_MS", value_name = "MS")]
    pub(crate) segment_target_ms: Option<u32>,

    #[command(flatten)]
    pub(crate) analytics: AnalyticsArgs,
}

/// The resolved configuration of `analytics`.
#[derive(Debug, Clone)]
pub(crate) struct AnalyticsCmdConfig {
    pub(crate) http_listen: SocketAddr,
    pub(crate) data_dir: PathBuf,
    pub(crate) database_url: Option<String>,
    pub(crate) analytics: AnalyticsSettings,
    pub(crate) http: httpd::HttpLimits,
}

impl AnalyticsCmdArgs {
    /// Merges flags/environment over the config file over the defaults, and validates.
    pub(crate) fn resolve(&self) -> anyhow::Result<AnalyticsCmdConfig> {
        let serve = ServeArgs {
            node: self.node.clone(),
            segment_target_ms: self.segment_target_ms,
            analytics: self.analytics.clone(),
            ..Default::default()
        }
        .resolve()?;
        Ok(AnalyticsCmdConfig {
            http: serve.http,
            http_listen: serve.http_listen,
            data_dir: serve.data_dir,
            database_url: serve.database_url,
            analytics: AnalyticsSettings {
                mode: AnalyticsMode::Local,
                ..serve.analytics
            },
        })
    }
}

fn read_file_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {} is not valid", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The node options with only a config file.
    fn with_file(path: PathBuf) -> NodeArgs {
        NodeArgs {
            config: Some(path),
            ..NodeArgs::default()
        }
    }

    #[test]
    fn flags_win_over_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rivulet.toml");
        std::fs::write(
            &path,
            "http_listen = \"127.0.0.1:9999\"\npart_target_ms = 250\n[[streams]]\nname = \"a\"\nkey = \"key-a\"\n",
        )
        .expect("write");
        let args = ServeArgs {
            node: with_file(path),
            part_target_ms: Some(300),
            store: StoreArgs {
                streams: vec!["b=key-b".parse().expect("decl")],
                ..StoreArgs::default()
            },
            ..Default::default()
        };
        let c = args.resolve().expect("valid");
        assert_eq!(c.http_listen, "127.0.0.1:9999".parse().expect("addr"));
        assert_eq!(c.rtmp_listen, "0.0.0.0:1935".parse().expect("addr"));
        assert_eq!(c.packager.part_target_ms, 300);
        assert_eq!(c.streams.len(), 2);
        assert_eq!(c.database_url, None);
        assert!(c.admin_token.is_none());
    }

    #[test]
    fn ladder_rungs_name_their_codec() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rivulet.toml");
        let rung = |codec: &str| {
            format!(
                "renditions = [\"360p\", \"360p-x\"]\n[[ladder]]\nname = \"360p\"\nheight = 360\nbitrate = 730000\n[[ladder]]\nname = \"360p-x\"\nheight = 360\nbitrate = 500000\ncodec = \"{codec}\"\n"
            )
        };
        std::fs::write(&path, rung("hevc")).expect("write");
        let args = ServeArgs {
            node: with_file(path.clone()),
            ..Default::default()
        };
        let c = args.resolve().expect("valid");
        let codecs: Vec<media::VideoCodec> = c.ladder.iter().map(|r| r.codec).collect();
        assert_eq!(codecs, [media::VideoCodec::Avc, media::VideoCodec::Hevc]);
        std::fs::write(&path, rung("vp9")).expect("write");
        let args = ServeArgs {
            node: with_file(path),
            ..Default::default()
        };
        let err = format!("{:#}", args.resolve().unwrap_err());
        assert!(err.contains("unknown video codec 'vp9'"), "{err}");
    }

    #[test]
    fn meta_takes_its_share_of_the_same_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rivulet.toml");
        std::fs::write(
            &path,
            "rtmp_listen = \"127.0.0.1:1\"\ndatabase_url = \"postgres://db/x\"\nadmin_token = \"from-the-file\"\n",
        )
        .expect("write");
        let c = MetaArgs {
            node: with_file(path),
            store: StoreArgs {
                admin_token: Some("from-the-flag".into()),
                ..StoreArgs::default()
            },
        }
        .resolve()
        .expect("valid");
        assert_eq!(c.database_url.as_deref(), Some("postgres://db/x"));
        assert!(c.admin_token.expect("token").matches("from-the-flag"));
        let short = MetaArgs {
            store: StoreArgs {
                admin_token: Some("short".into()),
                ..StoreArgs::default()
            },
            ..Default::default()
        };
        assert!(format!("{:#}", short.resolve().unwrap_err()).contains("admin-token"));
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        assert!(
            "nokey"
                .parse::<StreamDecl>()
                .unwrap_err()
                .to_string()
                .contains("NAME=KEY")
        );
        assert!(
            "bad name=key1"
                .parse::<StreamDecl>()
                .unwrap_err()
                .to_string()
                .contains("letters, digits")
        );
        assert!("Upper=key1".parse::<StreamDecl>().is_err());
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rivulet.toml");
        std::fs::write(&path, "part_target_msec = 250\n").expect("write");
        let err = ServeArgs {
            node: with_file(path),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(format!("{err:#}").contains("part_target_msec"), "{err:#}");
        let dup = ServeArgs {
            store: StoreArgs {
                streams: vec![
                    "a=same-key".parse().expect("decl"),
                    "b=same-key".parse().expect("decl"),
                ],
                ..StoreArgs::default()
            },
            ..Default::default()
        };
        assert!(format!("{:#}", dup.resolve().unwrap_err()).contains("same key"));
    }

    #[test]
    fn remote_meta_options() {
        assert!(matches!(
            ServeArgs::default().resolve().expect("resolve").meta,
            MetaMode::Local
        ));
        let no_token = ServeArgs {
            meta_url: Some("http://meta:8080".into()),
            ..Default::default()
        };
        let err = format!("{:#}", no_token.resolve().unwrap_err());
        assert!(err.contains("--meta-token"), "{err}");
        let bad_url = ServeArgs {
            meta_url: Some("meta:8080".into()),
            meta_token: Some("a-token-of-16-chars".into()),
            ..Default::default()
        };
        let err = format!("{:#}", bad_url.resolve().unwrap_err());
        assert!(
            err.contains("--meta-url") && err.contains("http://"),
            "{err}"
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rivulet.toml");
        std::fs::write(
            &path,
            "meta_url = \"http://meta:8080\"\nmeta_token = \"from-the-file-123\"\nmeta_cache_ttl_ms = 5000\nnode_name = \"ingest-a\"\n",
        )
        .expect("write");
        let c = ServeArgs {
            node: with_file(path),
            meta_negative_ttl_ms: Some(100),
            ..Default::default()
        }
        .resolve()
        .expect("resolve");
        let MetaMode::Remote(remote) = c.meta else {
            panic!("not remote: {:?}", c.meta)
        };
        assert_eq!(remote.url, "http://meta:8080");
        assert_eq!(remote.token, "from-the-file-123");
        assert_eq!(remote.cache.ttl, Duration::from_secs(5));
        assert_eq!(remote.cache.negative_ttl, Duration::from_millis(100));
        assert_eq!(remote.client.timeout, Duration::from_secs(2));
        assert!(!format!("{remote:?}").contains("from-the-file"));
        assert_eq!(c.node_name.as_deref(), Some("ingest-a"));
        let bad_node = ServeArgs {
            node_name: Some(String::new()),
            ..Default::default()
        };
        assert!(format!("{:#}", bad_node.resolve().unwrap_err()).contains("--node-name"));
    }

    #[test]
    fn analytics_options() {
        let c = ServeArgs {
            segment_target_ms: Some(1000),
            ..Default::default()
        }
        .resolve()
        .expect("resolve");
        // Three segment target durations by default.
        assert_eq!(c.analytics.window_ms, 3000);
        assert_eq!(c.analytics.mode, AnalyticsMode::Local);
        assert_eq!(c.analytics.retention, Duration::from_secs(48 * 3600));
        let bad = ServeArgs {
            send: AnalyticsSendArgs {
                analytics_url: Some("ftp://x".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(format!("{:#}", bad.resolve().unwrap_err()).contains("analytics-url"));

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rivulet.toml");
        std::fs::write(
            &path,
            "trusted_proxies = [\"10.0.0.0/8\"]\nanalytics_window_ms = 1500\nanalytics_url = \"http://a:1\"\nanalytics_retention_hours = 1\n",
        )
        .expect("write");
        let c = ServeArgs {
            node: with_file(path.clone()),
            ..Default::default()
        }
        .resolve()
        .expect("resolve");
        assert_eq!(c.analytics.mode, AnalyticsMode::Remote("http://a:1".into()));
        assert_eq!(c.analytics.window_ms, 1500);
        assert_eq!(c.analytics.retention, Duration::from_secs(3600));
        assert!(
            c.analytics
                .trusted_proxies
                .contains("10.9.8.7".parse().expect("ip"))
        );
        // A flag wins over the file.
        let c = ServeArgs {
            node: with_file(path),
            no_analytics: true,
            ..Default::default()
        }
        .resolve()
        .expect("resolve");
        assert_eq!(c.analytics.mode, AnalyticsMode::Off);
    }

    #[test]
    fn tls_listeners_come_with_their_files_from_flags_or_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rivulet.toml");
        std::fs::write(
            &path,
            "rtmps_listen = \"127.0.0.1:1936\"\ntls_cert = \"/etc/c.pem\"\ntls_key = \"/etc/k.pem\"\n",
        )
        .expect("write");
        let args = ServeArgs {
            node: with_file(path),
            https_listen: Some("127.0.0.1:8443".parse().expect("addr")),
            tls: crate::tls_options::TlsArgs {
                tls_cert: Some("/flag/c.pem".into()),
                tls_key: None,
            },
            ..Default::default()
        };
        let c = args.resolve().expect("valid");
        assert_eq!(
            c.tls.rtmps_listen,
            Some("127.0.0.1:1936".parse().expect("addr"))
        );
        assert_eq!(
            c.tls.https_listen,
            Some("127.0.0.1:8443".parse().expect("addr"))
        );
        assert_eq!(
            c.tls.files,
            Some(tls::CertificateFiles::new("/flag/c.pem", "/etc/k.pem")),
            "the flag wins, the file fills the rest"
        );

        let no_files = ServeArgs {
            rtmps_listen: Some("127.0.0.1:1936".parse().expect("addr")),
            ..Default::default()
        };
        let e = no_files.resolve().unwrap_err().to_string();
        assert!(e.contains("--rtmps-listen needs --tls-cert"), "{e}");
        let half = ServeArgs {
            tls: crate::tls_options::TlsArgs {
                tls_cert: Some("/c.pem".into()),
                tls_key: None,
            },
            ..Default::default()
        };
        let e = half.resolve().unwrap_err().to_string();
        assert!(e.contains("--tls-cert needs --tls-key"), "{e}");
        assert!(
            ServeArgs::default()
                .resolve()
                .expect("valid")
                .tls
                .files
                .is_none()
        );
    }
}
