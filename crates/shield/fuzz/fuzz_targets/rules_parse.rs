//! Any text given to `Expr::parse` is parsed or refused without panicking, every refusal names
//! a line and column inside the text, and what parses evaluates without panicking.

#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use shield::RequestFacts;
use shield::rules::Expr;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Expr::parse(text) {
        Ok(expr) => {
            let mut headers = HeaderMap::new();
            headers.insert("user-agent", HeaderValue::from_static("Mozilla/5.0"));
            headers.append("cookie", HeaderValue::from_static("a=1"));
            headers.append("cookie", HeaderValue::from_static("b=2"));
            let facts = RequestFacts {
                ip: "::ffff:10.0.0.1".parse().expect("an address"),
                host: "example.com",
                method: "GET",
                path: "/admin/index.php",
                query: "id=1",
                headers: &headers,
                tls: false,
                version: http::Version::HTTP_11,
                connection: shield::ConnectionTraits::none(),
            };
            expr.eval(&facts);
            assert_eq!(expr.source(), text);
        }
        Err(error) => {
            let lines: Vec<&str> = text.split('\n').collect();
            assert!(error.line >= 1 && error.line <= lines.len(), "{error}");
            let width = lines[error.line - 1].chars().count();
            assert!(error.column >= 1 && error.column <= width + 1, "{error}");
        }
    }
});
