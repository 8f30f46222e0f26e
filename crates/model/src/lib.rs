//! Palisade's shared vocabulary: what a [`Site`] is, how the server is set up, and how the TOML
//! configuration file becomes those types.
//!
//! This crate is what every other Palisade crate agrees on. It holds plain data and the rules that
//! make it valid; it does no I/O beyond reading the configuration text it is handed, and depends on
//! nothing heavy (serde, toml and serde_json). The edge turns a validated [`Config`] into its runtime snapshot;
//! the control plane edits the same structures.
//!
//! ```
//! let config = model::Config::from_toml_str(
//!     "palisade.toml",
//!     r#"
//!     [[site]]
//!     name = "blog"
//!     hosts = ["blog.example", "*.blog.example"]
//!     origins = ["http://127.0.0.1:3000"]
//!     "#,
//! )
//! .unwrap();
//! assert_eq!(config.sites[0].name, "blog");
//! ```

mod abuse;
mod address;
mod challenge;
mod cluster;
mod config;
mod delta;
mod duration;
mod host;
mod locate;
mod origin;
mod shield;
mod shown;
mod size;

pub use abuse::{
    MAX_CONTACT_CHARS, MAX_DESCRIPTION_CHARS, MAX_REPORT_URL_BYTES, MAX_REPORT_URLS, NewReport,
    ReportCategory, ReportError, ReportStatus, ReportSubmission, SubmissionError, UnknownName,
};
pub use challenge::{
    CLEARANCE_WINDOW, ChallengeSettings, DEFAULT_DIFFICULTY, MAX_CHALLENGE_TTL, MAX_DIFFICULTY,
    SiteState, Suspension,
};
pub use cluster::{ClusterRole, ClusterSettings, DEFAULT_SECRET_FILE, valid_node_name};
pub use config::{
    AccessLogSettings, AccessLogTarget, CacheStorage, Config, ConfigError,
    DEFAULT_ANALYTICS_RETENTION, DEFAULT_ORIGIN_BODY_BUFFER, HealthCheck, MAX_ORIGIN_BODY_BUFFER,
    QueryKey, ServerLimits, ServerSettings, Site, SiteCache, TlsFiles,
};
pub use delta::SiteChange;
pub use duration::{DurationError, parse_duration};
pub use host::{HostError, HostPattern, normalize_host};
pub use origin::{Origin, OriginScheme, OriginUrl, OriginUrlError};
pub use shield::{
    AttackDetection, AttackFallback, GlobalShield, IpLists, LimitAction, LimitKey, LimitScope,
    NetError, OriginPressure, OriginQueue, RateLimit, Rule, RuleAction, SiteShield, parse_net,
};
pub use shown::{SHOWN_CHARS, Shown, shown};
pub use size::{SizeError, parse_size};
