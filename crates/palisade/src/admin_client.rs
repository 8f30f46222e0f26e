//! The admin API's client: JSON over plain HTTP/1.1 to a running `palisade serve`'s admin
//! listener, one connection per request (`Connection: close`).
//!
//! Deliberately small and blocking: the CLI makes a handful of requests and exits, so a
//! socket with timeouts is all it needs, and the binary gains no second HTTP stack. Plain
//! `http://` only: the admin listener does not speak TLS (reach a remote one through an SSH
//! tunnel, as its default loopback address intends).

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Where the admin listener is unless told otherwise (`palisade serve`'s default).
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:9090";
/// The environment variable `--admin-url` falls back to.
pub const ADMIN_URL_ENV: &str = "PALISADE_ADMIN_URL";
/// The environment variable `--token` falls back to.
pub const TOKEN_ENV: &str = "PALISADE_TOKEN";

/// To open the connection: a listener that is up accepts at once.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// For each read and write: the API answers from memory and one SQLite file, in milliseconds;
/// this only stops a wedged server from hanging a script forever.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read (a week of analytics minutes is a few MiB).
const MAX_ANSWER_BYTES: u64 = 64 << 20;
/// The largest status line plus header block read.
const MAX_HEAD_BYTES: usize = 64 << 10;

/// The admin API's address: `http://HOST[:PORT][/PREFIX]` (a prefix when it sits behind a
/// reverse proxy's path). A bare `HOST:PORT` is taken as `http://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUrl {
    host: String,
    port: u16,
    /// Prepended to every path, without a trailing slash ("" for none).
    prefix: String,
}

impl AdminUrl {
    pub fn parse(text: &str) -> Result<AdminUrl, String> {
        let text = text.trim();
        let rest = if let Some(rest) = text.strip_prefix("http://") {
            rest
        } else if text.starts_with("https://") {
            return Err(format!(
                "{text}: the admin listener speaks plain http; reach a remote one through an SSH \
                 tunnel (ssh -L 9090:127.0.0.1:9090 host) and use http://127.0.0.1:9090"
            ));
        } else if text.contains("://") {
            return Err(format!("{text}: the admin URL must start with http://"));
        } else {
            text
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if prefix.contains(['?', '#']) {
            return Err(format!("{text}: the admin URL takes no query or fragment"));
        }
        if authority.contains('@') {
            return Err(format!(
                "{text}: put the token in --token or {TOKEN_ENV}, not in the URL"
            ));
        }
        let bad_port = |p: &str| format!("{text}: {p:?} is not a port");
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("{text}: unclosed [ in the address"))?;
            let port = match after {
                "" => 80,
                _ => after
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| bad_port(after))?,
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, port.parse().map_err(|_| bad_port(port))?),
                None => (authority, 80),
            }
        };
        if host.is_empty() {
            return Err(format!("{text}: no host in the admin URL"));
        }
        Ok(AdminUrl {
            host: host.to_string(),
            port,
            prefix: prefix.trim_end_matches('/').to_string(),
        })
    }

    /// `host:port` as the `Host` field wants it (an IPv6 address in brackets).
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for AdminUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.prefix)
    }
}

/// A refusal from the API: the status and the server's `{"error": "...", "field": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
    pub field: Option<String>,
}

impl Refusal {
    fn from_answer(status: u16, body: &[u8]) -> Refusal {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let text = |key: &str| {
            json.as_ref()
                .and_then(|j| j.get(key))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let message = text("error").unwrap_or_else(|| {
            let body = String::from_utf8_lossy(body).trim().to_string();
            if body.is_empty() {
                "(no message)".to_string()
            } else {
                crate::cli::clean_line(&body)
            }
        });
        Refusal {
            status,
            message,
            field: text("field"),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the admin API refused ({}): ", self.status)?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&crate::cli::clean_line(&self.message))?;
        match self.status {
            401 => write!(f, " (the token comes from --token or {TOKEN_ENV})"),
            403 => f.write_str(" (use a token with that scope: `palisade token create`)"),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for Refusal {}

/// A client for one admin API, with one token.
#[derive(Debug, Clone)]
pub struct Client {
    url: AdminUrl,
    token: String,
}

impl Client {
    pub fn new(url: AdminUrl, token: &str) -> Result<Client> {
        let token = token.trim();
        // It goes into a header line: anything but visible ASCII could split the request.
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            bail!(
                "the token must be printable ASCII without spaces, as `palisade token create` prints it"
            );
        }
        Ok(Client {
            url,
            token: token.to_string(),
        })
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.call("POST", path, Some(body))
    }

    /// Every site the token reaches, `{"sites": [...]}`: `GET /api/sites` page after page,
    /// following each answer's `next`.
    pub fn all_sites(&self) -> Result<Value> {
        let mut sites = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.get(&format!(
                "/api/sites{}",
                query(&[
                    ("limit", Some(SITES_PER_CALL.to_string())),
                    ("after", after.clone())
                ])
            ))?;
            if let Some(listed) = page["sites"].as_array() {
                sites.extend(listed.iter().cloned());
            }
            match page["next"].as_str() {
                // A server that does not move on would loop forever.
                Some(next) if after.as_deref() != Some(next) => after = Some(next.to_string()),
                _ => break,
            }
        }
        Ok(serde_json::json!({ "sites": sites }))
    }

    pub fn put(&self, path: &str, body: &Value) -> Result<Value> {
        self.call("PUT", path, Some(body))
    }

    pub fn patch(&self, path: &str, body: &Value) -> Result<Value> {
        self.call("PATCH", path, Some(body))
    }

    pub fn delete(&self, path: &str) -> Result<Value> {
        self.call("DELETE", path, None)
    }

    /// One request; the answer's JSON on a 2xx, else a [`Refusal`].
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let body = body.map(Value::to_string);
        let answer = self
            .exchange(method, path, body.as_deref())
            .with_context(|| format!("{method} {}{path}", self.url))?;
        if !(200..300).contains(&answer.status) {
            return Err(Refusal::from_answer(answer.status, &answer.body).into());
        }
        serde_json::from_slice(&answer.body).map_err(|e| {
            anyhow!(
                "{method} {}{path}: the answer ({}) is not JSON: {e}",
                self.url,
                answer.status
            )
        })
    }

    fn connect(&self) -> Result<TcpStream> {
        let addrs = (self.url.host.as_str(), self.url.port)
            .to_socket_addrs()
            .context("cannot resolve the admin API's host")?;
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some(e),
            }
        }
        let error = last.map_or_else(|| "no address".to_string(), |e| e.to_string());
        Err(anyhow!(
            "cannot reach the admin API: {error} (is `palisade serve` running? the address \
             comes from --admin-url or {ADMIN_URL_ENV})"
        ))
    }

    fn exchange(&self, method: &str, path: &str, body: Option<&str>) -> Result<Answer> {
        let mut stream = self.connect()?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut request = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: palisade-cli/{}\r\n\
             Accept: application/json\r\nAuthorization: Bearer {}\r\nConnection: close\r\n",
            self.url.prefix,
            self.url.authority(),
            env!("CARGO_PKG_VERSION"),
            self.token,
        );
        match body {
            Some(body) => {
                request.push_str("Content-Type: application/json\r\n");
                request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
                request.push_str(body);
            }
            None if method != "GET" => request.push_str("Content-Length: 0\r\n\r\n"),
            None => request.push_str("\r\n"),
        }
        stream
            .write_all(request.as_bytes())
            .context("sending the request")?;
        read_answer(BufReader::new(stream.take(MAX_ANSWER_BYTES)))
    }
}

/// An HTTP answer: status and body (the CLI needs no header but the framing ones).
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Reads one HTTP/1.1 answer: skips interim (1xx) answers, then reads the body as its
/// framing says: chunked, `Content-Length`, or up to the end of the connection.
pub fn read_answer(mut reader: impl BufRead) -> Result<Answer> {
    let mut head_budget = MAX_HEAD_BYTES;
    loop {
        let status_line = read_line(&mut reader, &mut head_budget)?;
        let status = parse_status(&status_line)?;
        let mut length = None;
        let mut chunked = false;
        loop {
            let line = read_line(&mut reader, &mut head_budget)?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                bail!("the answer's header is broken: {line:?}");
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .parse::<u64>()
                        .with_context(|| format!("bad Content-Length {value:?}"))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            }
        }
        if (100..200).contains(&status) {
            continue;
        }
        let body = if status == 204 || status == 304 {
            Vec::new()
        } else if chunked {
            read_chunked(&mut reader, &mut head_budget)?
        } else if let Some(length) = length {
            let mut body = Vec::new();
            reader
                .by_ref()
                .take(length)
                .read_to_end(&mut body)
                .context("reading the answer")?;
            if (body.len() as u64) < length {
                bail!(
                    "the answer was cut short ({} of {length} bytes)",
                    body.len()
                );
            }
            body
        } else {
            let mut body = Vec::new();
            reader
                .read_to_end(&mut body)
                .context("reading the answer")?;
            body
        };
        return Ok(Answer { status, body });
    }
}

fn parse_status(line: &str) -> Result<u16> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let status = parts.next().and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(status) if version.starts_with("HTTP/1.") && (100..600).contains(&status) => {
            Ok(status)
        }
        _ => bail!(
            "the answer is not HTTP/1.1 (is --admin-url the admin listener?): {:?}",
            crate::cli::truncate(line, 80)
        ),
    }
}

/// One line without its CRLF, counted against `budget`.
fn read_line(reader: &mut impl BufRead, budget: &mut usize) -> Result<String> {
    let mut line = Vec::new();
    let read = reader
        .by_ref()
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut line)
        .context("reading the answer")?;
    if read == 0 {
        bail!("the connection closed before the answer was complete");
    }
    if read > *budget {
        bail!("the answer's header is over {MAX_HEAD_BYTES} bytes");
    }
    *budget -= read;
    if line.last() != Some(&b'\n') {
        bail!("the connection closed before the answer was complete");
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    String::from_utf8(line).context("the answer's header is not text")
}

fn read_chunked(reader: &mut impl BufRead, budget: &mut usize) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader, budget)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size, 16)
            .with_context(|| format!("bad chunk size {size:?} in the answer"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(reader, budget)?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        reader
            .by_ref()
            .take(size)
            .read_to_end(&mut body)
            .context("reading the answer")?;
        if ((body.len() - start) as u64) < size {
            bail!("the answer was cut short inside a chunk");
        }
        if !read_line(reader, budget)?.is_empty() {
            bail!("a chunk of the answer is longer than its size says");
        }
    }
}

/// Sites asked for per call by [`Client::all_sites`]: the server's largest page.
const SITES_PER_CALL: usize = 10_000;

/// `text` as one path segment: everything but RFC 3986's unreserved characters
/// percent-encoded, so a name can never add a segment or a query.
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A query string (`?a=1&b=2`, or "" when every value is absent), values encoded.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let present: Vec<String> = pairs
        .iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name}={}", segment(v))))
        .collect();
    if present.is_empty() {
        String::new()
    } else {
        format!("?{}", present.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(raw: &str) -> Answer {
        read_answer(raw.as_bytes()).unwrap()
    }

    #[test]
    fn admin_urls_parse_with_defaults_and_refuse_what_the_listener_cannot_speak() {
        let url = AdminUrl::parse("http://127.0.0.1:9090").unwrap();
        assert_eq!(url.to_string(), "http://127.0.0.1:9090");
        let bare = AdminUrl::parse("localhost:9000").unwrap();
        assert_eq!((bare.host.as_str(), bare.port), ("localhost", 9000));
        let v6 = AdminUrl::parse("http://[::1]:9090/").unwrap();
        assert_eq!(v6.to_string(), "http://[::1]:9090");
        let prefixed = AdminUrl::parse("http://edge.internal/palisade/").unwrap();
        assert_eq!((prefixed.port, prefixed.prefix.as_str()), (80, "/palisade"));
        for bad in [
            "https://127.0.0.1:9090",
            "ftp://x",
            "http://:9090",
            "http://h:port",
            "http://tok@h:1",
            "http://h:1/?a",
        ] {
            assert!(AdminUrl::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn answers_are_read_by_their_framing() {
        let sized = answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}trailing");
        assert_eq!(
            sized,
            Answer {
                status: 200,
                body: b"{}".to_vec()
            }
        );
        let chunked = answer(
            "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\n{\"a\r\n5\r\n\":1}\n\r\n0\r\nX-T: 1\r\n\r\n",
        );
        assert_eq!(chunked.status, 201);
        assert_eq!(chunked.body, b"{\"a\":1}\n");
        let to_close = answer("HTTP/1.1 404 Not Found\r\n\r\n{\"error\":\"no\"}");
        assert_eq!(to_close.body, b"{\"error\":\"no\"}");
        let interim = answer("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(
            interim,
            Answer {
                status: 204,
                body: vec![]
            }
        );
    }

    #[test]
    fn broken_answers_are_errors_not_hangs_or_panics() {
        for raw in [
            "",
            "SSH-2.0-OpenSSH\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        ] {
            assert!(read_answer(raw.as_bytes()).is_err(), "{raw:?} accepted");
        }
    }

    #[test]
    fn refusals_show_the_servers_error_and_field() {
        let refusal =
            Refusal::from_answer(422, br#"{"error":"not a duration","field":"cache.ttl"}"#);
        assert_eq!(
            refusal.to_string(),
            "the admin API refused (422): cache.ttl: not a duration"
        );
        let unauthorized =
            Refusal::from_answer(401, br#"{"error":"this token is unknown or revoked"}"#);
        assert!(unauthorized.to_string().contains(TOKEN_ENV));
        let plain = Refusal::from_answer(502, b"bad gateway\x1b[31m");
        assert_eq!(plain.message, "bad gateway?[31m");
    }

    #[test]
    fn names_and_queries_are_encoded() {
        assert_eq!(segment("tok_a-b.c~"), "tok_a-b.c~");
        assert_eq!(segment("a/b?c d"), "a%2Fb%3Fc%20d");
        assert_eq!(
            query(&[
                ("status", Some("new".into())),
                ("site", None),
                ("target", Some("site:blog".into()))
            ]),
            "?status=new&target=site%3Ablog"
        );
        assert_eq!(query(&[("site", None)]), "");
    }

    #[test]
    fn tokens_that_could_split_the_request_are_refused() {
        let url = AdminUrl::parse(DEFAULT_ADMIN_URL).unwrap();
        assert!(Client::new(url.clone(), "pal_abc").is_ok());
        assert!(Client::new(url.clone(), "pal_abc\r\nX: y").is_err());
        assert!(Client::new(url, "").is_err());
    }
}
