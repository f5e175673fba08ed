//! The HTTP front end: Addok's routes over hyper 1.x, HTTP/1.1 and HTTP/2,
//! with the response cache, compression, limits, rate limiting, metrics and
//! an access log around them.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn::{Database, Point, ResponseCache, ReverseQuery, SearchQuery};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{
    HeaderName, HeaderValue, ACCEPT_ENCODING, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ALLOW, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, VARY,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::compress::Encoding;
use crate::config::{AccessLog, Limits};
use crate::geojson::{self, Echo};
use crate::metrics::{Gauges, Metrics, Route};
use crate::params::{self, BadRequest, Params};
use crate::ratelimit::RateLimiter;
use crate::replica::{Publisher, ReplicaStatus};

/// Every answer's body. Its error ends a streamed answer (a CSV batch) that
/// fails once its head is sent: the client sees the body cut short (no
/// last chunk in HTTP/1.1, a reset stream in HTTP/2), never a whole 200.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BodyError>;
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

fn full(body: Bytes) -> Body {
    Full::new(body).map_err(|never: Infallible| match never {}).boxed()
}

const JSON: &str = "application/json; charset=utf-8";
/// The largest `POST /documents` body (as sent) committed live; a larger
/// one builds a new base generation (see `cairn::Database::write_live`).
const LIVE_BODY_MAX: usize = 1 << 20;

pub(crate) fn respond(status: StatusCode, body: &Value) -> Response<Body> {
    respond_bytes(status, Bytes::from(body.to_string()))
}

pub(crate) fn respond_bytes(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

pub(crate) fn error(e: BadRequest) -> Response<Body> {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut body = json!({"title": e.title});
    if let Some(d) = e.description {
        body["description"] = Value::String(d);
    }
    respond(status, &body)
}

fn internal(e: cairn::Error) -> Response<Body> {
    respond(StatusCode::INTERNAL_SERVER_ERROR, &json!({"title": "Internal error", "description": e.to_string()}))
}

fn set_header(r: &mut Response<Body>, name: HeaderName, value: impl ToString) {
    if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
        r.headers_mut().insert(name, v);
    }
}

/// Everything a request may need: the database and the server's parts.
pub struct App {
    pub db: Arc<Database>,
    pub cache: Option<ResponseCache>,
    pub metrics: Metrics,
    pub limiter: Option<RateLimiter>,
    pub limits: Limits,
    pub access_log: AccessLog,
    /// Bearer token of `POST /documents` and `DELETE /documents/{id}`;
    /// without one, writes are refused.
    pub write_token: Option<String>,
    /// Bearer token of `GET /snapshot/*`; open when `None`.
    pub snapshot_token: Option<String>,
    /// Small writes are live commits (`cairn::Database::write_live`).
    pub live_writes: bool,
    pub publisher: Option<Publisher>,
    /// Set on a replica: what it knows of its primary.
    pub replica: Option<Arc<ReplicaStatus>>,
}

/// Cached bodies start with one byte naming the coding they are in.
const TAG_IDENTITY: u8 = 0;
const TAG_GZIP: u8 = 1;
const TAG_BROTLI: u8 = 2;

impl App {
    pub fn new(db: Arc<Database>, cache: Option<ResponseCache>, limits: Limits) -> App {
        App {
            db,
            cache,
            metrics: Metrics::default(),
            limiter: None,
            limits,
            access_log: AccessLog::Off,
            write_token: None,
            snapshot_token: None,
            live_writes: false,
            publisher: None,
            replica: None,
        }
    }

    /// A JSON body, compressed when the client accepts it and it is worth it.
    pub(crate) fn json(&self, status: StatusCode, body: Bytes, enc: Encoding) -> Response<Body> {
        let (tag, body) = self.encode(body, enc);
        Self::tagged(status, tag, body)
    }

    fn encode(&self, body: Bytes, enc: Encoding) -> (u8, Bytes) {
        if body.len() < self.limits.compress_min_bytes {
            return (TAG_IDENTITY, body);
        }
        match enc {
            Encoding::Identity => (TAG_IDENTITY, body),
            Encoding::Gzip => (TAG_GZIP, Bytes::from(enc.compress(&body))),
            Encoding::Brotli => (TAG_BROTLI, Bytes::from(enc.compress(&body))),
        }
    }

    fn tagged(status: StatusCode, tag: u8, body: Bytes) -> Response<Body> {
        let mut r = respond_bytes(status, body);
        let coding = match tag {
            TAG_GZIP => Some("gzip"),
            TAG_BROTLI => Some("br"),
            _ => None,
        };
        let h = r.headers_mut();
        if let Some(c) = coding {
            h.insert(CONTENT_ENCODING, HeaderValue::from_static(c));
        }
        h.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
        r
    }

    /// Answers one request: limits and rate first, then the route; counts
    /// and logs it.
    pub async fn call(self: Arc<Self>, req: Request<Incoming>, client: IpAddr) -> Response<Body> {
        let started = Instant::now();
        let route = Route::of(req.uri().path());
        let method = req.method().clone();
        let target = (self.access_log != AccessLog::Off)
            .then(|| req.uri().path_and_query().map(|p| p.as_str().to_owned()))
            .flatten();
        let rate = match (&self.limiter, route) {
            (_, Route::Health | Route::Ready | Route::Metrics) | (None, _) => None,
            (Some(l), _) => Some(l.check(client)),
        };
        let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
        let mut resp = if uri_len > self.limits.max_uri_bytes {
            bad(414, format!("Request target too long, {uri_len} bytes, limit is {}", self.limits.max_uri_bytes))
        } else if rate.is_some_and(|d| !d.allowed) {
            let mut r = bad(429, "Too many requests");
            set_header(&mut r, RETRY_AFTER, rate.map_or(1, |d| d.retry_after_secs));
            r
        } else {
            self.route(route, req).await
        };
        if let Some(d) = rate {
            set_header(&mut resp, HeaderName::from_static("x-ratelimit-limit"), d.limit);
            set_header(&mut resp, HeaderName::from_static("x-ratelimit-remaining"), d.remaining);
            set_header(&mut resp, HeaderName::from_static("x-ratelimit-reset"), d.reset_secs);
        }
        let elapsed = started.elapsed();
        self.metrics.record(route, resp.status().as_u16(), elapsed);
        if self.access_log != AccessLog::Off {
            tracing::info!(
                client = %client,
                method = %method,
                target = target.as_deref().unwrap_or(""),
                status = resp.status().as_u16(),
                micros = elapsed.as_micros() as u64,
                "request"
            );
        }
        resp
    }

    async fn route(self: &Arc<Self>, route: Route, req: Request<Incoming>) -> Response<Body> {
        let enc = Encoding::negotiate(req.headers().get(ACCEPT_ENCODING).and_then(|v| v.to_str().ok()));
        match route {
            Route::SearchCsv | Route::ReverseCsv if req.method() == Method::OPTIONS => preflight("POST, OPTIONS"),
            Route::SearchCsv | Route::ReverseCsv => {
                if req.method() != Method::POST {
                    return method_not_allowed("POST, OPTIONS");
                }
                handle_csv(self.db.clone(), req, route == Route::ReverseCsv, &self.limits, enc).await
            }
            Route::Other => respond(StatusCode::NOT_FOUND, &json!({"title": "404 Not Found"})),
            Route::Documents => self.documents(req).await,
            Route::Snapshot => self.snapshot(req).await,
            Route::Collections if req.method() == Method::OPTIONS => preflight("GET, PUT, POST, DELETE, OPTIONS"),
            Route::Collections => self.collections(req, enc).await,
            _ if req.method() == Method::OPTIONS => preflight("GET, OPTIONS"),
            _ if req.method() != Method::GET && req.method() != Method::HEAD => method_not_allowed("GET, OPTIONS"),
            // The index libraries assume their files are sound; should one
            // panic on a damaged file, this request answers 500 and the
            // connection and the server go on.
            _ => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.get(route, req.uri().path(), req.uri().query(), enc)
            }))
            .unwrap_or_else(|_| {
                respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"title": "Internal error", "description": "the index failed on this request"}),
                )
            }),
        }
    }

    /// The GET routes: pure functions of the request and the database.
    pub fn get(&self, route: Route, path: &str, query: Option<&str>, enc: Encoding) -> Response<Body> {
        let db = &self.db;
        match route {
            Route::Search => self.search(query, enc),
            Route::Reverse => self.reverse(query, enc),
            Route::Health => {
                let c = self.cache.as_ref().map(cairn::ResponseCache::stats).unwrap_or_default();
                let cache = json!({"hits": c.hits, "misses": c.misses, "evictions": c.evictions, "entries": c.entries, "bytes": c.bytes});
                respond(
                    StatusCode::OK,
                    &json!({"status": "HEALTHY", "generation": db.generation(), "documents": db.len(), "cache": cache}),
                )
            }
            Route::Ready => self.ready(),
            Route::Metrics => {
                let gauges = Gauges {
                    documents: db.len(),
                    generation: db.generation(),
                    cache: self.cache.as_ref().map(cairn::ResponseCache::stats),
                    extra: self.replica.as_ref().map(|r| r.gauges()).unwrap_or_default(),
                };
                let mut r = self.json(StatusCode::OK, Bytes::from(self.metrics.render(&gauges)), enc);
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
                r
            }
            Route::Get => self.document(path, enc),
            _ => respond(StatusCode::NOT_FOUND, &json!({"title": "404 Not Found"})),
        }
    }

    /// `GET /search`. The request is parsed before the cache is asked: the
    /// cache key is the parsed request, the only thing the answer depends on.
    fn search(&self, query: Option<&str>, enc: Encoding) -> Response<Body> {
        let deadline = self.limits.time_budget.map(|b| Instant::now() + b);
        let parsed = match params::parse_search(&Params::parse(query), self.limits.max_limit) {
            Ok(p) => p,
            Err(e) => return error(e),
        };
        let key = self.cache.as_ref().map(|_| search_key(parsed.query(), enc));
        if let Some(hit) = key.as_deref().and_then(|k| self.cache_hit(k)) {
            return hit;
        }
        let q = match parsed.check() {
            Ok(q) => q,
            Err(e) => return error(e),
        };
        self.computed(key.as_deref(), enc, &|| {
            let features = match deadline {
                Some(d) => self.db.search_until(&q, d)?,
                None => self.db.search(&q)?,
            };
            let echo = Echo { query: Some(&q.q), filters: &q.filters, center: q.near, limit: q.limit };
            Ok((geojson::collection_bytes(&features, &echo), !features.is_empty()))
        })
    }

    /// `GET /reverse`, parsed before the cache is asked as `search` is.
    fn reverse(&self, query: Option<&str>, enc: Encoding) -> Response<Body> {
        let q = match params::reverse(&Params::parse(query), self.limits.max_limit) {
            Ok(q) => q,
            Err(e) => return error(e),
        };
        let key = self.cache.as_ref().map(|_| reverse_key(&q, enc));
        if let Some(hit) = key.as_deref().and_then(|k| self.cache_hit(k)) {
            return hit;
        }
        self.computed(key.as_deref(), enc, &|| {
            let features = self.db.reverse(&q)?;
            let echo = Echo { query: None, filters: &q.filters, center: None, limit: q.limit };
            Ok((geojson::collection_bytes(&features, &echo), !features.is_empty()))
        })
    }

    /// `GET /get/{id}`.
    fn document(&self, path: &str, enc: Encoding) -> Response<Body> {
        // One trailing slash is the route's own (`/get/ID/`); more would be
        // part of the id, which no id of a record ends with.
        let raw = path.strip_suffix('/').unwrap_or(path).strip_prefix("/get/").unwrap_or("");
        let id = match path_segment(raw) {
            Ok(id) => id,
            Err(e) => return error(e),
        };
        match self.db.get(&id) {
            Err(e) => internal(e),
            Ok(Some(f)) => self.json(StatusCode::OK, Bytes::from(geojson::feature(&f).to_string()), enc),
            Ok(None) => respond(
                StatusCode::NOT_FOUND,
                &json!({"title": "404 Not Found", "description": format!("no document with id {id:?}")}),
            ),
        }
    }

    /// `POST /documents` (a body in an import format, one commit) and
    /// `DELETE /documents/{id}`, for holders of the write token.
    async fn documents(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path();
        let path = path.strip_suffix('/').unwrap_or(path);
        let id = path.strip_prefix("/documents/");
        match (req.method(), id) {
            (&Method::POST, None) | (&Method::DELETE, Some(_)) => {}
            (_, None) => return method_not_allowed("POST"),
            (_, Some(_)) => return method_not_allowed("DELETE"),
        }
        if let Err(r) = authorize(self.write_token.as_deref(), &req, "writes") {
            return r;
        }
        if let Some(raw) = id {
            return self.delete(raw).await;
        }
        let db = self.db.clone();
        let gzip = match is_gzip(req.headers()) {
            Ok(g) => g,
            Err(r) => return r,
        };
        let format = match req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
            Some(t) if t.starts_with("text/csv") => Some(cairn::Format::BanCsv),
            Some(t) if t.starts_with("application/x-ndjson") || t.starts_with("application/json") => {
                Some(cairn::Format::BanNdjson)
            }
            _ => None,
        };
        let body = match read_body(req.into_body(), self.limits.max_upload, self.limits.body_timeout).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        // A small body is a live commit (a layer over the base, visible in
        // milliseconds); a large one, an import, builds a new base at once,
        // as a live commit would do once its layers grew that large.
        let live = self.live_writes && body.len() <= LIVE_BODY_MAX;
        let (mut input, over) = decoded(body.clone(), gzip, self.limits.max_upload);
        let format = match format {
            Some(f) => f,
            None => match std::io::BufRead::fill_buf(&mut input) {
                Err(_) if over.load(Ordering::Relaxed) => return inflated_too_large(self.limits.max_upload),
                Err(e) => return bad(400, format!("The body could not be read: {e}")),
                Ok(head) => match cairn::import::detect_format("body".as_ref(), head) {
                    Ok(f) => f,
                    Err(_) => {
                        return bad(415, "Send documents as application/x-ndjson (BAN NDJSON) or text/csv (BAN CSV)")
                    }
                },
            },
        };
        let done = if live {
            // Shares its commit with the writes of other requests that
            // arrive meanwhile; the body is read again if the group must
            // run again without another's write.
            let max = self.limits.max_upload;
            let over = over.clone();
            tokio::task::spawn_blocking(move || {
                drop(input);
                let import = move |b: &mut cairn::Batch| {
                    let (input, inflated_over) = decoded(body.clone(), gzip, max);
                    let mut skipped = cairn::Skipped::default();
                    let done = b.import(input, format, cairn::OnError::Fail, &mut skipped);
                    if inflated_over.load(Ordering::Relaxed) {
                        over.store(true, Ordering::Relaxed);
                    }
                    done.map(|()| skipped)
                };
                db.write_grouped(import)
            })
            .await
        } else {
            tokio::task::spawn_blocking(move || {
                let mut skipped = cairn::Skipped::default();
                let import = |b: &mut cairn::Batch| b.import(input, format, cairn::OnError::Fail, &mut skipped);
                db.write(import).map(|((), c)| (skipped, c))
            })
            .await
        };
        let done = done.map(|r| r.map(|(skipped, c)| (c, skipped)));
        if over.load(Ordering::Relaxed) {
            return inflated_too_large(self.limits.max_upload);
        }
        committed(done)
    }

    /// `DELETE /documents/{id}`, `raw` the id as the path has it.
    async fn delete(&self, raw: &str) -> Response<Body> {
        let id = match path_segment(raw) {
            Ok(id) => id,
            Err(e) => return error(e),
        };
        let db = self.db.clone();
        let found = match db.get(&id) {
            Ok(found) => found,
            Err(e) => return internal(e),
        };
        if found.is_none() {
            return respond(
                StatusCode::NOT_FOUND,
                &json!({"title": "404 Not Found", "description": format!("no document with id {id:?}")}),
            );
        }
        let live = self.live_writes;
        let done = tokio::task::spawn_blocking(move || {
            if live {
                db.write_grouped(move |b: &mut cairn::Batch| b.delete(&id).map(|_| ()))
            } else {
                db.write(|b: &mut cairn::Batch| b.delete(&id).map(|_| ()))
            }
        })
        .await;
        committed(done.map(|r| r.map(|((), c)| (c, cairn::Skipped::default()))))
    }

    /// `GET /snapshot/latest` (the manifest, as JSON) and
    /// `GET /snapshot/{generation}` (the file).
    async fn snapshot(&self, req: Request<Incoming>) -> Response<Body> {
        if req.method() != Method::GET {
            return method_not_allowed("GET");
        }
        if self.snapshot_token.is_some() {
            if let Err(r) = authorize(self.snapshot_token.as_deref(), &req, "snapshot requests") {
                return r;
            }
        }
        let Some(publisher) = &self.publisher else {
            return bad(404, "This server does not publish snapshots");
        };
        let what = req.uri().path().trim_end_matches('/').trim_start_matches("/snapshot/").to_owned();
        let path = if what == "latest" {
            return match publisher.latest(&self.db).await {
                Ok((_, _, manifest)) => match serde_json::to_value(&manifest) {
                    Ok(v) => respond(StatusCode::OK, &v),
                    Err(e) => bad(500, format!("Could not encode the manifest: {e}")),
                },
                Err(e) => bad(503, format!("No snapshot to publish: {e:#}")),
            };
        } else {
            let Ok(generation) = what.parse::<u64>() else {
                return bad(404, format!("No snapshot {what:?}: ask /snapshot/latest or /snapshot/<generation>"));
            };
            match publisher.file(generation) {
                Some(p) => p,
                None if generation == self.db.generation() => match publisher.latest(&self.db).await {
                    Ok((g, p, _)) if g == generation => p,
                    Ok(_) => return bad(404, format!("Generation {generation} is no longer published")),
                    Err(e) => return bad(503, format!("No snapshot to publish: {e:#}")),
                },
                None => return bad(404, format!("Generation {generation} is not published; ask /snapshot/latest")),
            }
        };
        // Gone when a newer generation's file replaced it in between.
        let Ok(file) = tokio::fs::File::open(&path).await else {
            return bad(404, "This generation is no longer published; ask /snapshot/latest");
        };
        let len = file.metadata().await.map(|m| m.len()).ok();
        let (mut tx, body) = http_body_util::channel::Channel::<Bytes, BodyError>::new(4);
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut file = file;
            loop {
                let mut buf = vec![0u8; 256 * 1024];
                match file.read(&mut buf).await {
                    Ok(0) => break,
                    Err(e) => {
                        tx.abort(Box::new(e));
                        break;
                    }
                    Ok(n) => {
                        buf.truncate(n);
                        if tx.send_data(Bytes::from(buf)).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let mut r = Response::new(body.boxed());
        r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        if let Some(n) = len {
            set_header(&mut r, hyper::header::CONTENT_LENGTH, n);
        }
        r
    }

    /// Ready when a generation is open and a query runs on it.
    fn ready(&self) -> Response<Body> {
        let db = &self.db;
        let not_ready =
            |why: String| respond(StatusCode::SERVICE_UNAVAILABLE, &json!({"status": "NOT_READY", "description": why}));
        if db.generation() == 0 {
            return not_ready("no data has been imported yet".into());
        }
        match db.probe() {
            Ok(()) => {
                let mut v = json!({"status": "READY", "generation": db.generation(), "documents": db.len()});
                if let Some(r) = &self.replica {
                    v["role"] = json!("replica");
                    v["primary_generation"] = json!(r.primary_generation.load(std::sync::atomic::Ordering::Relaxed));
                    v["lag_seconds"] = json!(r.lag_seconds());
                }
                respond(StatusCode::OK, &v)
            }
            Err(e) => not_ready(format!("the index does not answer: {e}")),
        }
    }

    fn cache_hit(&self, key: &str) -> Option<Response<Body>> {
        let body = self.cache.as_ref()?.peek(self.db.epoch(), key)?;
        let tag = body.first().copied().unwrap_or(TAG_IDENTITY);
        Some(Self::tagged(StatusCode::OK, tag, Bytes::from(body).slice(1..)))
    }

    /// Computes an answer, encodes it and keeps it under `key`.
    fn computed(
        &self,
        key: Option<&str>,
        enc: Encoding,
        compute: &dyn Fn() -> Result<(Vec<u8>, bool), cairn::Error>,
    ) -> Response<Body> {
        // The generation the answer is computed on: a commit during the
        // search makes it an entry of the old generation, never of the new
        // (by epoch, not number: a restore can bring a number back).
        let generation = self.db.epoch();
        if let (Some(c), Some(_)) = (&self.cache, key) {
            c.missed();
        }
        match compute() {
            Ok((v, found)) => {
                let (tag, body) = self.encode(Bytes::from(v), enc);
                if let (Some(c), Some(k)) = (&self.cache, key) {
                    let mut stored = Vec::with_capacity(body.len() + 1);
                    stored.push(tag);
                    stored.extend_from_slice(&body);
                    c.insert(generation, k, &stored, found);
                }
                Self::tagged(StatusCode::OK, tag, body)
            }
            Err(cairn::Error::Timeout) => {
                let budget = self.limits.time_budget.unwrap_or_default();
                let mut r = bad(
                    503,
                    format!("The query took longer than the time budget of {budget:?}; try a more precise query"),
                );
                set_header(&mut r, RETRY_AFTER, 1);
                r
            }
            Err(e) => internal(e),
        }
    }
}

/// The response cache's key of a search: the coding asked for, then each
/// field of the parsed request in a fixed order. It is built from what the
/// engine is asked and echoed, never from the query string: a repeated
/// parameter keeps its last value, so the query string's pairs sorted could
/// not tell `q=a&q=b` (b) from `q=b&q=a` (a). Each text is length-prefixed,
/// so no two requests write the same key whatever their characters. The
/// cache files the key under the generation that answers.
fn search_key(query: &SearchQuery, enc: Encoding) -> String {
    // Every field by name: a field added to the query fails to compile here
    // until the key has it.
    let SearchQuery { q, limit, autocomplete, near, filters } = query;
    let mut k = Key::new(enc, 's', q.len() + 64);
    k.number(*limit);
    k.flag(*autocomplete);
    k.point(*near);
    k.filters(filters);
    k.text(q);
    k.0
}

/// The response cache's key of a reverse request, as [`search_key`].
fn reverse_key(query: &ReverseQuery, enc: Encoding) -> String {
    let ReverseQuery { at, limit, filters } = query;
    let mut k = Key::new(enc, 'r', 64);
    k.number(*limit);
    k.point(Some(*at));
    k.filters(filters);
    k.0
}

/// A cache key being written: every field ends where its own syntax says
/// (a number at `;`, a point after 32 hex digits, a text after its length),
/// so fields cannot run into each other.
struct Key(String);

impl Key {
    fn new(enc: Encoding, route: char, capacity: usize) -> Key {
        let mut s = String::with_capacity(capacity);
        s.push_str(enc.name().unwrap_or("-"));
        s.push(route);
        Key(s)
    }

    // By hand rather than with `write!`: every search writes a key, hit or
    // miss, and the formatting machinery costs more than the digits.
    fn number(&mut self, n: usize) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut n = n;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.0.extend(digits[i..].iter().map(|&d| char::from(d)));
        self.0.push(';');
    }

    fn bits(&mut self, v: f64) {
        let b = v.to_bits();
        self.0.extend((0..16).rev().map(|i| char::from(b"0123456789abcdef"[(b >> (i * 4)) as usize & 15])));
    }

    fn flag(&mut self, b: bool) {
        self.0.push(if b { 'y' } else { 'n' });
    }

    /// The coordinates' bits: two spellings of one number (`48.8`,
    /// `48.80`) are one point, and two numbers are never one.
    fn point(&mut self, p: Option<Point>) {
        match p {
            None => self.0.push('-'),
            Some(p) => {
                self.0.push('@');
                self.bits(p.lat);
                self.bits(p.lon);
            }
        }
    }

    fn text(&mut self, s: &str) {
        self.number(s.len());
        self.0.push_str(s);
    }

    fn filters(&mut self, filters: &[(String, Vec<String>)]) {
        self.number(filters.len());
        for (name, values) in filters {
            self.text(name);
            self.number(values.len());
            for v in values {
                self.text(v);
            }
        }
    }
}

/// Checks `Authorization: Bearer <token>`: 401 without it, 403 with a wrong
/// one or when the server has no token for this.
#[allow(clippy::result_large_err)]
pub(crate) fn authorize(expected: Option<&str>, req: &Request<Incoming>, what: &str) -> Result<(), Response<Body>> {
    let Some(expected) = expected else {
        return Err(bad(403, format!("This server does not accept {what}")));
    };
    let given = req.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match given.and_then(|g| g.strip_prefix("Bearer ")) {
        None => {
            let mut r = bad(401, "Missing bearer token");
            set_header(&mut r, hyper::header::WWW_AUTHENTICATE, "Bearer");
            Err(r)
        }
        // Compared in full whatever the first difference, so the time taken
        // says nothing about the token.
        Some(g)
            if g.len() == expected.len()
                && g.bytes().zip(expected.bytes()).fold(0, |acc, (a, b)| acc | (a ^ b)) == 0 =>
        {
            Ok(())
        }
        Some(_) => Err(bad(403, "Wrong token")),
    }
}

/// The answer to a write: the new generation, or why nothing changed.
fn committed(
    done: Result<cairn::Result<(cairn::CommitReport, cairn::Skipped)>, tokio::task::JoinError>,
) -> Response<Body> {
    match done {
        Ok(Ok((c, _))) => respond(
            StatusCode::OK,
            &json!({"generation": c.generation, "written": c.written, "deleted": c.deleted, "total": c.total}),
        ),
        Ok(Err(cairn::Error::BadInput { line, reason })) => error(BadRequest {
            status: 400,
            title: "Invalid document".into(),
            description: Some(format!("line {line}: {reason}; nothing was written")),
        }),
        Ok(Err(e @ cairn::Error::IdCollision { .. })) => error(BadRequest {
            status: 400,
            title: "Invalid document".into(),
            description: Some(format!("{e}; nothing was written")),
        }),
        Ok(Err(e)) => internal(e),
        Err(e) => bad(500, format!("The write did not finish: {e}")),
    }
}

/// The answer to a browser's CORS preflight (and to any OPTIONS) on the
/// public routes, as Addok gives it: the methods, and leave to send
/// `X-Requested-With`, which some autocomplete widgets add to every request.
fn preflight(allow: &'static str) -> Response<Body> {
    let mut r = respond_bytes(StatusCode::OK, Bytes::new());
    let h = r.headers_mut();
    h.remove(CONTENT_TYPE);
    h.insert(ALLOW, HeaderValue::from_static(allow));
    h.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(allow));
    h.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("X-Requested-With"));
    r
}

pub(crate) fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = respond(StatusCode::METHOD_NOT_ALLOWED, &json!({"title": "405 Method Not Allowed"}));
    r.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    r
}

pub(crate) fn bad(status: u16, title: impl Into<String>) -> Response<Body> {
    error(BadRequest { status, title: title.into(), description: None })
}

/// The form of a CSV request: multipart fields, then query-string ones.
struct CsvForm {
    data: Option<(String, Bytes)>,
    fields: Vec<(String, String)>,
}

/// Reads a whole request body of at most `max` bytes, waiting at most
/// `idle` for each piece of it.
#[allow(clippy::result_large_err)]
pub(crate) async fn read_body(mut body: Incoming, max: usize, idle: Duration) -> Result<Bytes, Response<Body>> {
    let mut out = bytes::BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(bad(408, format!("The request body stalled for {idle:?}"))),
            Ok(None) => return Ok(out.freeze()),
            Ok(Some(Err(e))) => return Err(bad(400, format!("Could not read the request body: {e}"))),
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > max {
                return Err(bad(413, format!("Upload too large, limit is {max} bytes")));
            }
            out.extend_from_slice(&data);
        }
    }
}

#[allow(clippy::result_large_err)]
async fn read_form(req: Request<Incoming>, max_upload: usize, idle: Duration) -> Result<CsvForm, Response<Body>> {
    let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let mut fields: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
    let boundary = multer::parse_boundary(&content_type)
        .map_err(|_| bad(400, "Expected a multipart/form-data body with the file in \"data\""))?;
    let bytes = read_body(req.into_body(), max_upload, idle).await?;
    let stream = futures_util::stream::once(async move { Ok::<Bytes, Infallible>(bytes) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut data = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(bad(400, format!("Malformed multipart body: {e}"))),
        };
        let name = field.name().unwrap_or("").to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let value = field.bytes().await.map_err(|e| bad(400, format!("Malformed multipart body: {e}")))?;
        if name == "data" {
            data = Some((file_name.unwrap_or_else(|| "data.csv".into()), value));
        } else {
            fields.push((name, String::from_utf8_lossy(&value).into_owned()));
        }
    }
    Ok(CsvForm { data, fields })
}

/// A delimiter as a form gives it: one character, or `tab` / `\t` spelled out.
fn form_delimiter(v: &str) -> Option<u8> {
    match v {
        "\t" => Some(b'\t'),
        _ => match v.trim() {
            "tab" | "\\t" => Some(b'\t'),
            t if t.len() == 1 => t.bytes().next(),
            _ => None,
        },
    }
}

/// Builds batch options from the form, as addok-csv reads them, and checks
/// them against the file's header as the batch will read it (byte order
/// mark dropped, decoded as the form says): everything that can be checked
/// is, before the answer starts; once its body has started, an error can
/// only cut it short.
#[allow(clippy::result_large_err)] // the error is the response itself, built once
fn csv_options(form: &CsvForm, data: &[u8], reverse: bool) -> Result<cairn::BatchOptions, Response<Body>> {
    let get = |k: &str| {
        form.fields.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.trim().to_owned()).filter(|v| !v.is_empty())
    };
    // Repeatable fields: every non-empty value, in order.
    let all = |k: &str| -> Vec<String> {
        form.fields.iter().filter(|(n, _)| n == k).map(|(_, v)| v.trim().to_owned()).filter(|v| !v.is_empty()).collect()
    };
    // addok-csv's line ends: a client that splits on "\r\n" sees no change.
    let mut options = cairn::BatchOptions { crlf: true, ..cairn::BatchOptions::default() };
    if let Some(d) = form.fields.iter().rev().find(|(n, _)| n == "delimiter").map(|(_, v)| v.as_str()) {
        match form_delimiter(d) {
            Some(b) => options.delimiter = Some(b),
            None if d.trim().is_empty() => {}
            None => return Err(bad(400, "The \"delimiter\" must be one character")),
        }
    }
    match get("encoding").as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("utf-8" | "utf-8-sig" | "utf8") => {}
        Some("latin1" | "latin-1" | "iso-8859-1" | "cp1252" | "windows-1252") => {
            options.encoding = cairn::Encoding::Latin1;
        }
        Some(other) => return Err(bad(400, format!("Unknown encoding {other:?}: use utf-8 or latin1"))),
    }
    let header = match cairn::batch::read_header(data, &options) {
        Ok((header, _)) => header,
        Err(cairn::Error::BadInput { reason, .. }) => return Err(bad(400, reason)),
        Err(e) => return Err(bad(400, e.to_string())),
    };
    let known = |c: &String| {
        if header.contains(c) {
            Ok(())
        } else {
            Err(bad(400, format!("Cannot found column '{c}' in columns {header:?}")))
        }
    };
    let columns = all("columns");
    for c in columns.iter().chain(get("postcode").iter()).chain(get("citycode").iter()) {
        known(c)?;
    }
    options.result_columns = all("result_columns");
    options.columns = columns;
    options.postcode_column = get("postcode");
    options.citycode_column = get("citycode");
    options.kind = get("type");
    if let Some(m) = get("min_score") {
        options.min_score = m.parse().map_err(|_| bad(400, "The \"min_score\" parameter is invalid"))?;
    }
    if reverse {
        let pick = |names: &[&str], given: Option<String>| -> Option<String> {
            given.or_else(|| header.iter().find(|h| names.contains(&h.to_ascii_lowercase().as_str())).cloned())
        };
        let lat = pick(&["latitude", "lat"], get("lat"));
        let lon = pick(&["longitude", "lon", "lng", "long"], get("lon"));
        match (lat, lon) {
            (Some(la), Some(lo)) => {
                known(&la)?;
                known(&lo)?;
                options.reverse = Some((la, lo));
            }
            _ => return Err(bad(400, format!("No latitude/longitude columns in {header:?}"))),
        }
    }
    Ok(options)
}

/// `POST /search/csv` and `/reverse/csv`: geocodes the uploaded file and
/// streams the result as it is produced.
/// The body is compressed as it streams when the client accepts it: its
/// size is not known in advance, and a geocoded file is rarely small.
async fn handle_csv(
    db: Arc<Database>,
    req: Request<Incoming>,
    reverse: bool,
    limits: &Limits,
    enc: Encoding,
) -> Response<Body> {
    let form = match read_form(req, limits.max_upload, limits.body_timeout).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some((name, data)) = form.data.clone() else {
        return bad(400, "Missing file");
    };
    if data.iter().all(u8::is_ascii_whitespace) {
        return bad(400, "Empty file");
    }
    let options = match csv_options(&form, &data, reverse) {
        Ok(o) => o,
        Err(r) => return r,
    };
    if let Err(e) = options.check() {
        let reason = match e {
            cairn::Error::BadInput { reason, .. } => reason,
            other => other.to_string(),
        };
        return bad(400, reason);
    }
    let input_encoding = match options.encoding {
        cairn::Encoding::Latin1 => "windows-1252",
        _ => read_as(&data),
    };
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, BodyError>::new(8);
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let writer = enc.writer(ChannelWriter { tx: &mut tx, handle: &handle, buf: Vec::with_capacity(CHUNK) });
        if let Err(e) = db.batch(&data[..], writer, &options, &mut |_| {}) {
            tracing::warn!(error = %e, "a CSV batch failed after its answer started; its body is cut short");
            tx.abort(Box::new(e));
        }
    });
    let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s).replace(['"', '\\', '\r', '\n'], "_");
    let mut r = Response::new(body.boxed());
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(HeaderName::from_static("x-cairn-input-encoding"), HeaderValue::from_static(input_encoding));
    if let Some(c) = enc.name() {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static(c));
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{stem}.geocoded.csv\"")) {
        h.insert(hyper::header::CONTENT_DISPOSITION, v);
    }
    r
}

/// How the rows of a file are read by an automatic encoding: `utf-8`,
/// `windows-1252` when no row that is not ASCII is valid UTF-8, `mixed`
/// when some are and some are not.
fn read_as(data: &[u8]) -> &'static str {
    if std::str::from_utf8(data).is_ok() {
        return "utf-8";
    }
    let (mut utf8, mut other) = (false, false);
    for line in data.split(|b| *b == b'\n').filter(|l| !l.is_ascii()) {
        match std::str::from_utf8(line) {
            Ok(_) => utf8 = true,
            Err(_) => other = true,
        }
        if utf8 && other {
            return "mixed";
        }
    }
    "windows-1252"
}

const CHUNK: usize = 64 * 1024;

/// Sends what the batch writes to the response body, 64 KiB at a time.
pub(crate) struct ChannelWriter<'a> {
    tx: &'a mut http_body_util::channel::Sender<Bytes, BodyError>,
    handle: &'a tokio::runtime::Handle,
    buf: Vec<u8>,
}

impl<'a> ChannelWriter<'a> {
    pub(crate) fn new(
        tx: &'a mut http_body_util::channel::Sender<Bytes, BodyError>,
        handle: &'a tokio::runtime::Handle,
    ) -> ChannelWriter<'a> {
        ChannelWriter { tx, handle, buf: Vec::with_capacity(CHUNK) }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.handle
            .block_on(self.tx.send_data(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

// A compressing writer finishes its stream when dropped, after the batch's
// last flush: what it writes then must still be sent.
impl Drop for ChannelWriter<'_> {
    fn drop(&mut self) {
        let _ = self.send();
    }
}

impl std::io::Write for ChannelWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Whether a request body says it is gzip (`Content-Encoding: gzip`); a
/// 415 for an encoding it cannot be read in (`deflate`, `br`...), rather
/// than reading compressed bytes as text.
#[allow(clippy::result_large_err)]
pub(crate) fn is_gzip(headers: &hyper::HeaderMap) -> Result<bool, Response<Body>> {
    let Some(v) = headers.get(hyper::header::CONTENT_ENCODING) else { return Ok(false) };
    let v = v.to_str().unwrap_or("").trim();
    if v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip") {
        return Ok(true);
    }
    if v.is_empty() || v.eq_ignore_ascii_case("identity") {
        return Ok(false);
    }
    Err(bad(415, format!("Content-Encoding {v:?} is not supported: send the body plain or as gzip")))
}

/// An uploaded body to read from: gunzipped when it says it is gzip or
/// starts as gzip does (as `cairn import` reads a `.gz` file). A gzip body
/// may inflate to `limit` bytes (`--max-upload`, as a plain one); past that
/// reading fails and the flag is set, so that the answer is a 413 and a
/// small body cannot make the server hold gigabytes.
pub(crate) fn decoded(
    body: Bytes,
    gzip: bool,
    limit: usize,
) -> (std::io::BufReader<Box<dyn std::io::Read + Send>>, Arc<AtomicBool>) {
    let over = Arc::new(AtomicBool::new(false));
    let raw: Box<dyn std::io::Read + Send> = if gzip || body.starts_with(&[0x1f, 0x8b]) {
        let inflated = flate2::read::MultiGzDecoder::new(std::io::Cursor::new(body));
        Box::new(Capped { inner: inflated, left: limit as u64, over: Arc::clone(&over) })
    } else {
        Box::new(std::io::Cursor::new(body))
    };
    (std::io::BufReader::with_capacity(1 << 16, raw), over)
}

/// A reader that fails once more than its limit has been read.
struct Capped<R> {
    inner: R,
    left: u64,
    over: Arc<AtomicBool>,
}

impl<R: std::io::Read> std::io::Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // One byte past the limit tells a body of exactly the limit from a
        // longer one.
        let room = usize::try_from(self.left + 1).unwrap_or(usize::MAX).min(buf.len());
        let n = self.inner.read(&mut buf[..room])?;
        if n as u64 > self.left {
            self.over.store(true, Ordering::Relaxed);
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "the body inflates past --max-upload"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The 413 of a gzip body that inflates past `limit`.
pub(crate) fn inflated_too_large(limit: usize) -> Response<Body> {
    bad(413, format!("Upload too large once decompressed, limit is {limit} bytes (--max-upload)"))
}

/// A path segment (an id in `/get/{id}` and `/documents/{id}`) decoded as
/// a path segment: `%XX` escapes only. Not as form data: `+` is a plus and
/// `&` is part of the id, not the end of it. A `%` without two hex digits
/// after it, or escapes that do not make UTF-8, name no id: refused rather
/// than guessed at, since a guess could name another document.
pub(crate) fn path_segment(raw: &str) -> Result<String, BadRequest> {
    let invalid = |why: String| BadRequest { status: 400, title: "Invalid id".into(), description: Some(why) };
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
        let (Some(hi), Some(lo)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) else {
            let at: String = raw[i..].chars().take(3).collect();
            return Err(invalid(format!("{at:?} is not a percent-escape: a % must be followed by two hex digits")));
        };
        out.push((hi * 16 + lo) as u8);
        i += 3;
    }
    String::from_utf8(out).map_err(|_| invalid(format!("{raw:?} does not decode to UTF-8")))
}

impl App {
    /// Counts what hyper answered by itself on a connection that ended with
    /// `error`. A request head over `max_buf_size` or with more than
    /// `max_headers` headers gets a 431 from hyper, then the connection
    /// ends with this error: the service never saw the request.
    pub fn connection_failed(&self, error: &(dyn std::error::Error + 'static)) {
        let Some(e) = error.downcast_ref::<hyper::Error>() else { return };
        if !e.is_parse_too_large() {
            return;
        }
        // hyper's one test also covers a request target over its own bound
        // of 65,534 bytes (reachable only with --max-header-bytes above
        // it), which it answers 414; only the message tells them apart.
        let status = if e.to_string().contains("URI") { 414 } else { 431 };
        self.metrics.count(Route::Other, status);
    }
}

/// How every connection is served (HTTP/1.1 and HTTP/2 with the head
/// limits); public so that the fuzz target serves its input the same way.
pub fn connection_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // A client that trickles its head holds a connection, not a worker;
        // this bounds how long.
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers);
    builder.http2().max_header_list_size(limits.max_header_bytes.min(u32::MAX as usize) as u32);
    builder
}

/// Serves until SIGINT or SIGTERM, then stops accepting and lets requests
/// in flight finish, for at most `shutdown_timeout`.
pub async fn serve(app: Arc<App>, listener: TcpListener, shutdown_timeout: Duration) -> anyhow::Result<()> {
    let builder = connection_builder(&app.limits);
    let graceful = GracefulShutdown::new();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer): (_, SocketAddr) = match accepted {
                    Ok(a) => a,
                    Err(_) => continue,
                };
                let _ = stream.set_nodelay(true);
                let counts = app.clone();
                let app = app.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(app.call(req, peer.ip()).await) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        counts.connection_failed(&*e);
                    }
                });
            }
            () = &mut stop => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(shutdown_timeout) => {}
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The handlers are registered by this call,
/// not at the first poll of the future: a select loop may not poll it before
/// a client has been served, and a SIGTERM in that window would kill the
/// process instead of stopping it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let handlers = signal(SignalKind::terminate()).and_then(|t| Ok((t, signal(SignalKind::interrupt())?)));
        async move {
            match handlers {
                Ok((mut term, mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(query: &str, enc: Encoding) -> String {
        search_key(&params::search(&Params::parse(Some(query)), params::MAX_LIMIT).unwrap(), enc)
    }

    #[test]
    fn the_cache_key_is_the_parsed_request() {
        let id = Encoding::Identity;
        assert_ne!(key("q=a&q=b", id), key("q=b&q=a", id), "the last value wins");
        assert_ne!(key("q=a&limit=2&limit=3", id), key("q=a&limit=3&limit=2", id));
        assert_ne!(key("q=a", id), key("q=a", Encoding::Gzip));
        // Spellings of one request: one key.
        assert_eq!(key("q=a+b&lat=48.80&lon=2&limit=0", id), key("lng=2.0&q=a%20b&latitude=48.8", id));
        assert_eq!(key("q=a&type=street&type=municipality", id), key("type=municipality+street&q=a", id));
        // Fields do not run into each other.
        assert_ne!(key("q=a&type=ab", id), key("q=a&type=a,b", id));
        assert_ne!(key("q=a&postcode=1", id), key("q=a&citycode=1", id));
        let reverse = |query: &str| {
            reverse_key(&params::reverse(&Params::parse(Some(query)), params::MAX_LIMIT).unwrap(), Encoding::Identity)
        };
        assert_ne!(reverse("lat=1&lon=2&lat=3"), reverse("lat=3&lon=2&lat=1"));
        assert_eq!(reverse("lat=1&lon=2"), reverse("lon=2&lat=1.0&limit=1"));
    }

    #[test]
    fn an_id_in_the_path_is_decoded_as_a_path_segment() {
        assert_eq!(path_segment("a+b&c%20d%2B%26%c3%a9").unwrap(), "a+b&c d+&é");
        assert_eq!(path_segment("").unwrap(), "");
        for bad in ["%", "a%4", "%zz", "%+1", "%ff", "%C3%28", "%C3"] {
            let e = path_segment(bad).unwrap_err();
            assert_eq!((e.status, e.title.as_str()), (400, "Invalid id"), "{bad}");
        }
    }
}
