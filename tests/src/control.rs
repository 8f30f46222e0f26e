//! The admin API as the control-plane tests drive it: JSON in and out, tokens made for one
//! test, and abuse reports filed through the edge's intake the way a visitor files them.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::client::{self, Reply};
use crate::palisade::Palisade;
use crate::raw::RawConn;

/// Where the edge takes abuse reports on every site's hosts.
pub const ABUSE_PATH: &str = "/.well-known/palisade/abuse";

/// `method path` on the admin API with the suite's admin token; `body` is sent as JSON.
/// Answers the status and the body as JSON (`Null` when empty).
pub async fn api(proxy: &Palisade, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let text = body.map(|b| b.to_string());
    let reply = client::admin_send(proxy.admin_addr(), method, path, text.as_deref()).await;
    (reply.status.as_u16(), json_of(&reply))
}

/// [`api`] with another token, or none, answering the whole reply.
pub async fn api_as(
    proxy: &Palisade,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Reply {
    let text = body.map(|b| b.to_string());
    client::admin_send_as(proxy.admin_addr(), token, method, path, text.as_deref()).await
}

/// The security events `GET /api/events{query}` answers, newest first, read with the suite's
/// admin token; panics, showing the body, unless it answers 200 with JSON.
///
/// `query` is empty or the query string as the API takes it, `?` included: `"?site=blog"`,
/// `"?site=shop&after=41&limit=10000"` (the API answers 100 events unless `limit` says more).
pub async fn events(proxy: &Palisade, query: &str) -> Vec<Value> {
    let (status, body) = api(proxy, "GET", &format!("/api/events{query}"), None).await;
    assert_eq!(status, 200, "/api/events{query}: {body}");
    body["events"].as_array().cloned().unwrap_or_default()
}

/// A reply's body as JSON (`Null` when empty); panics, showing the body, when it is not JSON.
pub fn json_of(reply: &Reply) -> Value {
    if reply.body.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", reply.text()))
}

/// A token made for a test: its id (as the audit log names it) and its secret.
#[derive(Debug, Clone)]
pub struct Token {
    pub id: String,
    pub secret: String,
}

/// Makes a token with `scopes`, limited to `sites` when given, with the suite's admin token.
pub async fn make_token(proxy: &Palisade, scopes: &[&str], sites: Option<&[&str]>) -> Token {
    let mut body = json!({"name": "test", "scopes": scopes});
    if let Some(sites) = sites {
        body["sites"] = json!(sites);
    }
    let (status, token) = api(proxy, "POST", "/api/tokens", Some(body)).await;
    assert_eq!(status, 201, "token for {scopes:?} on {sites:?}: {token}");
    Token {
        id: token["id"].as_str().expect("token id").to_string(),
        secret: token["secret"].as_str().expect("token secret").to_string(),
    }
}

/// Files a well-formed abuse report about `host` through the edge's intake, from address
/// `from` (the intake takes five reports per address in ten minutes: give each its own
/// loopback address, 127.x.y.z), and answers its id.
pub async fn file_report(proxy: &Palisade, from: IpAddr, host: &str) -> i64 {
    let (status, answer) = try_file_report(proxy, from, host).await;
    assert_eq!(status, 201, "report on {host}: {answer}");
    answer["id"].as_i64().expect("a report id")
}

/// [`file_report`], answering the intake's status and JSON whatever they are (a cluster's edge
/// that cannot reach its control node answers 202, queued).
pub async fn try_file_report(proxy: &Palisade, from: IpAddr, host: &str) -> (u16, Value) {
    let body = json!({
        "category": "phishing",
        "urls": [format!("https://{host}/login")],
        "description": "A copy of a bank's login page.",
    })
    .to_string();
    let mut conn = RawConn::connect_from(from, proxy.http_addr())
        .await
        .unwrap_or_else(|e| panic!("connect from {from}: {e}"));
    let request = format!(
        "POST {ABUSE_PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.send(request.as_bytes()).await.expect("send a report");
    let response = conn.read_response(Duration::from_secs(10)).await;
    let answer: Value = serde_json::from_slice(&response.body)
        .unwrap_or_else(|_| panic!("the intake answers JSON: {}", response.body_text()));
    (response.status().unwrap_or(0), answer)
}
