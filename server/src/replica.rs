//! Snapshot shipping over HTTP: the primary's `GET /snapshot/*` routes and
//! the replica's loop that follows a primary.
//!
//! A replica asks `GET /snapshot/latest` every poll interval. A primary's
//! state is its history (an id made with its database and anew by every
//! restore) and its generation: when the primary's differ from the
//! replica's, a newer generation of the same history or any generation of
//! another, the replica downloads `GET /snapshot/{generation}` to a staging
//! file, and the engine verifies and installs it atomically (requests in
//! flight finish on the generation they started on). A bare generation
//! number would not do: a primary restored to an older snapshot that then
//! commits again reaches numbers the replica already has, with other
//! content. Any failure leaves the current generation serving and is
//! retried with back-off.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use cairn::Database;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

/// Where a primary keeps the snapshot file of its current generation.
const SNAPSHOT_DIR: &str = "snapshots";

/// The primary's side: one snapshot file per generation, made on the first
/// request for it, kept until a newer one is made.
pub struct Publisher {
    dir: PathBuf,
    // One builder at a time: concurrent replicas asking for the same new
    // generation wait for the one file instead of each building theirs.
    building: Arc<tokio::sync::Mutex<()>>,
}

impl Publisher {
    /// Starts with no file published: one left by an earlier run may hold
    /// another history under the same generation number (the database may
    /// have been restored to an older snapshot since).
    pub fn new(data: &Path) -> Publisher {
        let dir = data.join(SNAPSHOT_DIR);
        let _ = std::fs::remove_dir_all(&dir);
        Publisher { dir, building: Arc::new(tokio::sync::Mutex::new(())) }
    }

    fn path(&self, generation: u64) -> PathBuf {
        self.dir.join(format!("gen-{generation:010}.cairn-snapshot"))
    }

    /// The snapshot file and manifest of the current generation, made if
    /// needed.
    pub async fn latest(&self, db: &Arc<Database>) -> Result<(u64, PathBuf, cairn::Manifest)> {
        let one = self.building.clone().lock_owned().await;
        let generation = db.generation();
        if generation == 0 {
            bail!("nothing has been imported yet");
        }
        let path = self.path(generation);
        if path.exists() {
            let file = std::fs::File::open(&path)?;
            let manifest = cairn::snapshot::read_manifest(&mut std::io::BufReader::new(file))?;
            return Ok((generation, path, manifest));
        }
        let (db, dir, tmp) = (db.clone(), self.dir.clone(), self.dir.join("building.cairn-snapshot"));
        let this = self.dir.clone();
        tokio::task::spawn_blocking(move || -> Result<(u64, PathBuf, cairn::Manifest)> {
            // Held until the file is made even if the request that asked
            // for it is gone.
            let _one = one;
            std::fs::create_dir_all(&dir)?;
            let manifest = db.create_snapshot_file(&tmp)?;
            // Named after the generation it holds: a commit may have landed
            // since `generation` was read.
            let path = this.join(format!("gen-{:010}.cairn-snapshot", manifest.generation));
            std::fs::rename(&tmp, &path)?;
            // Older files are of no use to anyone: replicas ask for the latest.
            for e in std::fs::read_dir(&dir)?.flatten() {
                if e.path() != path {
                    let _ = std::fs::remove_file(e.path());
                }
            }
            Ok((manifest.generation, path, manifest))
        })
        .await?
    }

    /// The file of `generation` if it is the one published.
    pub fn file(&self, generation: u64) -> Option<PathBuf> {
        Some(self.path(generation)).filter(|p| p.exists())
    }
}

/// What a replica knows of its primary, for `/health/ready` and `/metrics`.
#[derive(Default)]
pub struct ReplicaStatus {
    /// Newest generation the primary announced.
    pub primary_generation: AtomicU64,
    /// When (seconds since the epoch) a newer primary generation was first
    /// seen and not yet installed; 0 when in step.
    pub behind_since: AtomicU64,
    /// When the last poll of the primary succeeded (seconds since the epoch).
    pub last_contact: AtomicU64,
    pub failures: AtomicU64,
    pub installs: AtomicU64,
    /// Milliseconds the last install took (download excluded).
    pub last_install_ms: AtomicU64,
    /// Installs made because the primary's history was not the replica's.
    pub history_changes: AtomicU64,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl ReplicaStatus {
    pub fn gauges(&self) -> Vec<(&'static str, &'static str, f64)> {
        vec![
            (
                "cairn_replica_primary_generation",
                "Newest generation the primary announced.",
                self.primary_generation.load(Relaxed) as f64,
            ),
            (
                "cairn_replica_lag_seconds",
                "Seconds since the primary had a generation this replica has not installed.",
                self.lag_seconds() as f64,
            ),
            (
                "cairn_replica_sync_failures_total",
                "Failed polls, downloads or installs.",
                self.failures.load(Relaxed) as f64,
            ),
            ("cairn_replica_installs_total", "Snapshots installed.", self.installs.load(Relaxed) as f64),
            (
                "cairn_replica_history_changes_total",
                "Snapshots installed because the primary's history was another than the replica's (a restore).",
                self.history_changes.load(Relaxed) as f64,
            ),
            (
                "cairn_replica_seconds_since_contact",
                "Seconds since the primary last answered a poll.",
                self.seconds_since_contact() as f64,
            ),
            (
                "cairn_replica_last_install_seconds",
                "Time the last install took, download excluded.",
                self.last_install_ms.load(Relaxed) as f64 / 1e3,
            ),
        ]
    }

    pub fn seconds_since_contact(&self) -> u64 {
        now_secs().saturating_sub(self.last_contact.load(Relaxed))
    }

    /// Seconds the replica has been behind its primary.
    pub fn lag_seconds(&self) -> u64 {
        match self.behind_since.load(Relaxed) {
            0 => 0,
            t => now_secs().saturating_sub(t),
        }
    }
}

/// Checks a `--replica-of` URL when the settings are read, so that a bad
/// one stops the server at start instead of leaving a replica that never
/// follows.
pub fn check_url(url: &str) -> Result<()> {
    Primary::parse(url, None).map(|_| ())
}

/// How long a primary may take to answer a request, and to send the next
/// piece of a snapshot: a primary that stops answering must not stop the
/// replica from trying again.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_mins(1);

/// A primary's address: `http://host:port` (plain HTTP; put TLS in front).
struct Primary {
    authority: String,
    token: Option<String>,
}

impl Primary {
    fn parse(url: &str, token: Option<String>) -> Result<Primary> {
        let rest =
            url.strip_prefix("http://").ok_or_else(|| anyhow!("--replica-of must be an http:// URL, not {url:?}"))?;
        let authority = rest.split('/').next().unwrap_or("").to_owned();
        if authority.is_empty() {
            bail!("--replica-of has no host: {url:?}");
        }
        Ok(Primary { authority, token })
    }

    async fn get(&self, path: &str) -> Result<hyper::Response<hyper::body::Incoming>> {
        tokio::time::timeout(ANSWER_TIMEOUT, self.get_untimed(path))
            .await
            .map_err(|_| anyhow!("GET {path}: no answer from {} within {ANSWER_TIMEOUT:?}", self.authority))?
    }

    async fn get_untimed(&self, path: &str) -> Result<hyper::Response<hyper::body::Incoming>> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("connecting to {}", self.authority))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let mut req = Request::get(path).header(hyper::header::HOST, &self.authority);
        if let Some(t) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = send.send_request(req.body(Empty::<Bytes>::new())?).await?;
        if resp.status() != StatusCode::OK {
            let status = resp.status();
            let body = resp.into_body().collect().await.map(http_body_util::Collected::to_bytes).unwrap_or_default();
            bail!("GET {path}: {status} {}", String::from_utf8_lossy(&body));
        }
        Ok(resp)
    }
}

/// Follows the primary until the process ends.
pub async fn follow(db: Arc<Database>, url: String, token: Option<String>, poll: Duration, status: Arc<ReplicaStatus>) {
    let primary = match Primary::parse(&url, token) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("replica: {e:#}");
            return;
        }
    };
    // Counted from the start until the primary first answers.
    status.last_contact.store(now_secs(), Relaxed);
    let staging = db.path().join("incoming.cairn-snapshot");
    // A download left by a replica killed before it could remove it.
    let _ = tokio::fs::remove_file(&staging).await;
    let mut backoff = poll;
    loop {
        match sync_once(&db, &primary, &staging, &status).await {
            Ok(()) => backoff = poll,
            Err(e) => {
                status.failures.fetch_add(1, Relaxed);
                eprintln!("replica: {e:#}; retrying in {backoff:?}");
                let _ = tokio::fs::remove_file(&staging).await;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(poll.max(Duration::from_mins(1)));
                continue;
            }
        }
        tokio::time::sleep(poll).await;
    }
}

/// What the replica holds against what its primary announces.
#[derive(Debug, PartialEq)]
enum Step {
    UpToDate,
    /// A newer generation of the same history.
    Newer,
    /// Another history: whatever its generation, the replica's is not it.
    OtherHistory,
}

fn step(local: (Option<u64>, u64), primary: (Option<u64>, u64)) -> Step {
    let ((lh, lg), (ph, pg)) = (local, primary);
    if lg == 0 {
        // Nothing installed yet: the first install, of whatever history.
        return if pg > 0 { Step::Newer } else { Step::UpToDate };
    }
    match (lh, ph) {
        (Some(l), Some(p)) if l != p => Step::OtherHistory,
        // One side made before histories existed: numbers alone, as then.
        (_, None) | (None, _) if pg <= lg => Step::UpToDate,
        _ if pg == lg => Step::UpToDate,
        // The same history cannot go back: a primary that did was put back
        // by hand (a copied store), and is followed as another history.
        (Some(_), Some(_)) if pg < lg => Step::OtherHistory,
        _ => Step::Newer,
    }
}

fn parse_history(v: &serde_json::Value) -> Option<u64> {
    v.as_str().and_then(|h| u64::from_str_radix(h, 16).ok())
}

async fn sync_once(db: &Arc<Database>, primary: &Primary, staging: &Path, status: &ReplicaStatus) -> Result<()> {
    let body = tokio::time::timeout(READ_TIMEOUT, primary.get("/snapshot/latest").await?.into_body().collect())
        .await
        .map_err(|_| anyhow!("the primary's manifest stalled"))??
        .to_bytes();
    let manifest: serde_json::Value = serde_json::from_slice(&body).context("reading the primary's manifest")?;
    let latest = manifest["generation"].as_u64().ok_or_else(|| anyhow!("the manifest has no generation"))?;
    let history = parse_history(&manifest["history"]);
    status.last_contact.store(now_secs(), Relaxed);
    status.primary_generation.store(latest, Relaxed);
    let local = (db.history()?, db.generation());
    let step = step(local, (history, latest));
    if step == Step::UpToDate {
        status.behind_since.store(0, Relaxed);
        return Ok(());
    }
    if step == Step::OtherHistory {
        eprintln!(
            "replica: the primary is at generation {latest} of history {}, this replica at generation {} of history {}: the primary was restored or replaced; installing its snapshot",
            history.map_or("?".into(), cairn::snapshot::history_hex),
            local.1,
            local.0.map_or("?".into(), cairn::snapshot::history_hex),
        );
    }
    let _ = status.behind_since.compare_exchange(0, now_secs(), Relaxed, Relaxed);
    let mut resp = primary.get(&format!("/snapshot/{latest}")).await?;
    let mut file = tokio::fs::File::create(staging).await?;
    while let Some(frame) = tokio::time::timeout(READ_TIMEOUT, resp.body_mut().frame())
        .await
        .map_err(|_| anyhow!("the download stalled for {READ_TIMEOUT:?}"))?
    {
        if let Ok(data) = frame?.into_data() {
            file.write_all(&data).await?;
        }
    }
    file.flush().await?;
    drop(file);
    let (db, path) = (db.clone(), staging.to_owned());
    let started = Instant::now();
    let installed = tokio::task::spawn_blocking(move || -> Result<cairn::Manifest> {
        let mut f = std::io::BufReader::new(std::fs::File::open(&path)?);
        // Read first, so that a file of another history than announced
        // (the primary restored between the two requests) is not installed.
        let m = cairn::snapshot::read_manifest(&mut f)?;
        if m.history.as_deref().map(|h| u64::from_str_radix(h, 16).ok()) != history.map(Some) {
            bail!("the snapshot is of another history than the primary announced; asking again");
        }
        std::io::Seek::rewind(f.get_mut())?;
        let m = db.follow_snapshot(&mut std::io::BufReader::new(f.into_inner()))?;
        let _ = std::fs::remove_file(&path);
        Ok(m)
    })
    .await??;
    status.last_install_ms.store(started.elapsed().as_millis() as u64, Relaxed);
    status.installs.fetch_add(1, Relaxed);
    if step == Step::OtherHistory {
        status.history_changes.fetch_add(1, Relaxed);
    }
    if installed.generation >= status.primary_generation.load(Relaxed) {
        status.behind_since.store(0, Relaxed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_follows_histories_not_numbers() {
        let (h, other) = (Some(7), Some(9));
        assert_eq!(step((h, 3), (h, 3)), Step::UpToDate);
        assert_eq!(step((h, 3), (h, 5)), Step::Newer);
        // Restored to an older snapshot, then committed: another history,
        // lower, equal or higher numbers alike.
        for g in [2, 10, 11] {
            assert_eq!(step((h, 10), (other, g)), Step::OtherHistory, "{g}");
        }
        assert_eq!(step((h, 10), (h, 4)), Step::OtherHistory);
        // Databases from before histories: numbers, as before.
        assert_eq!(step((h, 3), (None, 3)), Step::UpToDate);
        assert_eq!(step((h, 3), (None, 4)), Step::Newer);
        assert_eq!(step((None, 3), (h, 4)), Step::Newer);
        // An empty replica takes whatever the primary has, as a first install.
        assert_eq!(step((other, 0), (h, 4)), Step::Newer);
    }
}
