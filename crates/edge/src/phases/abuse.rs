//! The abuse intake's wire endpoint, `/.well-known/palisade/abuse`, on every site's hosts and
//! on the operator's hostname (`[server] operator_host`). See `docs/abuse.md`.
//!
//! `GET` serves the form; `POST` takes a report as JSON (`application/json`) or as the form
//! posts it (`application/x-www-form-urlencoded`, the URLs one per line). The edge parses it
//! (`model::ReportSubmission`), checks it (`model::NewReport::from_submission`) and hands it to
//! the [`ReportSink`] the control plane installed; it stores nothing itself. Requests here
//! never reach an origin, never meet a challenge, and are answered whatever the site's state
//! (a suspended site's visitors must still be able to report it), while the deny lists hold as
//! everywhere. The limits and the pages are in `abuse_intake`.

use crate::abuse_intake::pages::{form_page, message_page, thanks_page};
use crate::abuse_intake::{
    ABUSE_PATH, AbuseIntake, MAX_REPORT_BYTES, REPORTS_PERIOD, Receipt, SubmitError,
};
use crate::body::EdgeBody;
use crate::http::fields::prefers_json;
use crate::metrics::{Metrics, ReportOutcome};
use crate::own_responses::{edge_page, not_stored};
use crate::snapshot::Snapshot;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use model::{NewReport, ReportError, ReportSubmission, SubmissionError};
use shield::guard::Listed;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long the sink may take to store a report before the reporter is told to try later.
const SINK_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest User-Agent kept with a report, in characters.
const MAX_USER_AGENT_CHARS: usize = 512;

/// The pages' policy: no script at all, their own inline style, forms posted here only.
const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

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
        return (edge_page(StatusCode::FORBIDDEN, false), 0);
    }
    if request.uri().path() != ABUSE_PATH {
        return (edge_page(StatusCode::NOT_FOUND, false), 0);
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
            let mut response = edge_page(StatusCode::METHOD_NOT_ALLOWED, false);
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
        ReportSubmission::from_form(bytes)
    } else {
        ReportSubmission::from_json(bytes)
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
            let invalid = SubmissionError {
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
        .unwrap_or(Err(SubmitError::TimedOut(SINK_TIMEOUT)));
    let site = place.site.unwrap_or("");
    let receipt = match stored {
        Ok(receipt) => receipt,
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
    let Receipt::Stored(id) = receipt else {
        tracing::info!(
            category = category.as_str(),
            urgent,
            site,
            host = place.host,
            "abuse report taken, queued for the control node"
        );
        // 202: taken, not stored yet (a cluster's edge delivers it when it reaches the store).
        return if posted.json() {
            let body = serde_json::json!({ "status": "queued", "urgent": urgent });
            json(StatusCode::ACCEPTED, &body)
        } else {
            page(StatusCode::ACCEPTED, thanks_page(place.host, None, urgent))
        };
    };
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
        page(
            StatusCode::CREATED,
            thanks_page(place.host, Some(id), urgent),
        )
    }
}

/// 400: JSON `{"error": ..., "field": ...}`, or the form again with the reporter's values and
/// the error above it.
fn bad_request(
    posted: Posted,
    place: Place<'_>,
    invalid: &SubmissionError,
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
    let mut response = not_stored(status, "application/json", format!("{body}\n"));
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
    let mut response = not_stored(status, "text/html; charset=utf-8", html);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abuse_intake::{REPORTS_PER_ADDRESS, ReportSink, SubmitFuture};
    use http_body_util::Full;
    use model::ReportCategory;
    use std::sync::Arc;
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
                    return Err(SubmitError::Store("the store is read-only".into()));
                }
                let mut reports = this.reports.lock().unwrap();
                reports.push(report);
                Ok(Receipt::Stored(reports.len() as u64))
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
