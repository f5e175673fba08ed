//! `cairn serve` settings: flags, then `CAIRN_*` environment variables,
//! then an optional TOML file, then defaults, in that order of precedence.
//!
//! One struct is both the clap arguments and the TOML table, so a setting
//! cannot exist in one place and be forgotten in the other.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;

/// A setting given a value it cannot take, wherever it came from (flag,
/// environment, file): the command line's mistake, so `cairn` exits 2 as
/// clap does for its own usage errors, before opening anything.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

macro_rules! usage {
    ($($t:tt)*) => {
        return Err(UsageError(format!($($t)*)).into())
    };
}

/// Settings of `cairn serve`. Every field is optional here: what is not
/// given by a flag or the environment is taken from `--config`, then from
/// the default.
#[derive(clap::Args, Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML file with any of these settings (keys as the flags, with '_' for '-').
    #[arg(long, env = "CAIRN_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Import the bundled dataset (once) and serve it.
    #[arg(long)]
    #[serde(skip)]
    pub demo: bool,
    /// Database directory.
    #[arg(long, env = "CAIRN_DATA")]
    pub data: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7878].
    #[arg(long, env = "CAIRN_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Worker threads [default: one per core].
    #[arg(long, env = "CAIRN_THREADS")]
    pub threads: Option<usize>,
    /// Response cache size in bytes; 0 turns the cache off [default: 64 MiB].
    #[arg(long, env = "CAIRN_CACHE_BYTES")]
    pub cache_bytes: Option<u64>,
    /// Seconds a cached response with results stays valid [default: 300].
    #[arg(long, env = "CAIRN_CACHE_TTL")]
    pub cache_ttl: Option<u64>,
    /// Seconds a cached response without results stays valid [default: 30].
    #[arg(long, env = "CAIRN_CACHE_EMPTY_TTL")]
    pub cache_empty_ttl: Option<u64>,
    /// Largest upload accepted by /search/csv and /reverse/csv, in bytes (413 beyond) [default: 64 MiB].
    #[arg(long, env = "CAIRN_MAX_UPLOAD")]
    pub max_upload: Option<usize>,
    /// Largest `limit` a request may ask for [default: 100].
    #[arg(long, env = "CAIRN_MAX_LIMIT")]
    pub max_limit: Option<usize>,
    /// Longest request target (path and query), in bytes (414 beyond) [default: 4096].
    #[arg(long, env = "CAIRN_MAX_URI_BYTES")]
    pub max_uri_bytes: Option<usize>,
    /// Largest request head (request line and headers), in bytes (431 beyond) [default: 16384].
    #[arg(long, env = "CAIRN_MAX_HEADER_BYTES")]
    pub max_header_bytes: Option<usize>,
    /// Most headers in one request (431 beyond) [default: 64].
    #[arg(long, env = "CAIRN_MAX_HEADERS")]
    pub max_headers: Option<usize>,
    /// Time a search may take before it answers 503, e.g. "500ms"; "0" for none [default: 1s].
    #[arg(long, env = "CAIRN_TIME_BUDGET")]
    pub time_budget: Option<String>,
    /// Longest wait for the next piece of a request body before it answers 408 [default: 30s].
    #[arg(long, env = "CAIRN_BODY_TIMEOUT")]
    pub body_timeout: Option<String>,
    /// On SIGTERM/SIGINT, how long requests in flight may take to finish [default: 10s].
    #[arg(long, env = "CAIRN_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<String>,
    /// Requests per second allowed to each client address; 0 is no limit [default: 0].
    #[arg(long, env = "CAIRN_RATE_LIMIT")]
    pub rate_limit: Option<f64>,
    /// Requests a client may send at once above its rate [default: twice the rate, at least 1].
    #[arg(long, env = "CAIRN_RATE_BURST")]
    pub rate_burst: Option<u32>,
    /// Smallest response body compressed when the client accepts gzip or br [default: 1024].
    #[arg(long, env = "CAIRN_COMPRESS_MIN_BYTES")]
    pub compress_min_bytes: Option<usize>,
    /// Access log on stderr: off, text or json [default: off].
    #[arg(long, env = "CAIRN_ACCESS_LOG")]
    pub access_log: Option<String>,
    /// Accept POST /documents and DELETE /documents/{id} with `Authorization: Bearer <token>`.
    #[arg(long, env = "CAIRN_WRITE_TOKEN")]
    pub write_token: Option<String>,
    /// Require `Authorization: Bearer <token>` on GET /snapshot/* [default: open].
    #[arg(long, env = "CAIRN_SNAPSHOT_TOKEN")]
    pub snapshot_token: Option<String>,
    /// Follow the primary at this URL (http://host:port): pull its snapshots, refuse writes.
    #[arg(long, env = "CAIRN_REPLICA_OF")]
    pub replica_of: Option<String>,
    /// How often a replica asks its primary for a new generation [default: 10s].
    #[arg(long, env = "CAIRN_POLL")]
    pub poll: Option<String>,
    /// Commit small POST /documents bodies and deletions live: durable and
    /// visible in milliseconds, as layers over the base generation
    /// (`true` or `false`) [default: false].
    #[arg(long, env = "CAIRN_LIVE_WRITES")]
    pub live_writes: Option<bool>,
    /// With live writes: the records the layers may hold before they are
    /// folded into a new base, in the background [default: 100000].
    #[arg(long, env = "CAIRN_LIVE_LIMIT")]
    pub live_limit: Option<u64>,
}

/// How requests are logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLog {
    Off,
    Text,
    Json,
}

/// Settings after precedence and defaults, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data: Option<PathBuf>,
    pub demo: bool,
    pub listen: SocketAddr,
    pub threads: Option<usize>,
    pub cache: Option<cairn::CacheConfig>,
    pub limits: Limits,
    pub shutdown_timeout: Duration,
    pub rate: Option<(f64, u32)>,
    pub access_log: AccessLog,
    pub write_token: Option<String>,
    pub snapshot_token: Option<String>,
    pub replica_of: Option<String>,
    pub poll: Duration,
    pub live_writes: bool,
    pub live_limit: u64,
}

/// What one request may ask of the server.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_upload: usize,
    pub max_limit: usize,
    pub max_uri_bytes: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub time_budget: Option<Duration>,
    /// Longest pause in an upload: a client that stops sending its body
    /// does not hold a connection and a buffer forever.
    pub body_timeout: Duration,
    pub compress_min_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_upload: 64 * 1024 * 1024,
            max_limit: 100,
            max_uri_bytes: 4096,
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            time_budget: Some(Duration::from_secs(1)),
            body_timeout: Duration::from_secs(30),
            compress_min_bytes: 1024,
        }
    }
}

fn duration(name: &str, v: &str) -> Result<Duration> {
    if v.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(v.trim())
        .map_err(|e| UsageError(format!("{name}: {v:?} is not a duration such as 500ms or 10s: {e}")).into())
}

impl ServeArgs {
    fn read_file(path: &Path) -> Result<ServeArgs> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).map_err(|e| UsageError(format!("in {}: {e}", path.display())).into())
    }

    /// Applies the file under the flags and environment, then the defaults.
    pub fn resolve(self) -> Result<Settings> {
        let file = match &self.config {
            Some(p) => ServeArgs::read_file(p)?,
            None => ServeArgs::default(),
        };
        macro_rules! pick {
            ($f:ident) => {
                self.$f.clone().or(file.$f.clone())
            };
        }
        let d = Limits::default();
        let time_budget = match pick!(time_budget) {
            Some(v) => Some(duration("--time-budget", &v)?).filter(|d| !d.is_zero()),
            None => d.time_budget,
        };
        let body_timeout = match pick!(body_timeout) {
            Some(v) => duration("--body-timeout", &v)?.max(Duration::from_millis(10)),
            None => d.body_timeout,
        };
        let shutdown_timeout = match pick!(shutdown_timeout) {
            Some(v) => duration("--shutdown-timeout", &v)?,
            None => Duration::from_secs(10),
        };
        let rate = match pick!(rate_limit) {
            Some(r) if !(r.is_finite() && r >= 0.0) => usage!("--rate-limit must be a number of requests per second"),
            Some(r) if r > 0.0 => {
                let burst = pick!(rate_burst).unwrap_or((2.0 * r).ceil().max(1.0) as u32);
                if burst == 0 {
                    usage!("--rate-burst must be at least 1");
                }
                Some((r, burst))
            }
            _ => None,
        };
        let access_log = match pick!(access_log).as_deref().map(str::trim) {
            None | Some("off") => AccessLog::Off,
            Some("text") => AccessLog::Text,
            Some("json") => AccessLog::Json,
            Some(other) => usage!("--access-log must be off, text or json, not {other:?}"),
        };
        let replica_of = pick!(replica_of).map(|u| u.trim_end_matches('/').to_owned());
        if let Some(url) = &replica_of {
            crate::replica::check_url(url).map_err(|e| UsageError(format!("{e:#}")))?;
        }
        if pick!(write_token).is_some_and(|t| !t.is_empty()) && replica_of.is_some() {
            usage!(
                "a replica follows its primary and takes no writes: --write-token and --replica-of exclude each other"
            );
        }
        let cache_bytes = pick!(cache_bytes).unwrap_or(64 << 20);
        let max_limit = pick!(max_limit).unwrap_or(d.max_limit);
        if max_limit == 0 {
            usage!("--max-limit must be at least 1");
        }
        Ok(Settings {
            data: pick!(data),
            demo: self.demo,
            listen: pick!(listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7878))),
            threads: pick!(threads).map(|n| n.max(1)),
            cache: (cache_bytes > 0).then(|| cairn::CacheConfig {
                max_bytes: cache_bytes,
                found_ttl: Duration::from_secs(pick!(cache_ttl).unwrap_or(300)),
                empty_ttl: Duration::from_secs(pick!(cache_empty_ttl).unwrap_or(30)),
            }),
            limits: Limits {
                max_upload: pick!(max_upload).unwrap_or(d.max_upload),
                max_limit,
                // hyper will not read a head smaller than 8 KiB.
                max_uri_bytes: pick!(max_uri_bytes).unwrap_or(d.max_uri_bytes),
                max_header_bytes: pick!(max_header_bytes).unwrap_or(d.max_header_bytes).max(8192),
                max_headers: pick!(max_headers).unwrap_or(d.max_headers).max(1),
                time_budget,
                body_timeout,
                compress_min_bytes: pick!(compress_min_bytes).unwrap_or(d.compress_min_bytes),
            },
            shutdown_timeout,
            rate,
            access_log,
            write_token: pick!(write_token).filter(|t| !t.is_empty()),
            snapshot_token: pick!(snapshot_token).filter(|t| !t.is_empty()),
            replica_of,
            poll: match pick!(poll) {
                Some(v) => duration("--poll", &v)?.max(Duration::from_millis(100)),
                None => Duration::from_secs(10),
            },
            live_writes: pick!(live_writes).unwrap_or(false),
            live_limit: pick!(live_limit).unwrap_or(cairn::DEFAULT_LIVE_LIMIT).max(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cairn.toml");
        std::fs::write(&path, "max_limit = 20\ncache_ttl = 7\ntime_budget = \"250ms\"\naccess_log = \"json\"\n")
            .unwrap();
        let args = ServeArgs { config: Some(path), max_limit: Some(50), ..Default::default() };
        let s = args.resolve().unwrap();
        assert_eq!(s.limits.max_limit, 50);
        assert_eq!(s.cache.as_ref().map(|c| c.found_ttl), Some(Duration::from_secs(7)));
        assert_eq!(s.limits.time_budget, Some(Duration::from_millis(250)));
        assert_eq!(s.access_log, AccessLog::Json);
        assert_eq!(s.limits.max_upload, Limits::default().max_upload);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cairn.toml");
        std::fs::write(&path, "max_limt = 20\n").unwrap();
        let err = ServeArgs { config: Some(path), ..Default::default() }.resolve().unwrap_err();
        assert!(format!("{err:#}").contains("max_limt"), "{err:#}");
        let err = ServeArgs { time_budget: Some("soon".into()), ..Default::default() }.resolve().unwrap_err();
        assert!(err.to_string().contains("time-budget"), "{err}");
    }

    #[test]
    fn a_replica_takes_no_writes_whichever_way_it_is_configured() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cairn.toml");
        std::fs::write(&path, "write_token = \"w\"\nreplica_of = \"http://127.0.0.1:7878\"\n").unwrap();
        let err = ServeArgs { config: Some(path.clone()), ..Default::default() }.resolve().unwrap_err();
        assert!(err.to_string().contains("exclude each other"), "{err}");
        std::fs::write(&path, "write_token = \"w\"\n").unwrap();
        let args = ServeArgs { config: Some(path), replica_of: Some("http://h:1".into()), ..Default::default() };
        assert!(args.resolve().is_err());
        let err = ServeArgs { replica_of: Some("https://h:1".into()), ..Default::default() }.resolve().unwrap_err();
        assert!(err.to_string().contains("http://"), "{err}");
    }
}
