//! A rule expression as an operator writes it, evaluated against a request: parsing never
//! panics and a refusal names a place inside the text (or just past its end); an expression
//! that parses evaluates without a panic.
//!
//! Input: the expression, a NUL byte, then the request's path (its query after a `?`).
#![no_main]

use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use shield::RequestFacts;
use shield::rules::Expr;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (expr, target) = text.split_once('\0').unwrap_or((text, "/"));
    let expr = match Expr::parse(expr) {
        Ok(expr) => expr,
        Err(e) => {
            let lines = expr.split('\n').count();
            assert!(e.line >= 1 && e.line <= lines, "{e} in {lines} lines");
            assert!(e.column >= 1, "{e}");
            return;
        }
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = HeaderMap::new();
    headers.insert("user-agent", http::HeaderValue::from_static("fuzz/1.0"));
    // Chromium's fingerprints, for rules on `tls.ja4` and `http2.fingerprint`.
    let connection = shield::ConnectionTraits {
        ja4: Some("t13d1517h2_8daaf6152771_cb7bf5808d99".into()),
        h2: Some("1:65536;2:0;4:6291456;6:262144|15663105".into()),
    };
    let facts = RequestFacts {
        ip: "203.0.113.7".parse().unwrap(),
        host: "blog.example",
        method: "GET",
        path,
        query,
        headers: &headers,
        tls: true,
        version: http::Version::HTTP_2,
        connection: &connection,
    };
    let _ = expr.eval(&facts);
});
