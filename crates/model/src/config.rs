//! The configuration file: `[server]` and `[[site]]` tables, their defaults, and validation that
//! names the file, line and key of every mistake.
//!
//! Every default below is documented in `docs/config.md`; keep the two in step.

use crate::address::{ListenerAddress, Network};
use crate::challenge::{ChallengeSettings, FileChallenge, SiteState, Suspension};
use crate::cluster::{ClusterRole, ClusterSettings, FileCluster};
use crate::duration::{as_text, as_text_opt};
use crate::locate::Source;
use crate::shield::{
    FileGlobalShield, FileRateLimit, FileRule, FileSiteShield, GlobalShield, RateLimit, Rule,
    SiteShield, validate_rate_limits, validate_rules,
};
use crate::size::as_size;
use crate::{HostPattern, Origin};
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// A validated configuration: what the edge builds its snapshot from.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The `[server]` table.
    pub server: ServerSettings,
    /// The `[[site]]` tables, in file order (the control plane appends the sites it stores).
    pub sites: Vec<Site>,
    /// The `[shield]` table: lists for every site.
    pub shield: GlobalShield,
    /// The `[cluster]` table: `None` for a node on its own.
    pub cluster: Option<ClusterSettings>,
}

/// The `[server]` table: listeners, data directory, limits that apply to every site.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// Cleartext listeners: HTTP/1.1 and h2c with prior knowledge.
    pub listen: Vec<SocketAddr>,
    /// TLS listeners: ALPN h2 and http/1.1, certificate chosen by SNI.
    pub listen_tls: Vec<SocketAddr>,
    /// Admin listener: `/metrics`, `/healthz`, the admin API.
    pub admin: SocketAddr,
    /// Networks whose peers may read `/metrics` without a token, as written; `None`: the
    /// default, see [`ServerSettings::metrics_open_to`].
    pub metrics_open_to: Option<Vec<IpNet>>,
    /// Where the edge keeps its state: the cache's disk tier, the challenge's signing keys, the
    /// control plane's store. Default `./palisade-data`, relative to the configuration file.
    pub data_dir: PathBuf,
    /// Peers whose `X-Forwarded-*` and `Forwarded` headers are believed and appended to.
    pub trusted_proxies: Vec<IpNet>,
    /// Where access-log lines go (default stdout), and how they are buffered, flushed and
    /// sampled.
    pub access_log: AccessLogSettings,
    /// Threads serving connections; `None` means one per CPU core.
    pub workers: Option<usize>,
    /// Timeouts and caps on connections and requests, for every site.
    pub limits: ServerLimits,
    /// The cache's memory and disk bounds.
    pub cache: CacheStorage,
    /// The operator's own hostname (normalised): where abuse reports are taken for every site
    /// when no site claims the name. Any other path there gets 404.
    pub operator_host: Option<String>,
    /// How long the control plane keeps per-minute analytics (default 7 days).
    pub analytics_retention: Duration,
}

impl ServerSettings {
    /// The networks whose peers read `/metrics` without a token: `metrics_open_to` as written,
    /// else loopback when the admin listener is `bound` to a loopback address, and nothing
    /// when it is bound beyond (a peer there may be anyone the network lets through).
    ///
    /// ```
    /// let config = model::Config::from_toml_str("palisade.toml", "").unwrap();
    /// let loopback = "127.0.0.1:9090".parse().unwrap();
    /// assert_eq!(config.server.metrics_open_to(loopback).len(), 2);
    /// assert!(config.server.metrics_open_to("0.0.0.0:9090".parse().unwrap()).is_empty());
    /// ```
    pub fn metrics_open_to(&self, bound: SocketAddr) -> Vec<IpNet> {
        match &self.metrics_open_to {
            Some(networks) => networks.clone(),
            None if bound.ip().is_loopback() => vec![
                IpNet::V4(ipnet::Ipv4Net::new_assert(
                    std::net::Ipv4Addr::new(127, 0, 0, 0),
                    8,
                )),
                IpNet::from(std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)),
            ],
            None => Vec::new(),
        }
    }
}

/// The default of `server.analytics_retention`: a week of minutes, about 10k rows per site.
pub const DEFAULT_ANALYTICS_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Where the cache keeps objects, shared by every site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStorage {
    /// Bound of the memory tier, in bytes (stored headers and bodies).
    pub memory_bytes: u64,
    /// Bound of the disk tier under `data_dir/cache`, in bytes; 0 turns the disk tier off.
    pub disk_bytes: u64,
}

impl Default for CacheStorage {
    fn default() -> Self {
        CacheStorage {
            memory_bytes: 256 << 20,
            disk_bytes: 1 << 30,
        }
    }
}

/// Where access-log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// Standard output, one line per request (the default).
    Stdout,
    /// No access log (`access_log = "off"`).
    Off,
    /// Appended to this file; relative to the configuration file's directory.
    File(PathBuf),
}

/// The access log: where lines go (`access_log`) and how they get there.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogSettings {
    /// Where lines go: stdout, a file or nowhere.
    pub target: AccessLogTarget,
    /// `access_log_buffer`: bytes of lines a worker thread gathers before handing them to the
    /// writer in one write.
    pub buffer_bytes: usize,
    /// `access_log_flush`: the longest a line waits in a buffer before it is written.
    pub flush: Duration,
    /// `access_log_sample`: the fraction of requests logged, more than 0 and at most 1.
    pub sample: f64,
}

impl AccessLogSettings {
    /// Smallest `access_log_buffer`: a few lines.
    pub const MIN_BUFFER_BYTES: usize = 4 << 10;
    /// Largest `access_log_buffer`: the writer keeps a few full buffers queued, and every
    /// worker thread one.
    pub const MAX_BUFFER_BYTES: usize = 16 << 20;
    /// Shortest `access_log_flush`: below it the writer would wake more often than it writes.
    pub const MIN_FLUSH: Duration = Duration::from_millis(10);
    /// Longest `access_log_flush`: a line older than a minute is no longer what `tail -f` is for.
    pub const MAX_FLUSH: Duration = Duration::from_secs(60);
}

impl Default for AccessLogSettings {
    /// 64 KiB buffers (nginx's `buffer=64k`), written at least once a second, every request.
    fn default() -> Self {
        AccessLogSettings {
            target: AccessLogTarget::Stdout,
            buffer_bytes: 64 << 10,
            flush: Duration::from_secs(1),
            sample: 1.0,
        }
    }
}

/// Connection and request limits. Defaults are chosen to stop slowloris-style abuse without
/// hurting real browsers; each is documented in docs/config.md.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerLimits {
    /// Time a client has, from its first byte, to send a request's complete header section.
    pub header_read_timeout: Duration,
    /// How long a connection may sit with no request in progress before it is closed.
    pub idle_timeout: Duration,
    /// Time allowed for a TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Largest request header section, in bytes (HTTP/1.1 and HTTP/2).
    pub max_header_bytes: usize,
    /// Most header fields in one request.
    pub max_headers: usize,
    /// Open client connections in total; over it, new connections are closed at once.
    pub max_connections: u32,
    /// Open client connections from one IP address.
    pub max_connections_per_ip: u32,
    /// New connections admitted from one IPv4 address (or IPv6 /64) per
    /// `new_connections_period`; further ones are closed at accept.
    pub max_new_connections_per_ip: u32,
    /// The sliding window `max_new_connections_per_ip` is counted over.
    pub new_connections_period: Duration,
    /// Slowest request body accepted, in bytes per second, measured over each
    /// `request_body_timeout` the edge spends waiting for the client (slow POST).
    pub min_request_body_rate: u64,
    /// The window `min_request_body_rate` is measured over: a body that stalls for this long
    /// is cut off.
    pub request_body_timeout: Duration,
    /// A connection whose writes make no progress for this long (the client stopped reading)
    /// is closed (slow read).
    pub send_timeout: Duration,
    /// After SIGTERM, how long requests in flight may take to finish.
    pub shutdown_grace: Duration,
    /// Idle origin connections are closed after this long.
    pub origin_idle_timeout: Duration,
    /// Idle connections kept open per origin.
    pub origin_max_idle: usize,
    /// Bytes of request bodies the edge may hold at once, every site together, while it reads
    /// them whole before asking for an origin slot (`origin_body_buffer`); past it, bodies
    /// stream as they arrive.
    pub body_buffer_memory: u64,
    /// Scheduling lag from which the edge counts as short of CPU and serves the sites that are
    /// not under attack (nor above their share of requests) first; zero turns that off.
    pub overload_lag: Duration,
    /// Longest a deprioritised site's request waits its turn while the edge is short of CPU;
    /// then it is served anyway.
    pub overload_wait: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_connections: 10_000,
            // An office or school NAT: some 1,000 HTTP/2 browsers, or 170 HTTP/1.1 ones with all
            // six connections open; one address still holds at most a tenth of the total.
            max_connections_per_ip: 1024,
            // 300 browsers behind one address all opening six connections within the same
            // seconds, or a scanner without keep-alive at 150 requests a second, stay under
            // it; one address cannot make the edge accept (and shake hands) faster than 300
            // connections a second on average. docs/config.md has the reasoning.
            max_new_connections_per_ip: 3000,
            new_connections_period: Duration::from_secs(10),
            min_request_body_rate: 500,
            request_body_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
            origin_idle_timeout: Duration::from_secs(60),
            origin_max_idle: 256,
            // 1,024 bodies of the default 64 KiB `origin_body_buffer` at once: a busy edge's
            // uploads, and a small share of its memory.
            body_buffer_memory: 64 << 20,
            // On an idle worker the probe comes round in microseconds; half a millisecond is
            // two to three times a cache hit's whole time at the edge, when a quiet site's
            // visitors start to feel a busy one (bench/tenants.sh; docs/config.md).
            overload_lag: Duration::from_micros(500),
            overload_wait: Duration::from_secs(1),
        }
    }
}

/// One protected website: the names it answers to and the origins behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    /// Identifier used in metrics, logs and the API: `[a-z0-9_-]`, 1 to 63 characters.
    pub name: String,
    /// The names the site answers to; no two sites claim the same pattern.
    pub hosts: Vec<HostPattern>,
    /// The servers its requests are forwarded to, weighted round robin; at least one.
    pub origins: Vec<Origin>,
    /// Certificate and key for TLS listeners; `None`: the site is served over cleartext only.
    pub tls: Option<TlsFiles>,
    /// Largest request body accepted; over it, 413.
    pub max_body_bytes: u64,
    /// Request bodies up to this size are read whole before an origin slot is taken, so a
    /// slow sender never holds one; larger bodies stream. 0 streams every body.
    pub origin_body_buffer: u64,
    /// Time to open a TCP connection to an origin.
    pub connect_timeout: Duration,
    /// Time from sending a request to receiving the origin's response header.
    pub response_timeout: Duration,
    /// Active health checks of every origin; `None`: passive ejection only (`max_fails`).
    pub health: Option<HealthCheck>,
    /// Passive ejection: after this many consecutive failures an origin is taken out...
    pub max_fails: u32,
    /// ...for this long (or until an active check sees it healthy again).
    pub fail_timeout: Duration,
    /// The `[site.cache]` table.
    pub cache: SiteCache,
    /// The `[site.shield]` table: lists, origin cap, miss limit, attack detection.
    pub shield: SiteShield,
    /// Firewall rules, in file order: the first match that blocks, challenges or allows wins.
    pub rules: Vec<Rule>,
    /// The `[[site.rate_limit]]` tables, in file order; every one whose filter matches counts.
    pub rate_limits: Vec<RateLimit>,
    /// `active`, `under_attack` (every visitor without clearance is challenged), `paused`
    /// (plain proxy) or `suspended` (fixed notice; only the control plane sets it).
    pub state: SiteState,
    /// Which notice a suspended site gives; `Some` exactly when `state` is `suspended`.
    pub suspension: Option<Suspension>,
    /// The browser challenge: `[site.challenge]`.
    pub challenge: ChallengeSettings,
}

/// A site's `[site.cache]` table. Defaults: caching on, the origin's word on freshness, the
/// full URL as the key.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteCache {
    /// Whether the cache is used at all for this site (default on).
    pub enabled: bool,
    /// Edge TTL: replaces the origin's freshness lifetime for responses the cache may store.
    pub ttl: Option<Duration>,
    /// Paths never looked up or stored: `/admin/*` (a `*` matches any run of characters).
    pub bypass: Vec<String>,
    /// How the query string enters the cache key (default `keep`).
    pub query: QueryKey,
    /// Request header fields that become part of the cache key (lowercase names).
    pub key_headers: Vec<String>,
    /// Cookies whose values become part of the cache key.
    pub key_cookies: Vec<String>,
    /// Responses larger than this are passed through, not stored.
    pub max_object_size: u64,
    /// Ignore a client's `Cache-Control: no-cache` / `max-age` (a flood of them must not reach
    /// the origin under attack).
    pub ignore_client_no_cache: bool,
    /// Serve a stale copy when the origin errs, times out or is down.
    pub always_online: bool,
    /// Store responses that set cookies and hand them to every client.
    pub share_set_cookie: bool,
    /// How long a request waits for another request's fill of the same object before it goes to
    /// the origin itself.
    pub lock_timeout: Duration,
    /// A targeted cache-control field of the site's own (RFC 9213), lowercase: when an origin
    /// sends it, it overrides `CDN-Cache-Control` and `Cache-Control` for this edge.
    pub targeted_field: Option<String>,
    /// Web cache deception armour: no heuristic freshness for a response to a request with
    /// credentials, or whose Content-Type belies its path's extension.
    pub deception_armour: bool,
    /// Request fields origins commonly reflect (`cache::key::is_reflected_unkeyed_input`)
    /// that still reach the origin on requests the cache may answer (lowercase). Those in
    /// `key_headers` do too: keyed, they cannot poison another client's response.
    pub forward_unkeyed_fields: Vec<String>,
}

/// How the query string enters the cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryKey {
    /// As sent.
    Keep,
    /// Left out: `/a?x=1` and `/a?y=2` are one object.
    Ignore,
    /// Parameters sorted: `/a?b=1&a=2` and `/a?a=2&b=1` are one object.
    Sort,
}

impl Default for SiteCache {
    fn default() -> Self {
        FileSiteCache::default().into_settings()
    }
}

/// A site's certificate chain and private key (PEM files).
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first; relative to the configuration file's directory.
    pub cert: PathBuf,
    /// The leaf's private key (PKCS#8, PKCS#1 or SEC1); relative like `cert`.
    pub key: PathBuf,
    /// Where the `tls` key stands in the file, so loading errors can point at it.
    pub line: Option<usize>,
}

/// Active health check: an HTTP probe sent to every origin of the site.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    /// The path probed with `GET`; a 2xx or 3xx answer is healthy. Default `/`.
    pub path: String,
    /// Time between probes; default 5s.
    pub interval: Duration,
    /// How long a probe may take before it counts as a failure; default 2s.
    pub timeout: Duration,
    /// Consecutive successes that bring an origin back.
    pub rise: u32,
    /// Consecutive failures that take it out.
    pub fall: u32,
}

/// A configuration mistake, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration's name as given: its file's path, or what stands for it.
    pub file: String,
    /// 1-based line of the mistake, when known.
    pub line: Option<usize>,
    /// 1-based column of the mistake, when known.
    pub column: Option<usize>,
    /// The key's path, e.g. `site[0].origins[1]`.
    pub key: String,
    /// What is wrong and, where it helps, how to write it instead.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ": line {line}")?;
            if let Some(column) = self.column {
                write!(f, ", column {column}")?;
            }
        }
        if !self.key.is_empty() {
            write!(f, ": key `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates a configuration file. Relative paths inside it (data_dir, TLS files,
    /// a log file) are resolved against the file's own directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            column: None,
            key: String::new(),
            message: format!("cannot read the file: {e}"),
        })?;
        let mut config = Config::from_toml_str(&path.display().to_string(), &text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Parses and validates configuration text; `file` is only used in error messages.
    pub fn from_toml_str(file: &str, text: &str) -> Result<Config, ConfigError> {
        let source = Source::new(text);
        let place = |span: Option<std::ops::Range<usize>>| match span {
            Some(span) => {
                let (line, column) = source.line_and_column(span.start);
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        let deserializer = toml::Deserializer::parse(text).map_err(|e| {
            let (line, column) = place(e.span());
            ConfigError {
                file: file.to_string(),
                line,
                column,
                key: String::new(),
                message: e.message().to_string(),
            }
        })?;
        let raw: FileConfig = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            // Spanned<T> shows up in serde's path as a private field name; readers want the key.
            let key = e
                .path()
                .to_string()
                .replace(".$__serde_spanned_private_value", "");
            let inner = e.into_inner();
            let (line, column) = place(inner.span().or_else(|| source.key_span(&key)));
            ConfigError {
                file: file.to_string(),
                line,
                column,
                key: if key == "." { String::new() } else { key },
                message: inner.message().to_string(),
            }
        })?;
        raw.validate(&source).map_err(|(span, key, message)| {
            // Checks on parsed values name their key; the text says where it stands.
            let (line, column) = place(span.or_else(|| source.key_span(&key)));
            ConfigError {
                file: file.to_string(),
                line,
                column,
                key,
                message,
            }
        })
    }

    /// The one-origin set-up of `palisade serve --origin URL`: a catch-all site named `default`.
    /// Adds sites described elsewhere (the control plane's store) to these, refusing a name
    /// or a host that another site already has. `source` names where the new sites come from.
    pub fn add_sites(&mut self, sites: Vec<Site>, source: &str) -> Result<(), ConfigError> {
        let mut claimed: HashMap<&HostPattern, &str> = HashMap::new();
        for site in &self.sites {
            for host in &site.hosts {
                claimed.insert(host, &site.name);
            }
        }
        let error = |key: String, message: String| ConfigError {
            file: source.to_string(),
            line: None,
            column: None,
            key,
            message,
        };
        for site in &sites {
            if self.sites.iter().any(|s| s.name == site.name) {
                return Err(error(
                    format!("{}.name", site.name),
                    format!("site name {} is already used", crate::shown(&site.name)),
                ));
            }
            for host in &site.hosts {
                if let Some(other) = claimed.insert(host, &site.name) {
                    return Err(error(
                        format!("{}.hosts", site.name),
                        format!("host {host} is already claimed by site {other:?}"),
                    ));
                }
            }
        }
        self.sites.extend(sites);
        Ok(())
    }

    /// The configuration of `palisade serve --origin URL`: one site, `default`, answering every
    /// host (`*`) from `origin`, everything else at its default.
    pub fn single_origin(origin: Origin) -> Config {
        Config {
            server: FileServer::default().into_settings(),
            sites: vec![Site {
                name: "default".into(),
                hosts: vec![HostPattern::Any],
                origins: vec![origin],
                tls: None,
                max_body_bytes: default_max_body_bytes(),
                origin_body_buffer: DEFAULT_ORIGIN_BODY_BUFFER,
                connect_timeout: default_connect_timeout(),
                response_timeout: default_response_timeout(),
                health: None,
                max_fails: default_max_fails(),
                fail_timeout: default_fail_timeout(),
                cache: SiteCache::default(),
                shield: SiteShield::default(),
                rules: Vec::new(),
                rate_limits: Vec::new(),
                state: SiteState::default(),
                suspension: None,
                challenge: ChallengeSettings::default(),
            }],
            shield: GlobalShield::default(),
            cluster: None,
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.server.data_dir);
        if let Some(cluster) = &mut self.cluster {
            resolve(&mut cluster.secret_file);
        }
        if let AccessLogTarget::File(p) = &mut self.server.access_log.target {
            resolve(p);
        }
        for site in &mut self.sites {
            if let Some(tls) = &mut site.tls {
                resolve(&mut tls.cert);
                resolve(&mut tls.key);
            }
            let lists = &mut site.shield.lists;
            lists.allow_files.iter_mut().for_each(resolve);
            lists.deny_files.iter_mut().for_each(resolve);
        }
        let lists = &mut self.shield.lists;
        lists.allow_files.iter_mut().for_each(resolve);
        lists.deny_files.iter_mut().for_each(resolve);
    }
}

impl crate::IpLists {
    /// Records the lines `allow_files` and `deny_files` are written on, under `key`.
    fn locate_files(&mut self, source: &Source<'_>, key: &str) {
        let line = |field: &str| {
            source
                .key_span(&format!("{key}.{field}"))
                .map(|span| source.line_and_column(span.start).0)
        };
        // Only lists that name files: another key's line would do for an absent one.
        self.allow_files_line = (!self.allow_files.is_empty())
            .then(|| line("allow_files"))
            .flatten();
        self.deny_files_line = (!self.deny_files.is_empty())
            .then(|| line("deny_files"))
            .flatten();
    }
}

type Invalid = (Option<std::ops::Range<usize>>, String, String);

// ---- The file as written ------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    server: FileServer,
    #[serde(default, rename = "site")]
    sites: Vec<FileSite>,
    #[serde(default)]
    shield: FileGlobalShield,
    cluster: Option<FileCluster>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileServer {
    listen: Vec<ListenerAddress>,
    listen_tls: Vec<ListenerAddress>,
    admin: ListenerAddress,
    metrics_open_to: Option<Vec<Network>>,
    data_dir: PathBuf,
    trusted_proxies: Vec<Network>,
    access_log: String,
    #[serde(with = "as_size")]
    access_log_buffer: u64,
    #[serde(with = "as_text")]
    access_log_flush: Duration,
    access_log_sample: f64,
    workers: Option<usize>,
    #[serde(with = "as_text_opt")]
    header_read_timeout: Option<Duration>,
    #[serde(with = "as_text_opt")]
    idle_timeout: Option<Duration>,
    #[serde(with = "as_text_opt")]
    tls_handshake_timeout: Option<Duration>,
    max_header_bytes: Option<usize>,
    max_headers: Option<usize>,
    max_connections: Option<u32>,
    max_connections_per_ip: Option<u32>,
    max_new_connections_per_ip: Option<u32>,
    #[serde(with = "as_text_opt")]
    new_connections_period: Option<Duration>,
    min_request_body_rate: Option<u64>,
    #[serde(with = "as_text_opt")]
    request_body_timeout: Option<Duration>,
    #[serde(with = "as_text_opt")]
    send_timeout: Option<Duration>,
    #[serde(with = "as_text_opt")]
    shutdown_grace: Option<Duration>,
    #[serde(with = "as_text_opt")]
    origin_idle_timeout: Option<Duration>,
    origin_max_idle: Option<usize>,
    #[serde(with = "as_size")]
    body_buffer_memory: u64,
    #[serde(with = "as_text_opt")]
    overload_lag: Option<Duration>,
    #[serde(with = "as_text_opt")]
    overload_wait: Option<Duration>,
    #[serde(with = "as_size")]
    cache_memory: u64,
    #[serde(with = "as_size")]
    cache_disk: u64,
    operator_host: Option<String>,
    #[serde(with = "as_text")]
    analytics_retention: Duration,
}

impl Default for FileServer {
    fn default() -> Self {
        FileServer {
            listen: vec![ListenerAddress(SocketAddr::from(([127, 0, 0, 1], 8080)))],
            listen_tls: Vec::new(),
            admin: ListenerAddress(SocketAddr::from(([127, 0, 0, 1], 9090))),
            metrics_open_to: None,
            data_dir: PathBuf::from("./palisade-data"),
            trusted_proxies: Vec::new(),
            access_log: "stdout".into(),
            access_log_buffer: AccessLogSettings::default().buffer_bytes as u64,
            access_log_flush: AccessLogSettings::default().flush,
            access_log_sample: AccessLogSettings::default().sample,
            workers: None,
            header_read_timeout: None,
            idle_timeout: None,
            tls_handshake_timeout: None,
            max_header_bytes: None,
            max_headers: None,
            max_connections: None,
            max_connections_per_ip: None,
            max_new_connections_per_ip: None,
            new_connections_period: None,
            min_request_body_rate: None,
            request_body_timeout: None,
            send_timeout: None,
            shutdown_grace: None,
            origin_idle_timeout: None,
            origin_max_idle: None,
            body_buffer_memory: ServerLimits::default().body_buffer_memory,
            overload_lag: None,
            overload_wait: None,
            cache_memory: CacheStorage::default().memory_bytes,
            cache_disk: CacheStorage::default().disk_bytes,
            operator_host: None,
            analytics_retention: DEFAULT_ANALYTICS_RETENTION,
        }
    }
}

impl FileServer {
    fn into_settings(self) -> ServerSettings {
        let d = ServerLimits::default();
        ServerSettings {
            access_log: AccessLogSettings {
                target: match self.access_log.as_str() {
                    "stdout" => AccessLogTarget::Stdout,
                    "off" => AccessLogTarget::Off,
                    path => AccessLogTarget::File(PathBuf::from(path)),
                },
                // Checked in `FileConfig::validate`.
                buffer_bytes: usize::try_from(self.access_log_buffer).unwrap_or(usize::MAX),
                flush: self.access_log_flush,
                sample: self.access_log_sample,
            },
            listen: self.listen.into_iter().map(|a| a.0).collect(),
            listen_tls: self.listen_tls.into_iter().map(|a| a.0).collect(),
            admin: self.admin.0,
            metrics_open_to: self
                .metrics_open_to
                .map(|nets| nets.into_iter().map(|n| n.0).collect()),
            data_dir: self.data_dir,
            trusted_proxies: self.trusted_proxies.into_iter().map(|n| n.0).collect(),
            workers: self.workers.filter(|n| *n > 0),
            limits: ServerLimits {
                header_read_timeout: self.header_read_timeout.unwrap_or(d.header_read_timeout),
                idle_timeout: self.idle_timeout.unwrap_or(d.idle_timeout),
                tls_handshake_timeout: self
                    .tls_handshake_timeout
                    .unwrap_or(d.tls_handshake_timeout),
                max_header_bytes: self.max_header_bytes.unwrap_or(d.max_header_bytes),
                max_headers: self.max_headers.unwrap_or(d.max_headers),
                max_connections: self.max_connections.unwrap_or(d.max_connections),
                max_connections_per_ip: self
                    .max_connections_per_ip
                    .unwrap_or(d.max_connections_per_ip),
                max_new_connections_per_ip: self
                    .max_new_connections_per_ip
                    .unwrap_or(d.max_new_connections_per_ip),
                new_connections_period: self
                    .new_connections_period
                    .unwrap_or(d.new_connections_period),
                min_request_body_rate: self
                    .min_request_body_rate
                    .unwrap_or(d.min_request_body_rate),
                request_body_timeout: self.request_body_timeout.unwrap_or(d.request_body_timeout),
                send_timeout: self.send_timeout.unwrap_or(d.send_timeout),
                shutdown_grace: self.shutdown_grace.unwrap_or(d.shutdown_grace),
                origin_idle_timeout: self.origin_idle_timeout.unwrap_or(d.origin_idle_timeout),
                origin_max_idle: self.origin_max_idle.unwrap_or(d.origin_max_idle),
                body_buffer_memory: self.body_buffer_memory,
                overload_lag: self.overload_lag.unwrap_or(d.overload_lag),
                overload_wait: self.overload_wait.unwrap_or(d.overload_wait),
            },
            cache: CacheStorage {
                memory_bytes: self.cache_memory,
                disk_bytes: self.cache_disk,
            },
            // Checked (and normalised) in `FileConfig::validate`.
            operator_host: self.operator_host,
            analytics_retention: self.analytics_retention,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSite {
    name: Spanned<String>,
    hosts: Spanned<Vec<Spanned<HostPattern>>>,
    origins: Spanned<Vec<Origin>>,
    tls: Option<Spanned<FileTls>>,
    #[serde(default = "default_max_body_bytes")]
    max_body_bytes: u64,
    #[serde(default = "default_origin_body_buffer", with = "as_size")]
    origin_body_buffer: u64,
    #[serde(default = "default_connect_timeout", with = "as_text")]
    connect_timeout: Duration,
    #[serde(default = "default_response_timeout", with = "as_text")]
    response_timeout: Duration,
    health: Option<FileHealth>,
    #[serde(default = "default_max_fails")]
    max_fails: u32,
    #[serde(default = "default_fail_timeout", with = "as_text")]
    fail_timeout: Duration,
    #[serde(default)]
    cache: FileSiteCache,
    #[serde(default)]
    shield: FileSiteShield,
    #[serde(default)]
    rule: Vec<FileRule>,
    #[serde(default)]
    rate_limit: Vec<FileRateLimit>,
    #[serde(default)]
    state: SiteState,
    #[serde(default)]
    challenge: FileChallenge,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileSiteCache {
    enabled: bool,
    #[serde(with = "as_text_opt")]
    ttl: Option<Duration>,
    bypass: Vec<String>,
    query: QueryKey,
    key_headers: Vec<String>,
    key_cookies: Vec<String>,
    #[serde(with = "as_size")]
    max_object_size: u64,
    ignore_client_no_cache: bool,
    always_online: bool,
    share_set_cookie: bool,
    #[serde(with = "as_text")]
    lock_timeout: Duration,
    targeted_field: Option<String>,
    deception_armour: bool,
    forward_unkeyed_fields: Vec<String>,
}

impl Default for FileSiteCache {
    fn default() -> Self {
        FileSiteCache {
            enabled: true,
            ttl: None,
            bypass: Vec::new(),
            query: QueryKey::Keep,
            key_headers: Vec::new(),
            key_cookies: Vec::new(),
            max_object_size: 100 << 20,
            ignore_client_no_cache: false,
            always_online: false,
            share_set_cookie: false,
            lock_timeout: Duration::from_secs(5),
            targeted_field: None,
            deception_armour: true,
            forward_unkeyed_fields: Vec::new(),
        }
    }
}

impl FileSiteCache {
    fn into_settings(self) -> SiteCache {
        SiteCache {
            enabled: self.enabled,
            ttl: self.ttl,
            bypass: self.bypass,
            query: self.query,
            key_headers: self
                .key_headers
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            key_cookies: self.key_cookies,
            max_object_size: self.max_object_size,
            ignore_client_no_cache: self.ignore_client_no_cache,
            always_online: self.always_online,
            share_set_cookie: self.share_set_cookie,
            lock_timeout: self.lock_timeout,
            targeted_field: self.targeted_field.map(|name| name.to_ascii_lowercase()),
            deception_armour: self.deception_armour,
            forward_unkeyed_fields: self
                .forward_unkeyed_fields
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        }
    }

    /// Refuses what would make the cache key or the bypass list mean something else than
    /// written.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        for pattern in &self.bypass {
            if !pattern.starts_with('/') || pattern.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return Err((
                    "cache.bypass",
                    format!(
                        "bypass pattern {} must start with '/' and hold no spaces",
                        crate::shown(pattern)
                    ),
                ));
            }
        }
        for name in &self.key_headers {
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err((
                    "cache.key_headers",
                    format!("{} is not a header field name", crate::shown(name)),
                ));
            }
        }
        for name in &self.forward_unkeyed_fields {
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err((
                    "cache.forward_unkeyed_fields",
                    format!("{} is not a header field name", crate::shown(name)),
                ));
            }
        }
        for name in &self.key_cookies {
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err((
                    "cache.key_cookies",
                    format!("{} is not a cookie name", crate::shown(name)),
                ));
            }
        }
        if self.lock_timeout.is_zero() {
            return Err(("cache.lock_timeout", "must be more than zero".into()));
        }
        if let Some(name) = &self.targeted_field {
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err((
                    "cache.targeted_field",
                    format!("{name:?} is not a header field name"),
                ));
            }
            // What a targeted field overrides, or is already followed, cannot be one.
            if ["cache-control", "cdn-cache-control", "expires"]
                .iter()
                .any(|taken| name.eq_ignore_ascii_case(taken))
            {
                return Err((
                    "cache.targeted_field",
                    format!(
                        "{name:?} cannot be the site's own targeted field (try \"Palisade-Cache-Control\")"
                    ),
                ));
            }
        }
        if self.ttl.is_some_and(|t| t.is_zero()) {
            return Err((
                "cache.ttl",
                "must be more than zero (leave it out to follow the origin)".into(),
            ));
        }
        Ok(())
    }
}

/// RFC 9110 §5.6.2 tchar.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn default_max_body_bytes() -> u64 {
    100 * 1024 * 1024
}

/// The default `origin_body_buffer`: a form post or an API call's JSON, whole (nginx's
/// `client_body_buffer_size` is 8 or 16 KiB, but nginx then buffers the rest to disk).
pub const DEFAULT_ORIGIN_BODY_BUFFER: u64 = 64 << 10;

/// Largest `origin_body_buffer`: beyond it a body is an upload, which streams.
pub const MAX_ORIGIN_BODY_BUFFER: u64 = 16 << 20;

fn default_origin_body_buffer() -> u64 {
    DEFAULT_ORIGIN_BODY_BUFFER
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_response_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_fails() -> u32 {
    3
}
fn default_fail_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHealth {
    #[serde(default = "default_health_path")]
    path: String,
    #[serde(default = "default_health_interval", with = "as_text")]
    interval: Duration,
    #[serde(default = "default_health_timeout", with = "as_text")]
    timeout: Duration,
    #[serde(default = "default_rise_fall")]
    rise: u32,
    #[serde(default = "default_rise_fall")]
    fall: u32,
}

fn default_health_path() -> String {
    "/".into()
}
fn default_health_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_health_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_rise_fall() -> u32 {
    2
}

/// The access log's sizes and rates, within the bounds documented in docs/config.md.
fn check_access_log(log: &AccessLogSettings) -> Result<(), Invalid> {
    let bytes = AccessLogSettings::MIN_BUFFER_BYTES..=AccessLogSettings::MAX_BUFFER_BYTES;
    if !bytes.contains(&log.buffer_bytes) {
        return Err((
            None,
            "server.access_log_buffer".into(),
            "must be between 4KiB and 16MiB".into(),
        ));
    }
    let flush = AccessLogSettings::MIN_FLUSH..=AccessLogSettings::MAX_FLUSH;
    if !flush.contains(&log.flush) {
        return Err((
            None,
            "server.access_log_flush".into(),
            "must be between 10ms and 60s".into(),
        ));
    }
    if !(log.sample > 0.0 && log.sample <= 1.0) {
        return Err((
            None,
            "server.access_log_sample".into(),
            format!(
                "{} is not a fraction of requests: write a number more than 0 and at most 1 \
                 (0.1 logs one request in ten)",
                log.sample
            ),
        ));
    }
    Ok(())
}

impl FileConfig {
    fn validate(self, source: &Source<'_>) -> Result<Config, Invalid> {
        let cluster = match self.cluster {
            None => None,
            Some(table) => Some(
                table
                    .validate()
                    .map_err(|(key, message)| (None, key, message))?,
            ),
        };
        let edge_node = cluster
            .as_ref()
            .is_some_and(|c| c.role == ClusterRole::Edge);
        if edge_node && !self.sites.is_empty() {
            return Err((
                None,
                "site".into(),
                "an edge node serves the sites its control node publishes: move the [[site]] \
                 tables to the control node's configuration"
                    .into(),
            ));
        }
        let mut server = self.server.into_settings();
        if server.analytics_retention < Duration::from_secs(3600) {
            return Err((
                None,
                "server.analytics_retention".into(),
                "must be at least 1h (the top lists cover the last hour)".into(),
            ));
        }
        if let Some(raw) = server.operator_host.take() {
            match HostPattern::parse(&raw) {
                Ok(HostPattern::Exact(name)) => server.operator_host = Some(name),
                _ => {
                    return Err((
                        None,
                        "server.operator_host".into(),
                        format!(
                            "{} is not a host name (write it without port or wildcard)",
                            crate::shown(&raw)
                        ),
                    ));
                }
            }
        }
        check_access_log(&server.access_log)?;
        let l = &server.limits;
        let positive = [
            ("server.header_read_timeout", l.header_read_timeout),
            ("server.idle_timeout", l.idle_timeout),
            ("server.tls_handshake_timeout", l.tls_handshake_timeout),
            ("server.new_connections_period", l.new_connections_period),
            ("server.request_body_timeout", l.request_body_timeout),
            ("server.send_timeout", l.send_timeout),
            ("server.overload_wait", l.overload_wait),
        ];
        for (key, value) in positive {
            if value.is_zero() {
                return Err((None, key.into(), "must be more than zero".into()));
            }
        }
        if l.max_header_bytes < 8192 {
            return Err((
                None,
                "server.max_header_bytes".into(),
                "must be at least 8192 (browsers send several KiB of headers)".into(),
            ));
        }
        let at_least_one = [
            ("server.max_headers", l.max_headers == 0),
            ("server.max_connections", l.max_connections == 0),
            (
                "server.max_connections_per_ip",
                l.max_connections_per_ip == 0,
            ),
        ];
        if let Some((key, _)) = at_least_one.iter().find(|(_, zero)| *zero) {
            return Err((None, (*key).into(), "must be at least 1".into()));
        }
        if l.max_new_connections_per_ip == 0 {
            return Err((
                None,
                "server.max_new_connections_per_ip".into(),
                "must be at least 1 (0 would refuse every connection)".into(),
            ));
        }
        if l.min_request_body_rate == 0 {
            return Err((
                None,
                "server.min_request_body_rate".into(),
                "must be at least 1 byte per second (0 would let a body stall forever)".into(),
            ));
        }
        // Beyond these the edge would not be protecting a quiet site's visitors: a second of
        // lag is an edge that is down, a minute's wait a request that is lost.
        for (key, too_long, most) in [
            (
                "server.overload_lag",
                l.overload_lag > Duration::from_secs(1),
                "1s (0s turns it off)",
            ),
            (
                "server.overload_wait",
                l.overload_wait > Duration::from_secs(60),
                "60s",
            ),
        ] {
            if too_long {
                return Err((None, key.into(), format!("must be at most {most}")));
            }
        }
        if server.listen.is_empty() && server.listen_tls.is_empty() {
            return Err((
                None,
                "server.listen".into(),
                "no listener: set listen or listen_tls".into(),
            ));
        }
        // An edge node's certificates come with the sites its control node publishes.
        if !edge_node
            && !server.listen_tls.is_empty()
            && !self.sites.iter().any(|s| s.tls.is_some())
        {
            return Err((
                None,
                "server.listen_tls".into(),
                "a TLS listener needs at least one site with a `tls` certificate".into(),
            ));
        }

        let mut sites = Vec::with_capacity(self.sites.len());
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut claimed: HashMap<HostPattern, String> = HashMap::new();
        for (i, site) in self.sites.into_iter().enumerate() {
            let key = |field: &str| format!("site[{i}].{field}");
            let name = site.name.get_ref().clone();
            if !valid_site_name(&name) {
                return Err((
                    Some(site.name.span()),
                    key("name"),
                    format!(
                        "site name {} must be 1 to 63 characters of a-z, 0-9, '-' and '_'",
                        crate::shown(&name)
                    ),
                ));
            }
            if let Some(first) = names.insert(name.clone(), i) {
                return Err((
                    Some(site.name.span()),
                    key("name"),
                    format!("site name {name:?} is already used by site[{first}]"),
                ));
            }
            if site.hosts.get_ref().is_empty() {
                return Err((
                    Some(site.hosts.span()),
                    key("hosts"),
                    "a site needs at least one host".into(),
                ));
            }
            let mut hosts = Vec::new();
            for (j, host) in site.hosts.into_inner().into_iter().enumerate() {
                let span = host.span();
                let host = host.into_inner();
                if let Some(other) = claimed.insert(host.clone(), name.clone()) {
                    return Err((
                        Some(span),
                        format!("site[{i}].hosts[{j}]"),
                        format!("host {host} is already claimed by site {other:?}"),
                    ));
                }
                hosts.push(host);
            }
            if site.origins.get_ref().is_empty() {
                return Err((
                    Some(site.origins.span()),
                    key("origins"),
                    "a site needs at least one origin".into(),
                ));
            }
            let health = match site.health {
                None => None,
                Some(h) => {
                    if !h.path.starts_with('/') || h.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
                        return Err((
                            None,
                            key("health.path"),
                            format!(
                                "health path {} must start with '/' and hold no spaces",
                                crate::shown(&h.path)
                            ),
                        ));
                    }
                    let zero = [
                        ("interval", h.interval.is_zero()),
                        ("timeout", h.timeout.is_zero()),
                        ("rise", h.rise == 0),
                        ("fall", h.fall == 0),
                    ];
                    if let Some((field, _)) = zero.iter().find(|(_, zero)| *zero) {
                        return Err((
                            None,
                            key(&format!("health.{field}")),
                            "must be more than zero".into(),
                        ));
                    }
                    Some(HealthCheck {
                        path: h.path,
                        interval: h.interval,
                        timeout: h.timeout,
                        rise: h.rise,
                        fall: h.fall,
                    })
                }
            };
            if site.state == SiteState::Suspended {
                return Err((
                    None,
                    key("state"),
                    "a site is suspended through the admin API or `palisade suspend`, which \
                     record a reason; a file cannot suspend it"
                        .into(),
                ));
            }
            for (field, timeout) in [
                ("connect_timeout", site.connect_timeout),
                ("response_timeout", site.response_timeout),
            ] {
                if timeout.is_zero() {
                    return Err((None, key(field), "must be more than zero".into()));
                }
            }
            if let Err((field, message)) = site.cache.validate() {
                return Err((None, key(field), message));
            }
            let site_key = format!("site[{i}]");
            if site.origin_body_buffer > MAX_ORIGIN_BODY_BUFFER {
                return Err((
                    None,
                    key("origin_body_buffer"),
                    "must be at most 16MiB (larger bodies stream; 0 streams every body)".into(),
                ));
            }
            let mut shield = site.shield.validate(&format!("{site_key}.shield"))?;
            shield
                .lists
                .locate_files(source, &format!("{site_key}.shield"));
            let mut ids = Vec::new();
            let rules = validate_rules(site.rule, &site_key, &mut ids, source)?;
            let rate_limits = validate_rate_limits(site.rate_limit, &site_key, &mut ids, source)?;
            let challenge = site
                .challenge
                .validate(&format!("{site_key}.challenge"), source)?;
            let tls = site.tls.map(|tls| {
                let line = source.line_and_column(tls.span().start).0;
                let tls = tls.into_inner();
                TlsFiles {
                    cert: tls.cert,
                    key: tls.key,
                    line: Some(line),
                }
            });
            sites.push(Site {
                name,
                hosts,
                origins: site.origins.into_inner(),
                tls,
                max_body_bytes: site.max_body_bytes,
                origin_body_buffer: site.origin_body_buffer,
                connect_timeout: site.connect_timeout,
                response_timeout: site.response_timeout,
                health,
                max_fails: site.max_fails.max(1),
                fail_timeout: site.fail_timeout,
                cache: site.cache.into_settings(),
                shield,
                rules,
                rate_limits,
                state: site.state,
                suspension: None,
                challenge,
            });
        }
        let mut shield = self.shield.validate()?;
        shield.lists.locate_files(source, "shield");
        Ok(Config {
            server,
            sites,
            shield,
            cluster,
        })
    }
}

fn valid_site_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str("palisade.toml", text)
    }

    const ISSUE_EXAMPLE: &str = r#"
[server]
listen = ["127.0.0.1:8080"]
listen_tls = ["127.0.0.1:8443"]
admin = "127.0.0.1:9090"
data_dir = "./palisade-data"

[[site]]
name = "blog"
hosts = ["blog.example", "*.blog.example"]
origins = ["http://127.0.0.1:3000", "http://127.0.0.1:3001"]
tls = { cert = "certs/blog.pem", key = "certs/blog.key" }
"#;

    #[test]
    fn the_documented_example_parses() {
        let config = parse(ISSUE_EXAMPLE).unwrap();
        assert_eq!(config.server.listen_tls.len(), 1);
        let site = &config.sites[0];
        assert_eq!(site.hosts.len(), 2);
        assert_eq!(site.origins[1].url.port, 3001);
        assert_eq!(site.tls.as_ref().unwrap().line, Some(12));
    }

    #[test]
    fn an_empty_file_gets_every_default() {
        let config = parse("").unwrap();
        assert_eq!(
            config.server.listen,
            vec!["127.0.0.1:8080".parse().unwrap()]
        );
        assert_eq!(config.server.admin, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(config.server.limits, ServerLimits::default());
        assert_eq!(config.server.access_log, AccessLogSettings::default());
    }

    #[test]
    fn access_log_buffer_flush_and_sample_parse_and_are_bounded_by_name() {
        let config = parse(
            "[server]\naccess_log = \"off\"\naccess_log_buffer = \"8KiB\"\n\
             access_log_flush = \"250ms\"\naccess_log_sample = 0.25\n",
        )
        .unwrap();
        assert_eq!(
            config.server.access_log,
            AccessLogSettings {
                target: AccessLogTarget::Off,
                buffer_bytes: 8192,
                flush: Duration::from_millis(250),
                sample: 0.25,
            }
        );
        // A whole number is a rate too: 1 logs every request.
        let one = parse("[server]\naccess_log_sample = 1\n").unwrap();
        assert_eq!(one.server.access_log.sample, 1.0);
        for (line, key) in [
            ("access_log_buffer = 100", "server.access_log_buffer"),
            ("access_log_buffer = \"1GiB\"", "server.access_log_buffer"),
            ("access_log_flush = \"0s\"", "server.access_log_flush"),
            ("access_log_flush = \"2m\"", "server.access_log_flush"),
            ("access_log_sample = 0", "server.access_log_sample"),
            ("access_log_sample = 1.5", "server.access_log_sample"),
            ("access_log_sample = -0.5", "server.access_log_sample"),
            ("access_log_sample = nan", "server.access_log_sample"),
        ] {
            let err = parse(&format!("[server]\n{line}\n")).unwrap_err();
            assert_eq!(err.key, key, "{line}: {err}");
        }
    }

    #[test]
    fn a_bad_origin_names_file_line_and_key() {
        let err =
            parse("[[site]]\nname = \"a\"\nhosts = [\"a.example\"]\norigins = [\"not a url\"]\n")
                .unwrap_err();
        assert_eq!(err.line, Some(4));
        assert_eq!(err.key, "site[0].origins[0]");
        let shown = err.to_string();
        assert!(shown.starts_with("palisade.toml: line 4"), "{shown}");
        assert!(shown.contains("origins"), "{shown}");
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_line() {
        let err = parse("[server]\nlisten = []\nlisten_tsl = []\n").unwrap_err();
        assert_eq!(err.line, Some(3));
        assert!(err.message.contains("listen_tsl"), "{err}");
    }

    #[test]
    fn a_syntax_error_has_a_line() {
        let err = parse("[server\n").unwrap_err();
        assert_eq!(err.line, Some(1));
    }

    #[test]
    fn a_bad_duration_names_its_key() {
        let err = parse("[server]\nidle_timeout = \"forever\"\n").unwrap_err();
        assert_eq!(err.key, "server.idle_timeout");
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn overload_lag_and_wait_default_parse_and_are_bounded_by_name() {
        let defaults = parse("").unwrap();
        assert_eq!(
            defaults.server.limits.overload_lag,
            Duration::from_micros(500)
        );
        assert_eq!(defaults.server.limits.overload_wait, Duration::from_secs(1));
        let config = parse("[server]\noverload_lag = \"0s\"\noverload_wait = \"250ms\"\n").unwrap();
        assert_eq!(config.server.limits.overload_lag, Duration::ZERO, "off");
        assert_eq!(
            config.server.limits.overload_wait,
            Duration::from_millis(250)
        );
        for (line, key) in [
            ("overload_lag = \"2s\"", "server.overload_lag"),
            ("overload_wait = \"2m\"", "server.overload_wait"),
            ("overload_wait = \"0s\"", "server.overload_wait"),
        ] {
            let err = parse(&format!("[server]\n{line}\n")).unwrap_err();
            assert_eq!(err.key, key, "{line}: {err}");
        }
    }

    #[test]
    fn connection_guard_limits_parse_and_zero_is_refused_by_name() {
        let config = parse(
            "[server]\nmax_new_connections_per_ip = 20\nnew_connections_period = \"2s\"\n\
             min_request_body_rate = 100\nrequest_body_timeout = \"5s\"\nsend_timeout = \"30s\"\n",
        )
        .unwrap();
        let l = &config.server.limits;
        assert_eq!(l.max_new_connections_per_ip, 20);
        assert_eq!(l.new_connections_period, Duration::from_secs(2));
        assert_eq!(l.min_request_body_rate, 100);
        assert_eq!(l.request_body_timeout, Duration::from_secs(5));
        assert_eq!(l.send_timeout, Duration::from_secs(30));
        for (line, key) in [
            (
                "max_new_connections_per_ip = 0",
                "server.max_new_connections_per_ip",
            ),
            (
                "new_connections_period = \"0s\"",
                "server.new_connections_period",
            ),
            ("min_request_body_rate = 0", "server.min_request_body_rate"),
            (
                "request_body_timeout = \"0s\"",
                "server.request_body_timeout",
            ),
            ("send_timeout = \"0s\"", "server.send_timeout"),
        ] {
            let err = parse(&format!("[server]\n{line}\n")).unwrap_err();
            assert_eq!(err.key, key, "{line}: {err}");
        }
    }

    #[test]
    fn origin_body_buffer_and_body_buffer_memory_parse_as_sizes_and_are_bounded() {
        let site =
            "[[site]]\nname = \"a\"\nhosts = [\"a.example\"]\norigins = [\"http://127.0.0.1:1\"]\n";
        let config = parse(site).unwrap();
        assert_eq!(config.sites[0].origin_body_buffer, 64 << 10);
        assert_eq!(config.server.limits.body_buffer_memory, 64 << 20);
        let config = parse(&format!(
            "[server]\nbody_buffer_memory = \"8MiB\"\n{site}origin_body_buffer = \"16KiB\"\n"
        ))
        .unwrap();
        assert_eq!(config.sites[0].origin_body_buffer, 16 << 10);
        assert_eq!(config.server.limits.body_buffer_memory, 8 << 20);
        // 0 streams every body, as before the setting existed.
        let off = parse(&format!("{site}origin_body_buffer = 0\n")).unwrap();
        assert_eq!(off.sites[0].origin_body_buffer, 0);
        let err = parse(&format!("{site}origin_body_buffer = \"17MiB\"\n")).unwrap_err();
        assert_eq!(err.key, "site[0].origin_body_buffer", "{err}");
    }

    #[test]
    fn a_host_claimed_twice_is_refused() {
        let err = parse(
            "[[site]]\nname = \"a\"\nhosts = [\"x.example\"]\norigins = [\"http://127.0.0.1:1\"]\n\
             [[site]]\nname = \"b\"\nhosts = [\"X.example\"]\norigins = [\"http://127.0.0.1:2\"]\n",
        )
        .unwrap_err();
        assert_eq!(err.key, "site[1].hosts[0]");
        assert_eq!(err.line, Some(7));
    }

    #[test]
    fn duplicate_site_names_and_bad_names_are_refused() {
        let site = |name: &str| {
            format!(
                "[[site]]\nname = \"{name}\"\nhosts = [\"{name}.example\"]\norigins = [\"http://127.0.0.1:1\"]\n"
            )
        };
        assert!(parse(&format!("{}{}", site("a"), site("a"))).is_err());
        assert!(parse(&site("Has Space")).is_err());
    }

    #[test]
    fn weighted_origins_use_the_table_form() {
        let config = parse(
            "[[site]]\nname = \"a\"\nhosts = [\"a.example\"]\norigins = [{ url = \"http://127.0.0.1:1\", weight = 3 }, \"http://127.0.0.1:2\"]\n",
        )
        .unwrap();
        assert_eq!(config.sites[0].origins[0].weight, 3);
        assert_eq!(config.sites[0].origins[1].weight, 1);
    }

    #[test]
    fn metrics_open_to_is_a_list_of_networks_defaulting_by_where_the_admin_listener_is_bound() {
        let loopback: SocketAddr = "127.0.0.1:9090".parse().unwrap();
        let wide: SocketAddr = "0.0.0.0:9090".parse().unwrap();
        let default = parse("").unwrap().server;
        assert_eq!(default.metrics_open_to, None);
        let open: Vec<String> = default
            .metrics_open_to(loopback)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(open, ["127.0.0.0/8", "::1/128"]);
        assert!(default.metrics_open_to(wide).is_empty());
        assert!(default.metrics_open_to("[::1]:9090".parse().unwrap()).len() == 2);

        let closed = parse("[server]\nmetrics_open_to = []\n").unwrap().server;
        assert!(closed.metrics_open_to(loopback).is_empty());
        let listed = parse("[server]\nmetrics_open_to = [\"10.0.0.0/8\"]\n")
            .unwrap()
            .server;
        assert_eq!(listed.metrics_open_to(wide).len(), 1);
        let err = parse("[server]\nmetrics_open_to = [\"loopback\"]\n").unwrap_err();
        assert_eq!(err.key, "server.metrics_open_to[0]", "{err}");
    }

    #[test]
    fn operator_host_is_a_plain_host_name_normalised() {
        assert_eq!(parse("").unwrap().server.operator_host, None);
        let config = parse("[server]\noperator_host = \"Abuse.Provider.example.\"\n").unwrap();
        assert_eq!(
            config.server.operator_host.as_deref(),
            Some("abuse.provider.example")
        );
        for bad in ["*.provider.example", "*", "abuse.example:8080", "a b", ""] {
            let err = parse(&format!("[server]\noperator_host = {bad:?}\n")).unwrap_err();
            assert_eq!(err.key, "server.operator_host", "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_tls_listener_without_any_certificate_is_refused() {
        let err = parse("[server]\nlisten_tls = [\"127.0.0.1:8443\"]\n").unwrap_err();
        assert_eq!(err.key, "server.listen_tls");
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn a_bad_listener_address_is_quoted_with_its_line_and_index() {
        let err =
            parse("[server]\nlisten = [\"127.0.0.1:8080\", \"127.0.0.1:99999\"]\n").unwrap_err();
        assert_eq!((err.line, err.key.as_str()), (Some(2), "server.listen[1]"));
        assert!(err.message.contains("\"127.0.0.1:99999\""), "{err}");
        assert!(err.message.contains("IP:PORT"), "{err}");
        let err = parse("[server]\nadmin = \"localhost:9090\"\n").unwrap_err();
        assert_eq!((err.line, err.key.as_str()), (Some(2), "server.admin"));
        assert!(err.message.contains("\"localhost:9090\""), "{err}");
        let err =
            parse("[server]\n\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/99\"]\n").unwrap_err();
        assert_eq!(
            (err.line, err.key.as_str()),
            (Some(3), "server.trusted_proxies[1]")
        );
        assert!(
            err.message.contains("\"10.0.0.0/99\" is not a network"),
            "{err}"
        );
        let ok = parse("[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\nmetrics_open_to = []\n");
        assert!(ok.is_ok(), "{ok:?}");
    }

    /// List files are read when the snapshot is built; the lines they are named on go with
    /// them, so that a file that cannot be read is reported there.
    #[test]
    fn list_files_keep_the_lines_they_are_named_on() {
        let config = parse(
            "[shield]\ndeny_files = [\"deny.txt\"]\n\n[[site]]\nname = \"a\"\n\
             hosts = [\"a.example\"]\norigins = [\"http://127.0.0.1:1\"]\n\
             [site.shield]\nallow_files = [\"allow.txt\"]\n",
        )
        .unwrap();
        assert_eq!(config.shield.lists.deny_files_line, Some(2));
        assert_eq!(config.shield.lists.allow_files_line, None);
        let site = &config.sites[0].shield.lists;
        assert_eq!(
            (site.allow_files_line, site.deny_files_line),
            (Some(9), None)
        );
    }

    /// Every check that runs on parsed values, one mistake each: the error still names the
    /// line the key is written on (found again in the text), and the key.
    #[test]
    fn every_config_error_names_file_line_and_key() {
        const SITE: &str =
            "[[site]]\nname = \"a\"\nhosts = [\"a.example\"]\norigins = [\"http://127.0.0.1:1\"]\n";
        let cases: &[(&str, usize, &str)] = &[
            (
                "[server]\nanalytics_retention = \"1m\"\n",
                2,
                "server.analytics_retention",
            ),
            (
                "[server]\noperator_host = \"*.x\"\n",
                2,
                "server.operator_host",
            ),
            (
                "[server]\nidle_timeout = \"0s\"\n",
                2,
                "server.idle_timeout",
            ),
            (
                "[server]\nmax_header_bytes = 100\n",
                2,
                "server.max_header_bytes",
            ),
            ("\n[server]\nmax_headers = 0\n", 3, "server.max_headers"),
            (
                "[server]\nmax_new_connections_per_ip = 0\n",
                2,
                "server.max_new_connections_per_ip",
            ),
            (
                "[server]\nmin_request_body_rate = 0\n",
                2,
                "server.min_request_body_rate",
            ),
            ("[server]\nlisten = []\n", 2, "server.listen"),
            ("[shield]\nevents = 0\n", 2, "shield.events"),
            ("[shield]\ndeny = [\"10.0.0.0/99\"]\n", 2, "shield.deny[0]"),
            (
                &format!("{SITE}state = \"suspended\"\n"),
                5,
                "site[0].state",
            ),
            (
                &format!("{SITE}connect_timeout = \"0s\"\n"),
                5,
                "site[0].connect_timeout",
            ),
            (
                &format!("{SITE}[site.health]\npath = \"x\"\n"),
                6,
                "site[0].health.path",
            ),
            (
                &format!("{SITE}[site.health]\nrise = 0\n"),
                6,
                "site[0].health.rise",
            ),
            (
                &format!("{SITE}[site.cache]\nttl = \"0s\"\n"),
                6,
                "site[0].cache.ttl",
            ),
            (
                &format!("{SITE}[site.cache]\nbypass = [\"x\"]\n"),
                6,
                "site[0].cache.bypass",
            ),
            (
                &format!("{SITE}[site.shield]\nattack_factor = 0.5\n"),
                6,
                "site[0].shield.attack_factor",
            ),
            (
                &format!("{SITE}[site.challenge]\ndifficulty = 99\n"),
                6,
                "site[0].challenge.difficulty",
            ),
            (
                &format!(
                    "{SITE}[[site.rate_limit]]\nid = \"r\"\nkey = \"ip\"\nrequests = 0\nperiod = \"1s\"\n"
                ),
                8,
                "site[0].rate_limit[0].requests",
            ),
            (&format!("{SITE}{SITE}"), 6, "site[1].name"),
        ];
        for (text, line, key) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(err.file, "palisade.toml", "{text}");
            assert_eq!(
                (err.line, err.key.as_str()),
                (Some(*line), *key),
                "{text}\n{err}"
            );
            assert!(
                err.to_string()
                    .starts_with(&format!("palisade.toml: line {line}, column ")),
                "{err}"
            );
        }
    }

    #[test]
    fn cache_settings_have_defaults_and_parse_sizes_and_durations() {
        let config = parse(ISSUE_EXAMPLE).unwrap();
        assert_eq!(config.server.cache, CacheStorage::default());
        let cache = &config.sites[0].cache;
        assert!(cache.enabled && !cache.always_online && !cache.share_set_cookie);
        assert_eq!(cache.max_object_size, 100 << 20);
        let config = parse(
            "[server]\ncache_memory = \"64MiB\"\ncache_disk = 0\n\
             [[site]]\nname = \"a\"\nhosts = [\"a.example\"]\norigins = [\"http://127.0.0.1:1\"]\n\
             [site.cache]\nttl = \"10m\"\nquery = \"sort\"\nkey_headers = [\"Accept-Language\"]\n\
             bypass = [\"/admin/*\"]\nmax_object_size = \"1GiB\"\n",
        )
        .unwrap();
        assert_eq!(config.server.cache.memory_bytes, 64 << 20);
        assert_eq!(config.server.cache.disk_bytes, 0);
        let cache = &config.sites[0].cache;
        assert_eq!(cache.ttl, Some(Duration::from_secs(600)));
        assert_eq!(cache.query, QueryKey::Sort);
        assert_eq!(cache.key_headers, vec!["accept-language"]);
        assert_eq!(cache.max_object_size, 1 << 30);
    }

    #[test]
    fn bad_cache_settings_name_their_key() {
        let site = "[[site]]\nname = \"a\"\nhosts = [\"a.example\"]\norigins = [\"http://127.0.0.1:1\"]\n[site.cache]\n";
        let err = parse(&format!("{site}bypass = [\"admin\"]\n")).unwrap_err();
        assert_eq!(err.key, "site[0].cache.bypass");
        let err = parse(&format!("{site}query = \"shuffle\"\n")).unwrap_err();
        assert!(err.key.contains("query"), "{err}");
        let err = parse(&format!("{site}max_object_size = \"lots\"\n")).unwrap_err();
        assert!(err.key.contains("max_object_size"), "{err}");
        let err = parse("[server]\ncache_memory = \"12 parsecs\"\n").unwrap_err();
        assert_eq!(err.key, "server.cache_memory");
        for bad in ["", "Palisade Cache", "Cache-Control", "CDN-Cache-Control"] {
            let err = parse(&format!("{site}targeted_field = {bad:?}\n")).unwrap_err();
            assert_eq!(err.key, "site[0].cache.targeted_field", "{bad:?}");
        }
    }

    #[test]
    fn targeted_field_and_deception_armour() {
        let site = "[[site]]\nname = \"a\"\nhosts = [\"a.example\"]\norigins = [\"http://127.0.0.1:1\"]\n[site.cache]\n";
        let defaults = &parse(site).unwrap().sites[0].cache;
        assert_eq!(defaults.targeted_field, None, "off by default");
        assert!(defaults.deception_armour, "on by default");
        let config = parse(&format!(
            "{site}targeted_field = \"Palisade-Cache-Control\"\ndeception_armour = false\n"
        ))
        .unwrap();
        let cache = &config.sites[0].cache;
        assert_eq!(
            cache.targeted_field.as_deref(),
            Some("palisade-cache-control")
        );
        assert!(!cache.deception_armour);
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let dir = std::env::temp_dir().join(format!("palisade-model-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.toml");
        std::fs::write(&path, ISSUE_EXAMPLE).unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.server.data_dir, dir.join("./palisade-data"));
        assert_eq!(
            config.sites[0].tls.as_ref().unwrap().cert,
            dir.join("certs/blog.pem")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
