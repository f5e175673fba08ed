//! Shared test helpers: run the real `cairn` binary, start a real server on
//! 127.0.0.1 with a free port, talk HTTP/1.1 to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cairn")
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

pub fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

pub fn cairn(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run cairn")
}

/// Imports files into `dir`, panicking with cairn's stderr on failure.
pub fn import(dir: &Path, files: &[&Path]) {
    let mut args = vec!["import".to_owned(), "--data".into(), dir.display().to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let out = Command::new(bin()).args(&args).output().expect("run cairn import");
    assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A `cairn serve` child process, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Imports the fixtures into a fresh directory and serves it.
    pub fn start(files: &[&Path]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        import(dir.path(), files);
        Server::serve(dir)
    }

    pub fn serve(dir: tempfile::TempDir) -> Server {
        Server::serve_with(dir, &[])
    }

    pub fn serve_with(dir: tempfile::TempDir, extra: &[&str]) -> Server {
        Server::serve_logged(dir, extra, Stdio::inherit())
    }

    /// Serves with the server's stderr sent where `stderr` says.
    pub fn serve_logged(dir: tempfile::TempDir, extra: &[&str], stderr: Stdio) -> Server {
        let mut child = Command::new(bin())
            .args(["serve", "--data", &dir.path().display().to_string(), "--listen", "127.0.0.1:0", "--threads", "2"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn cairn serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read banner");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in banner {line:?}"))
            .to_owned();
        Server { child, addr, dir }
    }

    /// Sends one request and returns (status, body).
    pub fn request(&self, method: &str, target: &str) -> (u16, String) {
        http(&self.addr, method, target)
    }

    pub fn get_json(&self, target: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.request("GET", target);
        let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{target}: body is not JSON ({e}): {body}"));
        (status, v)
    }

    /// Stops the server (SIGTERM) and hands back its directory, to serve
    /// again or to change while no server holds it.
    pub fn stop_keeping_dir(mut self) -> tempfile::TempDir {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        let status = self.terminate();
        assert!(status.success(), "the server stopped with {status}");
        dir
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(self) -> std::process::ExitStatus {
        self.send_term();
        self.wait()
    }

    pub fn send_term(&self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
    }

    /// Waits (at most 5 s) for the server to exit.
    pub fn wait(mut self) -> std::process::ExitStatus {
        for _ in 0..100 {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not stop within 5 s");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 client: one request per connection.
pub fn http(addr: &str, method: &str, target: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(s, "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, body.to_owned())
}

/// POSTs a multipart form; each part is (name, file name, content).
/// Returns (status, headers, body) with a chunked body decoded.
pub fn post_multipart(addr: &str, target: &str, parts: &[(&str, Option<&str>, &[u8])]) -> (u16, String, Vec<u8>) {
    let boundary = "cairn-test-boundary-7d2f";
    let mut body = Vec::new();
    for (name, file, content) in parts {
        write!(body, "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"").unwrap();
        if let Some(f) = file {
            write!(body, "; filename=\"{f}\"\r\nContent-Type: text/csv").unwrap();
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    write!(body, "--{boundary}--\r\n").unwrap();
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(&body);
    exchange(addr, &request)
}

/// Sends raw request bytes on a new connection and reads until the server
/// closes it: (status, head, body), a chunked body decoded.
pub fn exchange(addr: &str, request: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    // The server may answer (413) before reading everything: ignore write errors.
    let _ = s.write_all(request);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

/// One request with a bearer token and a body; the status and the body.
pub fn send_authorized(
    addr: &str,
    token: &str,
    method: &str,
    target: &str,
    headers: &str,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let (status, _, body) = exchange(addr, &req);
    (status, body)
}

pub fn parse_response(raw: &[u8]) -> (u16, String, Vec<u8>) {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").map_or(raw.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut body = raw[split..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&raw[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[eol + 2 + size + 2..];
    }
    out
}

/// Percent-encodes a query-string value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub fn ids(v: &serde_json::Value) -> Vec<String> {
    v["features"]
        .as_array()
        .map(|f| f.iter().map(|f| f["properties"]["id"].as_str().unwrap_or("").to_owned()).collect())
        .unwrap_or_default()
}

pub fn first(v: &serde_json::Value) -> &serde_json::Value {
    &v["features"][0]["properties"]
}
