//! `palisade`: the command line (docs/cli.md has every command, flag and exit status).
//!
//! - `serve` runs the edge and the control plane; `check` validates a configuration file;
//!   `explain` shows what the shield would do with a request; `keys rotate` renews the
//!   challenge's signing key; `audit verify` checks the audit log's hash chain in the store
//!   file. These work on files, without a running server.
//! - `site`, `token`, `purge`, `suspend`, `reinstate`, `reports`, `audit list`, `analytics`
//!   and `apply` mirror the admin API (`cli/`, through `admin_client`): they reach a running
//!   `serve` at `--admin-url` (or `PALISADE_ADMIN_URL`) with `--token` (or `PALISADE_TOKEN`),
//!   print tables by default and the API's JSON with `--json`.
//!
//! Exit status: 0 on success; 1 on any error (including a refusal from the API and an audit
//! log that does not verify); 2 for a command line clap cannot parse.

mod admin_client;
mod apply;
mod cli;
mod purge;
mod site_file;
mod table;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use model::{Config, Origin, OriginUrl};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// jemalloc rather than the system allocator: under churn (many connections opening, parking
/// and closing) glibc's per-thread arenas keep freed memory, so the edge's footprint would
/// stay at its peak; jemalloc hands it back within seconds (see `malloc_conf` below) and is
/// at least as fast on the request path.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Purge freed pages from a background thread after one second, so memory released by parked
/// and closed connections returns to the system even when the edge is otherwise quiet.
/// jemalloc reads this as a C `const char *`, hence a thin pointer to a NUL-terminated string.
#[allow(non_upper_case_globals)]
// The crate's one unsafe item: naming an exported symbol is unsafe (the linker trusts it).
#[allow(unsafe_code)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: Option<&'static u8> =
    Some(&b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:1000\0"[0]);

#[derive(Parser)]
#[command(
    name = "palisade",
    version,
    about = "A self-hosted edge shield for websites"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Protect and cache sites: one origin with --origin, or many with --config.
    #[command(after_help = SERVE_AFTER_HELP)]
    Serve {
        /// A TOML file describing the server and its sites (docs/config.md).
        #[arg(long, value_name = "FILE", conflicts_with = "origin")]
        config: Option<PathBuf>,
        /// Protect this one origin, as a site named `default` that takes any Host.
        #[arg(long, value_name = "URL")]
        origin: Option<String>,
        /// Cleartext listener(s), HTTP/1.1 and h2c (repeatable) [default: 127.0.0.1:8080].
        #[arg(long, value_name = "ADDR")]
        listen: Vec<SocketAddr>,
        /// Admin listener: the admin API (/api/, docs/control.md), /metrics and /healthz
        /// [default: 127.0.0.1:9090].
        #[arg(long, value_name = "ADDR")]
        admin: Option<SocketAddr>,
        /// Data directory: the store (sites, tokens, audit log), the disk cache, the
        /// challenge keys [default: ./palisade-data].
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
    },
    /// Validate a configuration file without serving: syntax, every key, certificates.
    Check {
        /// The configuration file to validate (TOML, as `serve --config` reads it).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Show what the shield would do with a request (lists, rules, rate limits), without
    /// sending anything: `palisade explain --config FILE --ip 1.2.3.4 GET https://host/path
    /// -H 'User-Agent: x'`.
    Explain {
        /// The configuration file whose sites and shield settings decide.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The client address the request comes from.
        #[arg(long)]
        ip: IpAddr,
        /// The method, e.g. GET.
        method: String,
        /// The URL: https://host/path?query.
        url: String,
        /// A request header, 'Name: value' (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// Also ask the running edge (at --admin-url, with --token) for the attack
        /// mitigations in force on the site, and judge the request by them.
        #[arg(long)]
        live: bool,
        #[command(flatten)]
        api: cli::ApiArgs,
        /// The client's TLS fingerprint, as `tls.ja4` reads it (https:// URLs only).
        #[arg(long, value_name = "JA4")]
        ja4: Option<String>,
        /// The client's HTTP/2 fingerprint, as `http2.fingerprint` reads it; the request is
        /// then an HTTP/2 one.
        #[arg(long, value_name = "TEXT")]
        http2_fingerprint: Option<String>,
    },
    /// Manage the keys that sign challenges and clearance cookies.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Purge cached responses of a site on a running edge (through its admin API).
    Purge {
        /// The site, by its name in the configuration.
        #[arg(long)]
        site: String,
        #[command(flatten)]
        selector: purge::Selector,
        /// Mark stale (revalidated on next use) instead of deleting.
        #[arg(long)]
        soft: bool,
        /// The edge's admin listener, ADDR:PORT [default: from --config, else --admin-url].
        #[arg(long, conflicts_with = "config")]
        admin: Option<SocketAddr>,
        /// Read the admin listener's address from this configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        api: cli::ApiArgs,
    },
    /// The nodes of the cluster (the control node's `GET /api/edges`).
    Edges {
        #[command(flatten)]
        api: cli::ApiArgs,
    },
    /// Many machines: the cluster's shared secret.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Sites: list, show, create, update, patch, delete, and switch their state.
    Site {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        action: cli::site::Action,
    },
    /// API tokens: list, create (the secret is printed once), revoke.
    Token {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        action: cli::token::Action,
    },
    /// Suspend a site (terminate service): its hosts get a fixed notice, 403 or 451.
    Suspend {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(flatten)]
        args: cli::suspension::SuspendArgs,
    },
    /// Lift a site's suspension.
    Reinstate {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(flatten)]
        args: cli::suspension::ReinstateArgs,
    },
    /// Abuse reports: the queue (urgent first), one report, triage.
    Reports {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        action: cli::reports::Action,
    },
    /// The audit log: list entries (API), or verify its hash chain (offline, the store file).
    Audit {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        action: cli::audit::Action,
    },
    /// A site's traffic: totals, status classes, cache, blocked and challenged, top lists.
    Analytics {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(flatten)]
        args: cli::analytics::AnalyticsArgs,
    },
    /// Sync the store's sites to a TOML file's [[site]] tables, printing the diff.
    Apply {
        /// The file: [[site]] tables as in palisade.toml ([server] and [shield] are ignored).
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        api: cli::ApiArgs,
    },
}

/// What `serve --help` adds below the flags: the token of the first start.
const SERVE_AFTER_HELP: &str = "\
At the first start (no token in the data directory's store yet) an admin token for the API and
the CLI is printed once on stdout; only its hash is kept. Set PALISADE_BOOTSTRAP_TOKEN (at least
24 printable characters) at that first start to choose it instead. Later starts print none.

With --origin the site is named `default`: `palisade analytics default`,
`palisade site state default under_attack`.";

#[derive(Subcommand)]
enum ClusterAction {
    /// Write a new cluster secret to FILE (owner-only, never over an existing file); give the
    /// same file to every node as `[cluster] secret_file`.
    Init {
        /// Where to write it, e.g. cluster.key.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Make a new signing key; the old one stays valid for one clearance lifetime. Running
    /// edges switch at their next reload (SIGHUP).
    Rotate {
        /// The data directory [default: from --config, else ./palisade-data].
        #[arg(long, conflicts_with = "config")]
        data: Option<PathBuf>,
        /// Read the data directory from this configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// The data directory from `--data` or `--config` (its `data_dir`), else the default.
pub fn data_dir(data: Option<PathBuf>, config: Option<PathBuf>) -> Result<PathBuf> {
    Ok(match (data, config) {
        (Some(dir), _) => dir,
        (None, Some(path)) => Config::load(&path)?.server.data_dir,
        (None, None) => PathBuf::from("./palisade-data"),
    })
}

/// `palisade keys rotate`.
fn rotate_keys(data: Option<PathBuf>, config: Option<PathBuf>) -> Result<()> {
    let data_dir = data_dir(data, config)?;
    shield::challenge::ChallengeKeys::rotate(&data_dir)?;
    let path = data_dir.join(shield::challenge::keys::KEY_FILE);
    println!(
        "rotated {}: edges sign with the new key from their next reload (SIGHUP); the \
         previous key stays valid for one clearance lifetime",
        path.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let result = match cli.command {
        Command::Check { config } => check(&config),
        Command::Explain {
            config,
            ip,
            method,
            url,
            headers,
            live,
            api,
            ja4,
            http2_fingerprint,
        } => explain(
            &config,
            ip,
            (&method, &url, &headers),
            (ja4.as_deref(), http2_fingerprint.as_deref()),
            live.then_some(&api),
        ),
        Command::Keys {
            action: KeysAction::Rotate { data, config },
        } => rotate_keys(data, config),
        Command::Purge {
            site,
            selector,
            soft,
            admin,
            config,
            api,
        } => purge::run(&api, &site, &selector, soft, admin, config),
        Command::Cluster {
            action: ClusterAction::Init { file },
        } => cluster::secret::init(&file)
            .map(|()| {
                println!(
                    "wrote a new cluster secret to {}: give this file to every node of the cluster",
                    file.display()
                )
            })
            .map_err(anyhow::Error::from),
        Command::Edges { api } => cli::edges::run(&api),
        Command::Site { api, action } => cli::site::run(&api, action),
        Command::Token { api, action } => cli::token::run(&api, action),
        Command::Suspend { api, args } => cli::suspension::suspend(&api, args),
        Command::Reinstate { api, args } => cli::suspension::reinstate(&api, args),
        Command::Reports { api, action } => cli::reports::run(&api, action),
        Command::Audit { api, action } => cli::audit::run(&api, action),
        Command::Analytics { api, args } => cli::analytics::run(&api, args),
        Command::Apply { file, dry_run, api } => apply::run(&api, &file, dry_run),
        Command::Serve {
            config,
            origin,
            listen,
            admin,
            data,
        } => serve(config, origin, listen, admin, data),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("palisade: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn explain(
    config: &std::path::Path,
    ip: IpAddr,
    (method, url, headers): (&str, &str, &[String]),
    (ja4, http2_fingerprint): (Option<&str>, Option<&str>),
    live: Option<&cli::ApiArgs>,
) -> Result<()> {
    let config = Config::load(config)?;
    let mitigations = match (live, edge::explain::site_of(&config, url)) {
        (Some(api), Some(site)) => {
            let path = format!("/api/sites/{}/mitigations", admin_client::segment(&site));
            let answer = api.client()?.get(&path)?;
            let list: Vec<edge::explain::LiveMitigation> =
                serde_json::from_value(answer["mitigations"].clone()).map_err(|e| {
                    anyhow::anyhow!("{path} answered what this palisade cannot read: {e}")
                })?;
            Some(list)
        }
        _ => None,
    };
    let request = edge::explain::ExplainRequest {
        ip,
        method,
        url,
        headers,
        mitigations: mitigations.as_deref(),
        ja4,
        http2_fingerprint,
    };
    let text = edge::explain::explain(&config, &request).map_err(|e| anyhow::anyhow!(e))?;
    print!("{text}");
    Ok(())
}

fn check(path: &Path) -> Result<()> {
    let config = Config::load(path)?;
    // Loading certificates is part of checking: a missing key file is a broken config.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(edge::server::validate(&config, &path.display().to_string()))?;
    println!(
        "{}: ok ({} site{})",
        path.display(),
        config.sites.len(),
        if config.sites.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

fn serve(
    config_path: Option<PathBuf>,
    origin: Option<String>,
    listen: Vec<SocketAddr>,
    admin: Option<SocketAddr>,
    data: Option<PathBuf>,
) -> Result<()> {
    let overrides = Overrides {
        listen,
        admin,
        data,
    };
    let base = match (&config_path, origin) {
        (Some(path), _) => load_base(path, &overrides)?,
        (None, Some(origin)) => {
            let url = OriginUrl::parse(&origin).map_err(anyhow::Error::msg)?;
            // The API and the CLI name sites; this one's name is written nowhere else.
            tracing::info!(
                site = "default",
                origin = %url,
                "one site, named `default`, takes every host name (`palisade analytics default`, \
                 `palisade site state default under_attack`)"
            );
            control::BaseConfig::from_flags(
                overrides.apply(Config::single_origin(Origin { url, weight: 1 })),
                "--origin".to_string(),
            )
        }
        (None, None) => {
            bail!("say what to protect: --origin http://127.0.0.1:3000 or --config palisade.toml")
        }
    };
    // Every connection is a file descriptor; the soft limit of 1024 would cap the edge far
    // below max_connections.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "could not raise the open-file limit");
    }
    // One worker: tokio's single-threaded scheduler, which skips the work-stealing machinery
    // (cross-thread queues, waking idle workers) that a lone worker pays for and never uses.
    let mut builder = match base.config.server.workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(workers) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(workers);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = builder.enable_all().thread_name("palisade").build()?;
    runtime.block_on(run(base, config_path, overrides))
}

/// The configuration file as the control plane's base: parsed and checked, with its sites'
/// tables kept as documents for the API to show.
fn load_base(path: &Path, overrides: &Overrides) -> Result<control::BaseConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let config = overrides.apply(Config::load(path)?);
    Ok(control::BaseConfig::from_file(
        config,
        &text,
        path.display().to_string(),
    ))
}

/// Command-line flags that override the file's `[server]` values.
struct Overrides {
    listen: Vec<SocketAddr>,
    admin: Option<SocketAddr>,
    data: Option<PathBuf>,
}

impl Overrides {
    fn apply(&self, mut config: Config) -> Config {
        if !self.listen.is_empty() {
            config.server.listen = self.listen.clone();
        }
        if let Some(admin) = self.admin {
            config.server.admin = admin;
        }
        if let Some(data) = &self.data {
            config.server.data_dir = data.clone();
        }
        config
    }
}

async fn run(
    base: control::BaseConfig,
    config_path: Option<PathBuf>,
    overrides: Overrides,
) -> Result<()> {
    // Signal handlers and the file watch's baseline come before the listeners: a SIGHUP (or an
    // edit) that arrives as soon as the edge answers must not be lost, nor kill the process.
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut last_text = match &config_path {
        Some(path) => std::fs::read(path).ok(),
        None => None,
    };
    let mut last_stamp = config_path.as_deref().and_then(file_stamp);
    // A cluster node checks its secret before it serves anything.
    let node = match &base.config.cluster {
        Some(settings) => Some(cluster::Node::open(settings)?),
        None => None,
    };
    if let Some(node) = node
        .as_ref()
        .filter(|n| n.settings.role == model::ClusterRole::Edge)
    {
        return run_edge_node(node, base, &mut terminate, &mut interrupt).await;
    }
    let (edge, plane) = control::start_sealed(base, node.as_ref().map(|n| n.sealer())).await?;
    if let Some(node) = &node {
        node.publish(Arc::clone(&plane));
    }
    let mut watch = tokio::time::interval(CONFIG_POLL);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                if let Some(path) = &config_path {
                    last_text = std::fs::read(path).ok();
                    last_stamp = file_stamp(path);
                    reload(&plane, path, &overrides).await;
                } else {
                    tracing::info!("SIGHUP ignored: no --config file to reload");
                }
            }
            _ = watch.tick() => {
                // The file watch: reload when the file's bytes change. Polling is immune to
                // the rename-over and editor-swap patterns that trip inotify watchers.
                if let Some(path) = &config_path {
                    // Its size, time and inode first: a file of 100,000 sites is 20 MB, not
                    // to be read every second when it has not been touched.
                    let stamp = file_stamp(path);
                    if stamp.is_some() && stamp == last_stamp {
                        continue;
                    }
                    last_stamp = stamp;
                    let now = std::fs::read(path).ok();
                    if now.is_some() && now != last_text {
                        // An editor or a deploy script may be halfway through writing the
                        // file (a truncated file is valid TOML with no sites!): wait until it
                        // holds still before believing it.
                        tokio::time::sleep(CONFIG_SETTLE).await;
                        let settled = std::fs::read(path).ok();
                        if settled == now {
                            last_text = now;
                            reload(&plane, path, &overrides).await;
                        }
                    }
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    let grace = edge.shutdown_grace();
    tracing::info!(grace = ?grace, "shutting down: no new connections; draining requests in flight");
    if edge.shutdown(grace).await {
        tracing::info!("drained; bye");
    }
    Ok(())
}

/// A cluster's edge node: it serves what the control node publishes (what it kept from its
/// last run until it hears from Redis), with no store and no API of its own. Its own file's
/// `[server]` is read at start; a change to it needs a restart.
async fn run_edge_node(
    node: &cluster::Node,
    base: control::BaseConfig,
    terminate: &mut tokio::signal::unix::Signal,
    interrupt: &mut tokio::signal::unix::Signal,
) -> Result<()> {
    let own = base.config;
    let restored = node.restore(&own)?;
    if restored.version > 0 {
        tracing::info!(
            version = restored.version,
            sites = restored.config.sites.len(),
            "cluster: serving the configuration kept from the last run until Redis answers"
        );
    }
    let edge = Arc::new(edge::Edge::start(restored.config, base.source).await?);
    edge.serve_admin();
    node.follow(Arc::clone(&edge), own, (restored.version, restored.epoch))?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    let grace = edge.shutdown_grace();
    tracing::info!(grace = ?grace, "shutting down: no new connections; draining requests in flight");
    if edge.shutdown(grace).await {
        tracing::info!("drained; bye");
    }
    Ok(())
}

/// How often the configuration file is checked for changes.
const CONFIG_POLL: Duration = Duration::from_secs(1);

/// What says a file may have changed without reading it: its size, modification time (to the
/// nanosecond) and inode (a rename-over is a new one). `None` when it cannot be read.
fn file_stamp(path: &Path) -> Option<(u64, std::time::SystemTime, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?, meta.ino()))
}
/// How long a changed file must stay unchanged before it is loaded.
const CONFIG_SETTLE: Duration = Duration::from_millis(250);

async fn reload(plane: &Arc<control::ControlPlane>, path: &Path, overrides: &Overrides) {
    let result = match load_base(path, overrides) {
        Ok(base) => plane.reload_base(base).await.map_err(|e| e.to_string()),
        Err(e) => Err(format!("{e:#}")),
    };
    match result {
        Ok(generation) => {
            tracing::info!(generation, file = %path.display(), "configuration reloaded")
        }
        Err(e) => {
            tracing::error!("configuration not reloaded, the previous one keeps running: {e}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// clap checks a command's definition only when it is used: this checks them all.
    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// `--help` is where a newcomer learns the command line: every flag, argument and
    /// command says what it is.
    #[test]
    fn every_flag_argument_and_command_says_what_it_is() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} <{id}>"));
                }
            }
            for sub in command.get_subcommands() {
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(sub_path.clone());
                }
                walk(sub, &sub_path, missing);
            }
        }
        let mut command = Cli::command();
        command.build();
        let mut missing = Vec::new();
        walk(&command, "palisade", &mut missing);
        assert!(missing.is_empty(), "no description: {missing:#?}");
    }

    #[test]
    fn serve_help_names_the_admin_api_and_the_bootstrap_token() {
        let mut command = Cli::command();
        let help = command
            .find_subcommand_mut("serve")
            .expect("serve")
            .render_long_help()
            .to_string();
        assert!(help.contains("the admin API"), "{help}");
        assert!(help.contains("PALISADE_BOOTSTRAP_TOKEN"), "{help}");
        assert!(help.contains("`default`"), "{help}");
    }

    #[test]
    fn connection_flags_go_anywhere_after_the_noun() {
        let cli = Cli::try_parse_from([
            "palisade",
            "site",
            "--json",
            "list",
            "--admin-url",
            "http://127.0.0.1:1",
            "--token",
            "pal_x",
        ])
        .unwrap();
        let Command::Site { api, .. } = cli.command else {
            panic!("not `site`");
        };
        assert!(api.json);
        assert_eq!(api.admin_url, "http://127.0.0.1:1");
        assert_eq!(api.token.as_deref(), Some("pal_x"));
    }
}
