//! The HTTP front end: Addok's routes over hyper 1.x, HTTP/1.1 and HTTP/2.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn::Database;
use http_body_util::Full;
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

type Body = Full<Bytes>;

fn respond(status: StatusCode, body: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
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
pub fn handle(db: &Database, method: &Method, path: &str, query: Option<&str>) -> Response<Body> {
    let route = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    let known = matches!(route, "/search" | "/reverse" | "/health") || route.starts_with("/get/");
    if !known {
        return respond(StatusCode::NOT_FOUND, &json!({"title": "404 Not Found"}));
    }
    if method != Method::GET && method != Method::HEAD {
        let mut r = respond(StatusCode::METHOD_NOT_ALLOWED, &json!({"title": "405 Method Not Allowed"}));
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET"));
        return r;
    }
    let p = Params::parse(query);
    match route {
        "/search" => match params::search(&p) {
            Err(e) => error(e),
            Ok(q) => match db.search(&q) {
                Ok(features) => {
                    let echo = Echo { query: Some(&q.q), filters: &q.filters, center: q.near, limit: q.limit };
                    respond(StatusCode::OK, &geojson::collection(&features, &echo))
                }
                Err(e) => internal(e),
            },
        },
        "/reverse" => match params::reverse(&p) {
            Err(e) => error(e),
            Ok(q) => match db.reverse(&q) {
                Ok(features) => {
                    let echo = Echo { query: None, filters: &q.filters, center: None, limit: q.limit };
                    respond(StatusCode::OK, &geojson::collection(&features, &echo))
                }
                Err(e) => internal(e),
            },
        },
        "/health" => respond(
            StatusCode::OK,
            &json!({"status": "HEALTHY", "generation": db.generation(), "documents": db.len()}),
        ),
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

fn percent_decode(s: &str) -> String {
    // form_urlencoded decodes %XX (and '+', which ids do not contain).
    form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

/// Serves until SIGINT or SIGTERM, then lets requests in flight finish.
pub async fn serve(db: Arc<Database>, listener: TcpListener, shutdown_grace: Duration) -> anyhow::Result<()> {
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
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let db = db.clone();
                    async move {
                        let resp = handle(&db, req.method(), req.uri().path(), req.uri().query());
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
