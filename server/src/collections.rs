//! The collection routes: schemas, documents and queries over HTTP.
//!
//! - `GET /collections`: every collection with its schema and size.
//! - `PUT|GET|DELETE /collections/{c}`: the schema (JSON or TOML body).
//! - `POST /collections/{c}/documents`: NDJSON, a JSON array or CSV, plain
//!   or gzip, in one commit; `?on_error=skip` commits the valid records and
//!   reports the others.
//! - `GET|DELETE /collections/{c}/documents/{id}`.
//! - `POST /collections/{c}/delete`: `{"filter": ...}`, every match removed.
//! - `POST /collections/{c}/query`: a JSON query; with `Accept:
//!   application/x-ndjson`, every hit (past `limit`) streamed one per line.
//!
//! Writes need the write token; errors are JSON bodies with a `title`, a
//! `description` and, where a field is to blame, `field` and `at`.

// Handlers return the error answer itself, as in http.rs.
#![allow(clippy::result_large_err)]

use std::io::{BufRead, Write};
use std::sync::Arc;

use bytes::Bytes;
use cairn::collection::{CollectionError, Filter, ImportFormat, ImportReport, Query, Schema, MAX_LIMIT};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, ACCESS_CONTROL_ALLOW_ORIGIN, CONTENT_ENCODING, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::compress::Encoding;
use crate::http::{
    authorize, bad, method_not_allowed, path_segment, read_body, respond, App, Body, BodyError, ChannelWriter,
};

/// The status and JSON body of a collection error.
pub fn error_response(e: &CollectionError) -> Response<Body> {
    let (status, title) = match e {
        CollectionError::NotFound(_) => (StatusCode::NOT_FOUND, "404 Not Found"),
        CollectionError::SchemaChange(_) | CollectionError::CursorExpired => (StatusCode::CONFLICT, "Conflict"),
        CollectionError::BadRecord { .. } => (StatusCode::BAD_REQUEST, "Invalid document"),
        CollectionError::BadQuery { .. } => (StatusCode::BAD_REQUEST, "Invalid query"),
        CollectionError::Engine(cairn::Error::ReadOnly) => (StatusCode::FORBIDDEN, "Read-only"),
        e if e.is_user_error() => (StatusCode::BAD_REQUEST, "Bad request"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "Internal error"),
    };
    let mut body = json!({"title": title, "description": e.to_string()});
    match e {
        CollectionError::BadRecord { at, path, .. } => {
            body["at"] = json!(at);
            body["field"] = json!(path);
        }
        CollectionError::BadInput { at, .. } => body["at"] = json!(at),
        CollectionError::BadQuery { path, .. } => body["field"] = json!(path),
        _ => {}
    }
    respond(status, &body)
}

fn schema_json(c: &cairn::collection::Collection) -> Value {
    json!({
        "name": c.name(),
        "documents": c.len(),
        "version": c.version(),
        "schema": serde_json::to_value(c.schema()).unwrap_or(Value::Null),
    })
}

fn report_json(report: &ImportReport, commit: &cairn::collection::CollectionCommit) -> Value {
    let problems: Vec<Value> =
        report.problems.iter().map(|p| json!({"at": p.at, "field": p.path, "reason": p.reason})).collect();
    json!({
        "generation": commit.generation,
        "read": report.read,
        "written": commit.written,
        "skipped": report.skipped,
        "deleted": commit.deleted,
        "total": commit.total,
        "problems": problems,
    })
}

/// Runs blocking engine work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CollectionError> + Send + 'static,
) -> Result<T, Response<Body>> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error_response(&e)),
        Err(e) => Err(bad(500, format!("The request did not finish: {e}"))),
    }
}

fn parse_json(body: &[u8]) -> Result<Value, Response<Body>> {
    serde_json::from_slice(body).map_err(|e| {
        respond(
            StatusCode::BAD_REQUEST,
            &json!({"title": "Invalid JSON", "description": format!("the body is not JSON: {e}"), "at": format!("line {} column {}", e.line(), e.column())}),
        )
    })
}

impl App {
    /// Every `/collections` route.
    pub async fn collections(self: &Arc<Self>, req: Request<Incoming>, enc: Encoding) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let rest = path.trim_end_matches('/').strip_prefix("/collections").unwrap_or("");
        let parts: Vec<&str> = rest.split('/').skip(1).collect();
        let decoded: Result<Vec<String>, _> = parts.iter().map(|p| path_segment(p)).collect();
        let parts = match decoded {
            Ok(p) => p,
            Err(e) => return crate::http::error(e),
        };
        let method = req.method().clone();
        let writes = matches!(method, Method::PUT | Method::DELETE)
            || (method == Method::POST && matches!(parts.get(1).map(String::as_str), Some("documents" | "delete")));
        if writes {
            if let Err(r) = authorize(self.write_token.as_deref(), &req, "writes") {
                return r;
            }
        }
        match (parts.as_slice(), &method) {
            ([], &Method::GET) => {
                let all: Vec<Value> = self.db.collections().iter().map(schema_json).collect();
                respond(StatusCode::OK, &json!({"collections": all}))
            }
            ([], _) => method_not_allowed("GET"),
            ([name], &Method::GET) => match self.db.collection(name) {
                Ok(c) => respond(StatusCode::OK, &schema_json(&c)),
                Err(e) => error_response(&e),
            },
            ([name], &Method::PUT) => self.put_schema(name.clone(), req).await,
            ([name], &Method::DELETE) => {
                let (db, name) = (self.db.clone(), name.clone());
                match blocking(move || db.drop_collection(&name)).await {
                    Ok(true) => respond(StatusCode::OK, &json!({"deleted": true, "generation": self.db.generation()})),
                    Ok(false) => error_response(&CollectionError::NotFound(parts[0].clone())),
                    Err(r) => r,
                }
            }
            ([_], _) => method_not_allowed("GET, PUT, DELETE"),
            ([name, d], &Method::POST) if d == "documents" => self.post_documents(name.clone(), req).await,
            ([_, d], _) if d == "documents" => method_not_allowed("POST"),
            ([name, d, id], &Method::GET) if d == "documents" => match self.db.collection(name).and_then(|c| c.get(id))
            {
                Ok(Some(doc)) => self.json_ok(&doc, enc),
                Ok(None) => respond(
                    StatusCode::NOT_FOUND,
                    &json!({"title": "404 Not Found", "description": format!("no document with id {id:?} in {name:?}")}),
                ),
                Err(e) => error_response(&e),
            },
            ([name, d, id], &Method::DELETE) if d == "documents" => {
                let (db, name, id) = (self.db.clone(), name.clone(), id.clone());
                let shown = id.clone();
                match blocking(move || db.write_collection(&name, |w| w.delete(&id))).await {
                    Ok((true, c)) => {
                        respond(StatusCode::OK, &json!({"deleted": 1, "generation": c.generation, "total": c.total}))
                    }
                    Ok((false, _)) => respond(
                        StatusCode::NOT_FOUND,
                        &json!({"title": "404 Not Found", "description": format!("no document with id {shown:?}")}),
                    ),
                    Err(r) => r,
                }
            }
            ([_, d, _], _) if d == "documents" => method_not_allowed("GET, DELETE"),
            ([name, q], &Method::POST) if q == "query" => self.query(name.clone(), req, enc).await,
            ([name, q], &Method::POST) if q == "delete" => self.delete_where(name.clone(), req).await,
            ([_, q], _) if q == "query" || q == "delete" => method_not_allowed("POST"),
            _ => respond(StatusCode::NOT_FOUND, &json!({"title": "404 Not Found"})),
        }
    }

    fn json_ok(&self, v: &Value, enc: Encoding) -> Response<Body> {
        self.json_bytes(Bytes::from(v.to_string()), enc)
    }

    async fn body(&self, req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
        read_body(req.into_body(), self.limits.max_upload, self.limits.body_timeout).await
    }

    async fn put_schema(&self, name: String, req: Request<Incoming>) -> Response<Body> {
        let body = match self.body(req).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let Ok(text) = std::str::from_utf8(&body) else { return bad(400, "The schema is not UTF-8") };
        let schema = match Schema::parse(text) {
            Ok(s) => s,
            Err(e) => return error_response(&e),
        };
        let db = self.db.clone();
        let n = name.clone();
        match blocking(move || db.put_collection(&n, &schema)).await {
            Ok(created) => {
                let c = self.db.collection(&name).map_or(Value::Null, |c| schema_json(&c));
                respond(if created { StatusCode::CREATED } else { StatusCode::OK }, &c)
            }
            Err(r) => r,
        }
    }

    async fn post_documents(&self, name: String, req: Request<Incoming>) -> Response<Body> {
        let query = req.uri().query().unwrap_or("").to_owned();
        let on_error = match form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "on_error") {
            None => cairn::OnError::Fail,
            Some((_, v)) if v == "fail" => cairn::OnError::Fail,
            Some((_, v)) if v == "skip" => cairn::OnError::Skip,
            Some((_, v)) => return bad(400, format!("on_error={v:?}: use fail (the default) or skip")),
        };
        let headers = req.headers().clone();
        let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let gzip = match crate::http::is_gzip(&headers) {
            Ok(g) => g,
            Err(r) => return r,
        };
        let body = match self.body(req).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let db = self.db.clone();
        let limit = self.limits.max_upload;
        let (mut input, over) = crate::http::decoded(body, gzip, limit);
        let done = blocking(move || {
            let format = if content_type.starts_with("text/csv") {
                ImportFormat::Csv
            } else if content_type.starts_with("application/x-ndjson") {
                ImportFormat::Ndjson
            } else if content_type.starts_with("application/json") {
                ImportFormat::Json
            } else {
                let head = input
                    .fill_buf()
                    .map_err(|e| CollectionError::BadInput { at: "byte 0".into(), reason: e.to_string() })?;
                ImportFormat::detect(head)
            };
            let mut report = ImportReport::default();
            let ((), commit) = db.write_collection(&name, |w| w.import(&mut input, format, on_error, &mut report))?;
            Ok(report_json(&report, &commit))
        })
        .await;
        if over.load(std::sync::atomic::Ordering::Relaxed) {
            return crate::http::inflated_too_large(limit);
        }
        match done {
            Ok(v) => respond(StatusCode::OK, &v),
            Err(r) => r,
        }
    }

    async fn delete_where(&self, name: String, req: Request<Incoming>) -> Response<Body> {
        let body = match self.body(req).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let v = match parse_json(&body) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let schema = match self.db.collection(&name) {
            Ok(c) => c.schema().clone(),
            Err(e) => return error_response(&e),
        };
        let Some(f) = v.get("filter") else {
            return error_response(&CollectionError::BadQuery {
                path: "filter".into(),
                reason: "missing: say which records to delete ({\"filter\": {...}})".into(),
            });
        };
        let filter = match Filter::parse(f, &schema, "filter") {
            Ok(f) => f,
            Err(e) => return error_response(&e),
        };
        let db = self.db.clone();
        match blocking(move || db.write_collection(&name, |w| w.delete_where(&filter))).await {
            Ok((n, c)) => respond(StatusCode::OK, &json!({"deleted": n, "generation": c.generation, "total": c.total})),
            Err(r) => r,
        }
    }

    async fn query(&self, name: String, req: Request<Incoming>, enc: Encoding) -> Response<Body> {
        let ndjson =
            req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("application/x-ndjson"));
        let body = match self.body(req).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let v = match parse_json(&body) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let cursor = v.get("cursor").and_then(Value::as_str).map(str::to_owned);
        let collection = match self.db.collection_for(&name, cursor.as_deref()) {
            Ok(c) => c,
            Err(e) => return error_response(&e),
        };
        let query = match Query::parse(&v, collection.schema()) {
            Ok(q) => q,
            Err(e) => return error_response(&e),
        };
        if ndjson {
            return stream(collection, query, enc).await;
        }
        // Cached under the version's epoch and the parsed query: the answer
        // depends on nothing else.
        // Stored uncompressed (each answer is compressed as asked), so the
        // coding is not part of the key.
        let key = self.cache.as_ref().map(|_| format!("C{}\u{0}{name}\u{0}{query:?}", name.len()));
        if let (Some(cache), Some(key)) = (&self.cache, &key) {
            if let Some(body) = cache.peek(collection.epoch(), key) {
                return self.json_bytes(Bytes::from(body), enc);
            }
            cache.missed();
        }
        let epoch = collection.epoch();
        // A page read off an index in order costs microseconds: less than
        // the hand-off to the blocking pool.
        let done = if collection.is_quick(&query) {
            answer(&collection, &query).map_err(|e| error_response(&e))
        } else {
            blocking(move || answer(&collection, &query)).await
        };
        let (out, found) = match done {
            Ok(r) => r,
            Err(r) => return r,
        };
        if let (Some(cache), Some(key)) = (&self.cache, &key) {
            cache.insert(epoch, key, &out, found);
        }
        self.json_bytes(Bytes::from(out), enc)
    }

    fn json_bytes(&self, body: Bytes, enc: Encoding) -> Response<Body> {
        let mut r = self.json(StatusCode::OK, body, enc);
        r.headers_mut().insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        r
    }
}

/// The JSON body of a query's answer, and whether it found anything. The
/// stored records go into it as they are, unparsed.
fn answer(collection: &cairn::collection::Collection, query: &Query) -> Result<(Vec<u8>, bool), CollectionError> {
    let (result, raw) = collection.query_raw(query)?;
    let mut out = Vec::with_capacity(64 + raw.iter().map(|h| h.json.len() + h.id.len() + 40).sum::<usize>());
    out.extend_from_slice(format!("{{\"version\":{},\"hits\":[", result.version).as_bytes());
    for (i, h) in raw.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":");
        // Writing JSON to a Vec fails only on a serialisation error, which
        // a string cannot have.
        let _ = serde_json::to_writer(&mut out, h.id);
        out.extend_from_slice(b",\"doc\":");
        out.extend_from_slice(&h.json);
        if let Some(s) = h.score {
            out.extend_from_slice(b",\"score\":");
            let _ = serde_json::to_writer(&mut out, &s);
        }
        out.push(b'}');
    }
    out.extend_from_slice(format!("],\"next_cursor\":{}", json!(result.next_cursor)).as_bytes());
    if let Some(t) = result.total {
        out.extend_from_slice(format!(",\"total\":{t}").as_bytes());
    }
    if !result.facets.is_empty() {
        let mut facets = Map::new();
        for (field, counts) in &result.facets {
            let list: Vec<Value> = counts.iter().map(|(v, n)| json!({"value": v, "count": n})).collect();
            facets.insert(field.clone(), Value::Array(list));
        }
        out.extend_from_slice(format!(",\"facets\":{}", Value::Object(facets)).as_bytes());
    }
    out.push(b'}');
    Ok((out, !raw.is_empty()))
}

/// Every hit as NDJSON (the records, or the fields asked for), paged
/// internally with the cursor so that memory stays one page. The status is
/// sent once the first page is found: a query refused there (a bad or
/// expired cursor) gets its error answer, not an empty 200.
async fn stream(collection: cairn::collection::Collection, mut query: Query, enc: Encoding) -> Response<Body> {
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, BodyError>::new(8);
    let (started_tx, started) = tokio::sync::oneshot::channel::<Result<(), CollectionError>>();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut started_tx = Some(started_tx);
        let mut out = enc.writer(ChannelWriter::new(&mut tx, &handle));
        query.limit = MAX_LIMIT;
        loop {
            let page = match collection.query_raw(&query) {
                Ok(p) => p,
                Err(e) => {
                    if let Some(s) = started_tx.take() {
                        let _ = s.send(Err(e));
                        return;
                    }
                    tracing::warn!(error = %e, "a streamed query failed after its answer started; its body is cut short");
                    drop(out);
                    tx.abort(Box::new(e));
                    return;
                }
            };
            if let Some(s) = started_tx.take() {
                let _ = s.send(Ok(()));
            }
            let (page, hits) = page;
            for h in &hits {
                if out.write_all(&h.json).is_err() || out.write_all(b"\n").is_err() {
                    return;
                }
            }
            match page.next_cursor {
                Some(c) => query.cursor = Some(c),
                None => break,
            }
        }
        let _ = out.flush();
    });
    match started.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return error_response(&e),
        Err(_) => return bad(500, "The streamed query stopped before its first page"),
    }
    let mut r = Response::new(body.boxed());
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    if let Some(c) = enc.name() {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static(c));
    }
    r
}
