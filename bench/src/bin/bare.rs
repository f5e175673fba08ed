//! A bare hyper 1.x server: the HTTP ceiling of this machine for `bench/load.sh`.
//!
//!     bare [--body-bytes N] [--threads N] [--listen ADDR]
//!
//! Answers every request (any method, any path) with 200 and the same fixed
//! JSON body of exactly N bytes (default 300), with the headers cairn sends on
//! a search answer. Runtime and connection setup are those of `cairn serve`
//! (tokio multi-thread runtime, hyper-util auto builder: HTTP/1.1 keep-alive
//! and h2c, `TCP_NODELAY`, mimalloc), minus the application. Prints
//! `bare listening on http://ADDR (N-byte body)` on stdout once it listens,
//! and exits on SIGINT/SIGTERM.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{header, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    body_bytes: usize,
    threads: Option<usize>,
    listen: SocketAddr,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { body_bytes: 300, threads: None, listen: "127.0.0.1:0".parse().unwrap() };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--body-bytes" => args.body_bytes = value()?.parse().map_err(|e| format!("--body-bytes: {e}"))?,
            "--threads" => args.threads = Some(value()?.parse().map_err(|e| format!("--threads: {e}"))?),
            "--listen" => args.listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?,
            "-h" | "--help" => {
                println!("bare [--body-bytes N] [--threads N] [--listen ADDR]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

/// A JSON object of exactly `n` bytes (at least the 16 bytes of its frame).
fn body_of(n: usize) -> Bytes {
    let head = r#"{"features":[""#;
    let tail = r#""]}"#;
    let pad = n.saturating_sub(head.len() + tail.len());
    let mut s = String::with_capacity(n);
    s.push_str(head);
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str(tail);
    Bytes::from(s)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.enable_all().build().expect("tokio runtime");
    let body = body_of(args.body_bytes);
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: binding {}: {e}", args.listen);
                std::process::exit(1);
            }
        };
        let addr = listener.local_addr().expect("local address");
        println!("bare listening on http://{addr} ({}-byte body)", body.len());
        let _ = std::io::stdout().flush();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new());
        let stop = shutdown_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let body = body.clone();
                    let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
                        let body = body.clone();
                        async move {
                            let mut resp = Response::new(Full::new(body));
                            let h = resp.headers_mut();
                            h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json; charset=utf-8"));
                            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, header::HeaderValue::from_static("*"));
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
                () = &mut stop => break,
            }
        }
    });
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
}

async fn shutdown_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
