//! The HTTP front end: Addok's routes over hyper 1.x, HTTP/1.1 and HTTP/2.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn::{Database, ResponseCache};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::geojson::{self, Echo};
use crate::params::{self, BadRequest, Params};

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Largest upload accepted by the CSV endpoints.
pub const DEFAULT_MAX_UPLOAD: usize = 64 * 1024 * 1024;

fn respond(status: StatusCode, body: &Value) -> Response<Body> {
    respond_bytes(status, Bytes::from(body.to_string()))
}

fn respond_bytes(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body).boxed());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

fn error(e: BadRequest) -> Response<Body> {
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

/// Routes one request. Pure function of the request and the database, so
/// tests and the server share it.
pub fn handle(
    db: &Database,
    cache: Option<&ResponseCache>,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Response<Body> {
    let route = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    if matches!(route, "/search/csv" | "/reverse/csv") {
        return method_not_allowed("POST");
    }
    let known = matches!(route, "/search" | "/reverse" | "/health") || route.starts_with("/get/");
    if !known {
        return respond(StatusCode::NOT_FOUND, &json!({"title": "404 Not Found"}));
    }
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed("GET");
    }
    let p = Params::parse(query);
    // Valid requests only reach the cache; the key is the route and the
    // query's pairs in sorted order, on the generation that answers.
    let cached = |compute: &dyn Fn() -> Result<(Value, bool), cairn::Error>| -> Response<Body> {
        let generation = db.generation();
        let key = cache.map(|_| {
            let mut pairs: Vec<&str> = query.unwrap_or("").split('&').filter(|s| !s.is_empty()).collect();
            pairs.sort_unstable();
            format!("{route}?{}", pairs.join("&"))
        });
        if let (Some(c), Some(k)) = (cache, &key) {
            if let Some(body) = c.get(generation, k) {
                return respond_bytes(StatusCode::OK, Bytes::from_owner(body));
            }
        }
        match compute() {
            Ok((v, found)) => {
                let body: Arc<[u8]> = Arc::from(v.to_string().into_bytes());
                if let (Some(c), Some(k)) = (cache, &key) {
                    c.insert(generation, k, body.clone(), found);
                }
                respond_bytes(StatusCode::OK, Bytes::from_owner(body))
            }
            Err(e) => internal(e),
        }
    };
    match route {
        "/search" => match params::search(&p) {
            Err(e) => error(e),
            Ok(q) => cached(&|| {
                let features = db.search(&q)?;
                let echo = Echo { query: Some(&q.q), filters: &q.filters, center: q.near, limit: q.limit };
                Ok((geojson::collection(&features, &echo), !features.is_empty()))
            }),
        },
        "/reverse" => match params::reverse(&p) {
            Err(e) => error(e),
            Ok(q) => cached(&|| {
                let features = db.reverse(&q)?;
                let echo = Echo { query: None, filters: &q.filters, center: None, limit: q.limit };
                Ok((geojson::collection(&features, &echo), !features.is_empty()))
            }),
        },
        "/health" => {
            let c = cache.map(|c| c.stats()).unwrap_or_default();
            let cache = json!({"hits": c.hits, "misses": c.misses, "evictions": c.evictions, "entries": c.entries, "bytes": c.bytes});
            respond(
                StatusCode::OK,
                &json!({"status": "HEALTHY", "generation": db.generation(), "documents": db.len(), "cache": cache}),
            )
        }
        _ => {
            let raw = &route["/get/".len()..];
            let id = percent_decode(raw);
            match db.get(&id) {
                Some(f) => respond(StatusCode::OK, &geojson::feature(&f)),
                None => respond(
                    StatusCode::NOT_FOUND,
                    &json!({"title": "404 Not Found", "description": format!("no document with id {id:?}")}),
                ),
            }
        }
    }
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = respond(StatusCode::METHOD_NOT_ALLOWED, &json!({"title": "405 Method Not Allowed"}));
    r.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    r
}

fn bad(status: u16, title: impl Into<String>) -> Response<Body> {
    error(BadRequest { status, title: title.into(), description: None })
}

/// The form of a CSV request: multipart fields, then query-string ones.
struct CsvForm {
    data: Option<(String, Bytes)>,
    fields: Vec<(String, String)>,
}

#[allow(clippy::result_large_err)]
async fn read_form(req: Request<Incoming>, max_upload: usize) -> Result<CsvForm, Response<Body>> {
    let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let mut fields: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
    let boundary = multer::parse_boundary(&content_type)
        .map_err(|_| bad(400, "Expected a multipart/form-data body with the file in \"data\""))?;
    let body = Limited::new(req.into_body(), max_upload).collect().await.map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            bad(413, format!("Upload too large, limit is {max_upload} bytes"))
        } else {
            bad(400, format!("Could not read the request body: {e}"))
        }
    })?;
    let bytes = body.to_bytes();
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

/// Builds batch options from the form, as addok-csv reads them.
#[allow(clippy::result_large_err)] // the error is the response itself, built once
fn csv_options(form: &CsvForm, header: &[String], reverse: bool) -> Result<cairn::BatchOptions, Response<Body>> {
    let get = |k: &str| {
        form.fields.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.trim().to_owned()).filter(|v| !v.is_empty())
    };
    // Repeatable fields: every non-empty value, in order.
    let all = |k: &str| -> Vec<String> {
        form.fields.iter().filter(|(n, _)| n == k).map(|(_, v)| v.trim().to_owned()).filter(|v| !v.is_empty()).collect()
    };
    let columns = all("columns");
    for c in columns.iter().chain(get("postcode").iter()).chain(get("citycode").iter()) {
        if !header.contains(c) {
            return Err(bad(400, format!("Cannot found column '{c}' in columns {header:?}")));
        }
    }
    let mut options = cairn::BatchOptions {
        result_columns: all("result_columns"),
        columns,
        postcode_column: get("postcode"),
        citycode_column: get("citycode"),
        kind: get("type"),
        ..Default::default()
    };
    if let Some(d) = form.fields.iter().rev().find(|(n, _)| n == "delimiter").map(|(_, v)| v.as_str()) {
        match form_delimiter(d) {
            Some(b) => options.delimiter = Some(b),
            None if d.trim().is_empty() => {}
            None => return Err(bad(400, "The \"delimiter\" must be one character")),
        }
    }
    match get("encoding").as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("utf-8") | Some("utf-8-sig") | Some("utf8") => {}
        Some("latin1" | "latin-1" | "iso-8859-1" | "cp1252" | "windows-1252") => {
            options.encoding = cairn::Encoding::Latin1
        }
        Some(other) => return Err(bad(400, format!("Unknown encoding {other:?}: use utf-8 or latin1"))),
    }
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
            (Some(la), Some(lo)) => options.reverse = Some((la, lo)),
            _ => return Err(bad(400, format!("No latitude/longitude columns in {header:?}"))),
        }
    }
    Ok(options)
}

/// `POST /search/csv` and `/reverse/csv`: geocodes the uploaded file and
/// streams the result as it is produced.
pub async fn handle_csv(db: Arc<Database>, req: Request<Incoming>, reverse: bool, max_upload: usize) -> Response<Body> {
    let form = match read_form(req, max_upload).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some((name, data)) = form.data.clone() else {
        return bad(400, "Missing file");
    };
    if data.iter().all(|b| b.is_ascii_whitespace()) {
        return bad(400, "Empty file");
    }
    let first_line = String::from_utf8_lossy(data.split(|b| *b == b'\n').next().unwrap_or_default())
        .trim_start_matches('\u{feff}')
        .to_owned();
    let delimiter = form.fields.iter().rev().find(|(n, _)| n == "delimiter").and_then(|(_, v)| form_delimiter(v));
    let header: Vec<String> = {
        let d = delimiter.unwrap_or_else(|| cairn::batch::detect_delimiter(&first_line));
        csv::ReaderBuilder::new()
            .delimiter(d)
            .has_headers(false)
            .from_reader(first_line.as_bytes())
            .records()
            .next()
            .and_then(|r| r.ok())
            .map(|r| r.iter().map(|c| c.trim().to_owned()).collect())
            .unwrap_or_default()
    };
    let options = match csv_options(&form, &header, reverse) {
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
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(8);
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let writer = ChannelWriter { tx: &mut tx, handle: &handle, buf: Vec::with_capacity(CHUNK) };
        // Errors after the head is sent can only cut the body short; the
        // status line is already out.
        let _ = db.batch(&data[..], writer, &options, &mut |_| {});
    });
    let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s).replace(['"', '\\', '\r', '\n'], "_");
    let mut r = Response::new(body.boxed());
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{stem}.geocoded.csv\"")) {
        h.insert(hyper::header::CONTENT_DISPOSITION, v);
    }
    r
}

const CHUNK: usize = 64 * 1024;

/// Sends what the batch writes to the response body, 64 KiB at a time.
struct ChannelWriter<'a> {
    tx: &'a mut http_body_util::channel::Sender<Bytes, Infallible>,
    handle: &'a tokio::runtime::Handle,
    buf: Vec<u8>,
}

impl ChannelWriter<'_> {
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

fn percent_decode(s: &str) -> String {
    // form_urlencoded decodes %XX (and '+', which ids do not contain).
    form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

/// Serves until SIGINT or SIGTERM, then lets requests in flight finish.
pub async fn serve(
    db: Arc<Database>,
    cache: Option<Arc<ResponseCache>>,
    listener: TcpListener,
    shutdown_grace: Duration,
    max_upload: usize,
) -> anyhow::Result<()> {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer): (_, SocketAddr) = match accepted {
                    Ok(a) => a,
                    Err(_) => continue,
                };
                let _ = stream.set_nodelay(true);
                let db = db.clone();
                let cache = cache.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let db = db.clone();
                    let cache = cache.clone();
                    async move {
                        let route = req.uri().path().trim_end_matches('/');
                        let csv = matches!(route, "/search/csv" | "/reverse/csv");
                        let resp = if csv && req.method() == Method::POST {
                            let reverse = route == "/reverse/csv";
                            handle_csv(db, req, reverse, max_upload).await
                        } else {
                            handle(&db, cache.as_deref(), req.method(), req.uri().path(), req.uri().query())
                        };
                        Ok::<_, Infallible>(resp)
                    }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = &mut stop => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(shutdown_grace) => {}
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
