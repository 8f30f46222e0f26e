//! The abuse-report intake: `/.well-known/palisade/abuse` on every site's hosts and on the
//! operator's hostname (`[server] operator_host`). See `docs/abuse.md`.
//!
//! `GET` serves a small form; `POST` takes a report as JSON (`application/json`) or as the
//! form posts it (`application/x-www-form-urlencoded`, the URLs one per line). The edge checks
//! the report (`model::NewReport::from_submission`) and hands it to the [`ReportSink`] the
//! control plane installed; it stores nothing itself. Requests here never reach an origin,
//! never meet a challenge, and are answered whatever the site's state (a suspended site's
//! visitors must still be able to report it), while the deny lists hold as everywhere.
//!
//! What a reporter can cost the edge is bounded: a body of at most [`MAX_REPORT_BYTES`] read
//! within `request_body_timeout`, and [`REPORTS_PER_ADDRESS`] reports per
//! [`REPORTS_PERIOD`] from one address (an IPv6 /64), counted in a fixed 128 KiB.

use crate::body::EdgeBody;
use crate::metrics::{Metrics, ReportOutcome};
use crate::phases::challenge::prefers_json;
use crate::phases::respond;
use crate::snapshot::Snapshot;
use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use model::{NewReport, ReportCategory, ReportError, ReportSubmission};
use shield::challenge::page::push_html_text;
use shield::guard::Listed;
use shield::ratelimit::{WindowCounter, client_prefix, random_seed};
use std::fmt::Write as _;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where reports are taken, under the reserved prefix every site shares.
pub const ABUSE_PATH: &str = "/.well-known/palisade/abuse";

/// Largest report body: twenty long URLs and a 10,000-character description fit with room.
pub const MAX_REPORT_BYTES: usize = 64 * 1024;

/// Reports one address may send per [`REPORTS_PERIOD`]: more than anyone reporting in good
/// faith needs, few enough that a script cannot bury the operator's queue.
pub const REPORTS_PER_ADDRESS: u32 = 5;

/// The sliding window [`REPORTS_PER_ADDRESS`] is counted over.
pub const REPORTS_PERIOD: Duration = Duration::from_secs(600);

/// Counters per row of the per-address sketch: 2 × 4 rows × 4096 × 4 bytes = 128 KiB.
const COUNTER_WIDTH: usize = 4096;

/// How long the sink may take to store a report before the reporter is told to try later.
const SINK_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest User-Agent kept with a report, in characters.
const MAX_USER_AGENT_CHARS: usize = 512;

/// The pages' policy: no script at all, their own inline style, forms posted here only.
const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// What [`ReportSink::submit`] returns: the stored report's id, or why it was not stored (for
/// the log; the reporter is only told to try later).
pub type SubmitFuture = Pin<Box<dyn Future<Output = Result<u64, String>> + Send>>;

/// Where checked reports go: the control plane's store. The edge calls it once per report
/// that passed every check, and answers the reporter with the id it returns.
///
/// ```
/// use edge::{ReportSink, SubmitFuture};
///
/// struct Discard;
/// impl ReportSink for Discard {
///     fn submit(&self, _report: model::NewReport) -> SubmitFuture {
///         Box::pin(async { Ok(1) })
///     }
/// }
/// ```
pub trait ReportSink: Send + Sync {
    fn submit(&self, report: NewReport) -> SubmitFuture;
}

/// The intake's state, kept by the edge across snapshots.
pub struct AbuseIntake {
    /// None until the control plane installs one: reports are then refused with 503.
    sink: ArcSwapOption<Arc<dyn ReportSink>>,
    /// Reports per client address over [`REPORTS_PERIOD`].
    counter: WindowCounter,
    seed: u64,
}

impl std::fmt::Debug for AbuseIntake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbuseIntake")
            .field("sink", &self.sink.load().is_some())
            .field("counter", &self.counter)
            .finish()
    }
}

impl Default for AbuseIntake {
    fn default() -> Self {
        AbuseIntake::new()
    }
}

impl AbuseIntake {
    pub fn new() -> AbuseIntake {
        AbuseIntake {
            sink: ArcSwapOption::empty(),
            counter: WindowCounter::new(REPORTS_PERIOD, COUNTER_WIDTH),
            seed: random_seed(),
        }
    }

    /// Installs (or replaces) where reports go.
    pub fn set_sink(&self, sink: Arc<dyn ReportSink>) {
        self.sink.store(Some(Arc::new(sink)));
    }

    fn sink(&self) -> Option<Arc<dyn ReportSink>> {
        self.sink.load().as_deref().cloned()
    }

    /// Counts one report from `ip`; true when it is over the limit.
    fn over_limit(&self, ip: IpAddr, now: Instant) -> bool {
        let key = xxhash_rust::xxh3::xxh3_64_with_seed(&client_prefix(ip), self.seed);
        self.counter.hit(key, now) > f64::from(REPORTS_PER_ADDRESS)
    }
}

/// Where a report came in: the site whose host it was sent to (None on the operator's
/// hostname) and that host.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub site: Option<&'a str>,
    pub host: &'a str,
}

/// A request to the operator's hostname (no site claims it): the intake, or 404. The
/// `[shield]` deny list holds here as on every site.
pub async fn operator_host<B>(
    intake: &AbuseIntake,
    metrics: &Metrics,
    snapshot: &Snapshot,
    client_ip: IpAddr,
    request: Request<B>,
) -> (Response<EdgeBody>, u64)
where
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if snapshot.global_lists.lookup(client_ip) == Some(Listed::Deny) {
        return (respond::edge_page(StatusCode::FORBIDDEN, false), 0);
    }
    if request.uri().path() != ABUSE_PATH {
        return (respond::edge_page(StatusCode::NOT_FOUND, false), 0);
    }
    let place = Place {
        site: None,
        host: snapshot.operator_host.as_deref().unwrap_or(""),
    };
    let timeout = snapshot.limits.request_body_timeout;
    serve(intake, metrics, place, client_ip, timeout, request).await
}

/// Serves `ABUSE_PATH`: the form, or a report. Also says how many body bytes it read (for
/// the access log).
pub async fn serve<B>(
    intake: &AbuseIntake,
    metrics: &Metrics,
    place: Place<'_>,
    client_ip: IpAddr,
    body_timeout: Duration,
    request: Request<B>,
) -> (Response<EdgeBody>, u64)
where
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match *request.method() {
        Method::GET | Method::HEAD => (
            page(
                StatusCode::OK,
                form_page(place.host, &ReportSubmission::default(), None),
            ),
            0,
        ),
        Method::POST => take(intake, metrics, place, client_ip, body_timeout, request).await,
        _ => {
            let mut response = respond::edge_page(StatusCode::METHOD_NOT_ALLOWED, false);
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
            (response, 0)
        }
    }
}

/// How the client posted, which is also how it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Posted {
    /// `application/json`: answered in JSON.
    Json,
    /// `application/x-www-form-urlencoded`: a browser's form, answered with a page.
    Form,
    /// Anything else (415), answered as the client's Accept prefers.
    Other { json: bool },
}

impl Posted {
    fn of(headers: &HeaderMap) -> Posted {
        let media = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        match media.as_deref() {
            Some("application/json") => Posted::Json,
            Some("application/x-www-form-urlencoded") => Posted::Form,
            _ => Posted::Other {
                json: prefers_json(headers),
            },
        }
    }

    fn json(self) -> bool {
        matches!(self, Posted::Json | Posted::Other { json: true })
    }
}

/// A `POST`: count it, read it, check it, hand it to the sink.
async fn take<B>(
    intake: &AbuseIntake,
    metrics: &Metrics,
    place: Place<'_>,
    client_ip: IpAddr,
    body_timeout: Duration,
    request: Request<B>,
) -> (Response<EdgeBody>, u64)
where
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = request.into_parts();
    let posted = Posted::of(&parts.headers);
    // Answers that leave the body unread: the connection cannot carry another request.
    let unread = |outcome, status, message: &str| {
        metrics.abuse_report(outcome);
        let mut response = refusal(posted, status, message);
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        (response, 0)
    };
    // Counted before anything is read: a flood of reports costs the edge one counter each.
    if intake.over_limit(client_ip, Instant::now()) {
        let (mut response, read) = unread(
            ReportOutcome::RateLimited,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many reports from this address. Please try again later.",
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(REPORTS_PERIOD.as_secs()),
        );
        return (response, read);
    }
    if let Posted::Other { .. } = posted {
        return unread(
            ReportOutcome::Invalid,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Send the report as application/json or application/x-www-form-urlencoded.",
        );
    }
    let too_large = "The report is larger than 64 KiB.";
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REPORT_BYTES as u64) {
        return unread(
            ReportOutcome::TooLarge,
            StatusCode::PAYLOAD_TOO_LARGE,
            too_large,
        );
    }
    let limited = http_body_util::Limited::new(body, MAX_REPORT_BYTES);
    let bytes = match tokio::time::timeout(body_timeout, limited.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return unread(
                ReportOutcome::TooLarge,
                StatusCode::PAYLOAD_TOO_LARGE,
                too_large,
            );
        }
        Ok(Err(_)) => {
            return unread(
                ReportOutcome::Invalid,
                StatusCode::BAD_REQUEST,
                "The report's body could not be read.",
            );
        }
        Err(_) => {
            return unread(
                ReportOutcome::TimedOut,
                StatusCode::REQUEST_TIMEOUT,
                "The report took too long to arrive.",
            );
        }
    };
    let read = bytes.len() as u64;
    let response =
        check_and_submit(intake, metrics, place, client_ip, posted, &parts, &bytes).await;
    (response, read)
}

/// Everything after the body is read: parse, check, store.
async fn check_and_submit(
    intake: &AbuseIntake,
    metrics: &Metrics,
    place: Place<'_>,
    client_ip: IpAddr,
    posted: Posted,
    parts: &http::request::Parts,
    bytes: &[u8],
) -> Response<EdgeBody> {
    let parsed = if posted == Posted::Form {
        parse_form(bytes)
    } else {
        parse_json(bytes)
    };
    let submission = match parsed {
        Ok(submission) => submission,
        Err(invalid) => {
            metrics.abuse_report(ReportOutcome::Invalid);
            return bad_request(posted, place, &invalid, &ReportSubmission::default());
        }
    };
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
        .map(|v| v.chars().take(MAX_USER_AGENT_CHARS).collect());
    let report = match NewReport::from_submission(
        submission.clone(),
        place.site.map(str::to_string),
        place.host.to_string(),
        client_ip.to_string(),
        user_agent,
    ) {
        Ok(report) => report,
        Err(e) => {
            metrics.abuse_report(ReportOutcome::Invalid);
            let invalid = Invalid {
                field: Some(e.field),
                message: e.message,
            };
            return bad_request(posted, place, &invalid, &submission);
        }
    };
    let Some(sink) = intake.sink() else {
        metrics.abuse_report(ReportOutcome::Unavailable);
        return refusal(
            posted,
            StatusCode::SERVICE_UNAVAILABLE,
            "Reports are not being taken here.",
        );
    };
    let urgent = report.urgent();
    let category = report.category;
    let stored = tokio::time::timeout(SINK_TIMEOUT, sink.submit(report))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {SINK_TIMEOUT:?}")));
    let site = place.site.unwrap_or("");
    let id = match stored {
        Ok(id) => id,
        Err(error) => {
            tracing::warn!(%error, site, host = place.host, "abuse report not stored");
            metrics.abuse_report(ReportOutcome::Failed);
            return refusal(
                posted,
                StatusCode::SERVICE_UNAVAILABLE,
                "The report could not be stored. Please try again later.",
            );
        }
    };
    metrics.abuse_report(ReportOutcome::Taken);
    tracing::info!(
        id,
        category = category.as_str(),
        urgent,
        site,
        host = place.host,
        "abuse report taken"
    );
    if posted.json() {
        let status = model::ReportStatus::New.as_str();
        let body = serde_json::json!({ "id": id, "status": status, "urgent": urgent });
        json(StatusCode::CREATED, &body)
    } else {
        page(StatusCode::CREATED, thanks_page(place.host, id, urgent))
    }
}

/// Why a submission was refused before it became a report: the field at fault, when there is
/// one (a body that is not JSON at all has none).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Invalid {
    field: Option<&'static str>,
    message: String,
}

impl Invalid {
    fn body(message: impl Into<String>) -> Invalid {
        Invalid {
            field: None,
            message: message.into(),
        }
    }

    fn field(field: &'static str, message: impl Into<String>) -> Invalid {
        Invalid {
            field: Some(field),
            message: message.into(),
        }
    }
}

/// A JSON report: `{"category": "...", "urls": ["..."], "description": "...", "contact": "..."}`
/// (`contact` optional; other members ignored).
fn parse_json(bytes: &[u8]) -> Result<ReportSubmission, Invalid> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Invalid::body(format!("the body is not valid JSON: {e}")))?;
    let serde_json::Value::Object(object) = value else {
        return Err(Invalid::body("the body must be a JSON object"));
    };
    let text = |field: &'static str| -> Result<Option<String>, Invalid> {
        match object.get(field) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Invalid::field(field, "must be a string")),
        }
    };
    let urls = match object.get("urls") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_string))
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| Invalid::field("urls", "must be a list of strings"))?,
        Some(_) => return Err(Invalid::field("urls", "must be a list of strings")),
    };
    Ok(ReportSubmission {
        category: text("category")?,
        urls,
        description: text("description")?.unwrap_or_default(),
        contact: text("contact")?,
    })
}

/// The form as a browser posts it (`application/x-www-form-urlencoded`, UTF-8): `urls` one per
/// line, and possibly repeated; every other field at most once. Unknown fields are ignored.
fn parse_form(bytes: &[u8]) -> Result<ReportSubmission, Invalid> {
    let mut submission = ReportSubmission::default();
    let (mut category, mut description, mut contact) = (None, None, None);
    for pair in bytes.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &b""[..]),
        };
        let name = form_decode(name);
        let field = match name.as_slice() {
            b"category" => "category",
            b"urls" => "urls",
            b"description" => "description",
            b"contact" => "contact",
            _ => continue,
        };
        let value = String::from_utf8(form_decode(value))
            .map_err(|_| Invalid::field(field, "is not UTF-8 text"))?;
        let once = |slot: &mut Option<String>, value: String| {
            if slot.replace(value).is_some() {
                return Err(Invalid::field(field, "given more than once"));
            }
            Ok(())
        };
        match field {
            "category" => once(&mut category, value)?,
            "description" => once(&mut description, value)?,
            "contact" => once(&mut contact, value)?,
            _ => submission
                .urls
                .extend(value.split('\n').map(|line| line.trim().to_string())),
        }
    }
    submission.category = category;
    submission.description = description.unwrap_or_default();
    submission.contact = contact;
    Ok(submission)
}

/// URL-encoded form decoding (WHATWG URL §5.1): `+` is a space, `%XX` a byte, and a `%`
/// not followed by two hex digits stays as it is.
fn form_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'+' {
            out.push(b' ');
        } else if b == b'%'
            && let Some(&[hi, lo]) = input.get(i + 1..i + 3)
            && let (Some(hi), Some(lo)) = (hex(hi), hex(lo))
        {
            out.push(hi << 4 | lo);
            i += 2;
        } else {
            out.push(b);
        }
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// 400: JSON `{"error": ..., "field": ...}`, or the form again with the reporter's values and
/// the error above it.
fn bad_request(
    posted: Posted,
    place: Place<'_>,
    invalid: &Invalid,
    submission: &ReportSubmission,
) -> Response<EdgeBody> {
    if posted.json() {
        let body = serde_json::json!({ "error": invalid.message, "field": invalid.field });
        return json(StatusCode::BAD_REQUEST, &body);
    }
    let error = ReportError::new(invalid.field.unwrap_or("report"), invalid.message.clone());
    page(
        StatusCode::BAD_REQUEST,
        form_page(place.host, submission, Some(&error)),
    )
}

/// A refusal that is not about a field (413, 415, 429, 503...): `{"error": ...}` or a page.
fn refusal(posted: Posted, status: StatusCode, message: &str) -> Response<EdgeBody> {
    if posted.json() {
        json(status, &serde_json::json!({ "error": message }))
    } else {
        page(status, message_page(status, message))
    }
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<EdgeBody> {
    let mut response = respond::not_stored(status, "application/json", format!("{body}\n"));
    // A refusal may quote what the reporter sent: never let a browser read it as a page.
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// One of the intake's HTML pages, with the headers every one of them carries.
fn page(status: StatusCode, html: String) -> Response<EdgeBody> {
    // What a reporter wrote must not stay in a shared cache or a browser's: not stored.
    let mut response = respond::not_stored(status, "text/html; charset=utf-8", html);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2129}\
main{max-width:40rem;margin:2rem auto;padding:1.5rem 2rem;background:#fff;border-radius:8px;\
box-shadow:0 1px 3px rgba(0,0,0,.12)}h1{font-size:1.4rem;margin-top:0}\
label{display:block;font-weight:600;margin:1rem 0 .3rem}\
select,textarea,input{width:100%;box-sizing:border-box;font:inherit;padding:.4rem}\
button{margin-top:1.2rem;font:inherit;padding:.5rem 1.2rem}\
.error{background:#fdecea;border-left:4px solid #c62828;padding:.6rem .8rem}\
.note{color:#555;font-size:.9rem}";

/// The start of every page, down to `<main>`.
fn head(out: &mut String, title: &str) {
    out.push_str(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>",
    );
    push_html_text(out, title);
    let _ = write!(out, "</title><style>{STYLE}</style></head><body><main>");
}

const FOOT: &str = "</main></body></html>\n";

/// The form, filled with `values` (after a refusal) and headed by `error`, if any.
fn form_page(host: &str, values: &ReportSubmission, error: Option<&ReportError>) -> String {
    let mut out = String::with_capacity(4096 + values.description.len());
    head(&mut out, "Report abuse");
    out.push_str("<h1>Report abuse on ");
    push_html_text(&mut out, host);
    out.push_str(
        "</h1><p>Tell the operator of this network about content on a site it protects. \
         Reports of violent threats, personal information (doxxing) and child sexual abuse \
         material are reviewed first.</p>",
    );
    if let Some(error) = error {
        out.push_str("<p class=\"error\" role=\"alert\"><strong>");
        push_html_text(&mut out, error.field);
        out.push_str(":</strong> ");
        push_html_text(&mut out, &error.message);
        out.push_str("</p>");
    }
    let _ = write!(
        out,
        "<form method=\"post\" action=\"{ABUSE_PATH}\" accept-charset=\"utf-8\">\
         <label for=\"category\">What are you reporting?</label>\
         <select id=\"category\" name=\"category\" required><option value=\"\">Choose one</option>"
    );
    for category in ReportCategory::ALL {
        let selected = values.category.as_deref() == Some(category.as_str());
        let _ = write!(
            out,
            "<option value=\"{}\"{}>{}</option>",
            category.as_str(),
            if selected { " selected" } else { "" },
            category.label()
        );
    }
    out.push_str(
        "</select><label for=\"urls\">Where is it? The full URLs, one per line (at most 20)\
         </label><textarea id=\"urls\" name=\"urls\" rows=\"4\" required>\n",
    );
    // The newline after the start tag is the one an HTML parser drops, so a value's own
    // leading newline survives.
    push_html_text(&mut out, &values.urls.join("\n"));
    let _ = writeln!(
        out,
        "</textarea><label for=\"description\">What is wrong with it?</label>\
         <textarea id=\"description\" name=\"description\" rows=\"8\" maxlength=\"{}\" required>",
        model::MAX_DESCRIPTION_CHARS
    );
    push_html_text(&mut out, &values.description);
    let _ = write!(
        out,
        "</textarea><label for=\"contact\">How can we reach you? (optional)</label>\
         <input id=\"contact\" name=\"contact\" type=\"text\" maxlength=\"{}\" \
         autocomplete=\"email\" value=\"",
        model::MAX_CONTACT_CHARS
    );
    push_html_text(&mut out, values.contact.as_deref().unwrap_or(""));
    out.push_str(
        "\"><p class=\"note\">Never paste or attach child sexual abuse material itself: give \
         its URL. Your address and browser are kept with the report.</p>\
         <button type=\"submit\">Send report</button></form>",
    );
    out.push_str(FOOT);
    out
}

/// After a report is taken: its number, and whether it goes to the front of the queue.
fn thanks_page(host: &str, id: u64, urgent: bool) -> String {
    let mut out = String::with_capacity(1024);
    head(&mut out, "Report received");
    let _ = write!(out, "<h1>Report {id} received</h1><p>Thank you. ");
    out.push_str(if urgent {
        "It is marked urgent and will be reviewed first."
    } else {
        "The operator of this network will review it."
    });
    out.push_str(" Please give its number if you write about it again.</p><p>");
    let _ = write!(out, "<a href=\"{ABUSE_PATH}\">Send another report about ");
    push_html_text(&mut out, host);
    out.push_str("</a></p>");
    out.push_str(FOOT);
    out
}

/// A refusal without a form: what happened and what to do.
fn message_page(status: StatusCode, message: &str) -> String {
    let mut out = String::with_capacity(1024);
    let title = status.canonical_reason().unwrap_or("Error");
    head(&mut out, title);
    let _ = write!(out, "<h1>{} ", status.as_u16());
    push_html_text(&mut out, title);
    out.push_str("</h1><p>");
    push_html_text(&mut out, message);
    out.push_str("</p>");
    out.push_str(FOOT);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use std::sync::Mutex;

    /// Remembers what it is handed; answers with ids from 1, or an error.
    #[derive(Default)]
    struct Recorder {
        reports: Mutex<Vec<NewReport>>,
        fail: bool,
    }

    impl ReportSink for Arc<Recorder> {
        fn submit(&self, report: NewReport) -> SubmitFuture {
            let this = Arc::clone(self);
            Box::pin(async move {
                if this.fail {
                    return Err("the store is read-only".into());
                }
                let mut reports = this.reports.lock().unwrap();
                reports.push(report);
                Ok(reports.len() as u64)
            })
        }
    }

    const PLACE: Place<'static> = Place {
        site: Some("blog"),
        host: "blog.example",
    };
    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    fn post(content_type: &str, body: &str) -> Request<Full<Bytes>> {
        Request::post(ABUSE_PATH)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::USER_AGENT, "test/1")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    }

    async fn run(
        intake: &AbuseIntake,
        request: Request<Full<Bytes>>,
    ) -> (StatusCode, HeaderMap, String) {
        let metrics = Metrics::new();
        let (response, _) =
            serve(intake, &metrics, PLACE, IP, Duration::from_secs(5), request).await;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    fn with_recorder(fail: bool) -> (AbuseIntake, Arc<Recorder>) {
        let intake = AbuseIntake::new();
        let recorder = Arc::new(Recorder {
            fail,
            ..Recorder::default()
        });
        intake.set_sink(Arc::new(Arc::clone(&recorder)));
        (intake, recorder)
    }

    const GOOD_JSON: &str = r#"{"category":"violent_threat","urls":["https://blog.example/p/1"],"description":"A threat.","contact":"me@mail.example","extra":1}"#;

    #[test]
    fn form_decoding_handles_plus_escapes_and_stray_percents() {
        assert_eq!(form_decode(b"a+b%20c"), b"a b c");
        assert_eq!(form_decode(b"%e2%9C%93"), "✓".as_bytes());
        assert_eq!(form_decode(b"100%"), b"100%");
        assert_eq!(form_decode(b"%zz%4"), b"%zz%4");
        assert_eq!(form_decode(b"%2B+"), b"+ ");
        assert_eq!(form_decode(b""), b"");
    }

    #[test]
    fn a_posted_form_becomes_a_submission_with_one_url_per_line() {
        let submission = parse_form(
            b"category=phishing&urls=https%3A%2F%2Fa.example%2Fx%0D%0Ahttps%3A%2F%2Fb.example%2F%0D%0A\
              &urls=http://c.example/?q=1%26r%3D2&description=Fake+login+page%0D%0Asecond+line\
              &contact=me%40mail.example&submit=Send&&",
        )
        .unwrap();
        assert_eq!(submission.category.as_deref(), Some("phishing"));
        let report =
            NewReport::from_submission(submission, None, "h".into(), "192.0.2.1".into(), None)
                .unwrap();
        assert_eq!(
            report.urls,
            [
                "https://a.example/x",
                "https://b.example/",
                "http://c.example/?q=1&r=2"
            ]
        );
        assert_eq!(report.description, "Fake login page\nsecond line");
        assert_eq!(report.contact.as_deref(), Some("me@mail.example"));
    }

    #[test]
    fn a_form_field_given_twice_or_not_utf8_is_named() {
        let err = parse_form(b"category=a&category=b").unwrap_err();
        assert_eq!(err.field, Some("category"));
        let err = parse_form(b"description=%FF%FE").unwrap_err();
        assert_eq!(err.field, Some("description"));
        // Unknown fields are not looked at.
        assert!(parse_form(b"x=%FF&y&=").is_ok());
    }

    #[test]
    fn json_fields_of_the_wrong_type_are_named() {
        let ok = parse_json(GOOD_JSON.as_bytes()).unwrap();
        assert_eq!(ok.category.as_deref(), Some("violent_threat"));
        assert_eq!(ok.urls, ["https://blog.example/p/1"]);
        assert_eq!(ok.contact.as_deref(), Some("me@mail.example"));
        for (body, field) in [
            (r#"{"category":3}"#, Some("category")),
            (r#"{"urls":"https://a.example/"}"#, Some("urls")),
            (r#"{"urls":["https://a.example/",7]}"#, Some("urls")),
            (r#"{"description":["x"]}"#, Some("description")),
            (r#"{"contact":{}}"#, Some("contact")),
            ("[]", None),
            ("{\"category\":", None),
            ("", None),
        ] {
            assert_eq!(
                parse_json(body.as_bytes()).unwrap_err().field,
                field,
                "{body}"
            );
        }
        let empty = parse_json(br#"{"contact":null}"#).unwrap();
        assert_eq!(empty, ReportSubmission::default());
    }

    #[test]
    fn every_value_on_the_form_is_escaped() {
        let hostile = "\"><script>alert(1)</script>";
        let html = form_page(
            "<b>host</b>",
            &ReportSubmission {
                category: Some(hostile.into()),
                urls: vec![hostile.into(), "</textarea><script>".into()],
                description: format!("{hostile}</textarea>"),
                contact: Some(hostile.into()),
            },
            Some(&ReportError::new("urls", hostile)),
        );
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert_eq!(html.matches("</textarea>").count(), 2, "{html}");
        assert!(html.contains("&quot;&gt;&lt;script&gt;"), "{html}");
        assert!(!html.contains(" selected"), "{html}");
        let thanks = thanks_page("<i>", 7, true);
        assert!(thanks.contains("&lt;i&gt;") && thanks.contains("Report 7"));
    }

    #[test]
    fn the_form_keeps_the_reporters_choice_and_offers_every_category() {
        let html = form_page(
            "blog.example",
            &ReportSubmission {
                category: Some("csam".into()),
                ..ReportSubmission::default()
            },
            None,
        );
        for category in ReportCategory::ALL {
            assert!(html.contains(&format!("value=\"{}\"", category.as_str())));
        }
        assert!(html.contains("<option value=\"csam\" selected>"), "{html}");
        assert!(!html.contains("class=\"error\""));
    }

    #[tokio::test]
    async fn get_serves_the_form_with_a_strict_policy_and_no_store() {
        let (status, headers, body) = run(
            &AbuseIntake::new(),
            Request::get(ABUSE_PATH).body(Full::default()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        assert!(!csp.contains("script-src"), "{csp}");
        assert!(body.contains("Report abuse on blog.example"));
        assert!(!body.contains("http://") && !body.contains("https://"));
    }

    #[tokio::test]
    async fn other_methods_get_405_with_allow() {
        let request = Request::put(ABUSE_PATH).body(Full::default()).unwrap();
        let (status, headers, _) = run(&AbuseIntake::new(), request).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers[header::ALLOW], "GET, HEAD, POST");
    }

    #[tokio::test]
    async fn a_json_report_reaches_the_sink_and_gets_its_id() {
        let (intake, recorder) = with_recorder(false);
        let (status, headers, body) = run(&intake, post("application/json", GOOD_JSON)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"id": 1, "status": "new", "urgent": true})
        );
        let reports = recorder.reports.lock().unwrap();
        let report = &reports[0];
        assert_eq!(report.site.as_deref(), Some("blog"));
        assert_eq!(report.host, "blog.example");
        assert_eq!(report.reporter_ip, "192.0.2.7");
        assert_eq!(report.user_agent.as_deref(), Some("test/1"));
        assert_eq!(report.category, ReportCategory::ViolentThreat);
    }

    #[tokio::test]
    async fn a_form_report_gets_a_thank_you_page() {
        let (intake, recorder) = with_recorder(false);
        let (status, headers, body) = run(
            &intake,
            post(
                "application/x-www-form-urlencoded; charset=UTF-8",
                "category=copyright&urls=https%3A%2F%2Fblog.example%2Fsong.mp3&description=My+song",
            ),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
        assert!(body.contains("Report 1 received"), "{body}");
        assert_eq!(
            recorder.reports.lock().unwrap()[0].category,
            ReportCategory::Copyright
        );
    }

    #[tokio::test]
    async fn a_bad_report_gets_400_naming_the_field_and_never_reaches_the_sink() {
        let (intake, recorder) = with_recorder(false);
        let (status, _, body) = run(
            &intake,
            post(
                "application/json",
                r#"{"category":"phishing","urls":["ftp://a.example/"],"description":"x"}"#,
            ),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["field"], "urls");
        assert!(body["error"].as_str().unwrap().contains("http"), "{body}");
        // The form gets its values back with the error over them.
        let (status, _, body) = run(
            &intake,
            post(
                "application/x-www-form-urlencoded",
                "category=phishing&urls=https%3A%2F%2Fa.example%2F&description=",
            ),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("<strong>description:</strong>"), "{body}");
        assert!(body.contains("\nhttps://a.example/</textarea>"), "{body}");
        assert!(
            body.contains("<option value=\"phishing\" selected>"),
            "{body}"
        );
        assert!(recorder.reports.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn without_a_sink_or_with_a_failing_one_reports_get_503() {
        let (status, _, body) = run(&AbuseIntake::new(), post("application/json", GOOD_JSON)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("not being taken here"), "{body}");
        let (intake, _) = with_recorder(true);
        let (status, _, _) = run(&intake, post("application/json", GOOD_JSON)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn bodies_over_64_kib_get_413_and_other_media_types_415() {
        let (intake, recorder) = with_recorder(false);
        let big = format!(
            r#"{{"category":"other","urls":["https://a.example/"],"description":"{}"}}"#,
            "a".repeat(MAX_REPORT_BYTES)
        );
        let (status, headers, _) = run(&intake, post("application/json", &big)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(headers[header::CONNECTION], "close");
        let (status, _, _) = run(&intake, post("text/plain", "hello")).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(recorder.reports.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_sixth_report_in_ten_minutes_from_one_address_gets_429() {
        let (intake, recorder) = with_recorder(false);
        for _ in 0..REPORTS_PER_ADDRESS {
            let (status, _, _) = run(&intake, post("application/json", GOOD_JSON)).await;
            assert_eq!(status, StatusCode::CREATED);
        }
        let (status, headers, body) = run(&intake, post("application/json", GOOD_JSON)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(headers[header::RETRY_AFTER], "600");
        assert_eq!(recorder.reports.lock().unwrap().len(), 5);
        // Another address has its own allowance.
        let metrics = Metrics::new();
        let other = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 1));
        let (response, _) = serve(
            &intake,
            &metrics,
            PLACE,
            other,
            Duration::from_secs(5),
            post("application/json", GOOD_JSON),
        )
        .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
}
