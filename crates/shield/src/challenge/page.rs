//! The interstitial a challenged browser gets: `page.html` with the challenge embedded.
//!
//! The page is Palisade's own HTML and JavaScript, under 10 KB, with no third-party resource:
//! an inline script starts Web Workers (from a Blob URL of inline code, as the challenge's
//! Content-Security-Policy allows) that do the proof of work, posts the answer to the verify
//! path and then replaces itself with the page the visitor asked for.
//!
//! The parameters travel as one JSON object in
//! `<script type="application/json" id="palisade-challenge">`; `host` is also shown as text.
//! Both come from the request, so both are escaped for where they land:
//! - in the JSON, `<`, `>` and `&` are written `\u003c`, `\u003e`, `\u0026` (so no `</script>`
//!   or `<!--` can appear inside the script element) and U+2028/U+2029 as `\u2028`/`\u2029`;
//! - in the text, `&<>"'` become character references.

use std::fmt::Write as _;
use std::sync::LazyLock;

/// The page, with `{{host}}` (HTML text) and `{{params}}` (the JSON object) to fill in.
const TEMPLATE: &str = include_str!("page.html");

/// What the page is rendered with.
#[derive(Debug, Clone, Copy)]
pub struct PageParams<'a> {
    /// The site's host name as the visitor typed it, shown in the heading.
    pub host: &'a str,
    /// The signed challenge (`c` in the protocol), opaque to the page.
    pub token: &'a str,
    /// Leading zero bits each part's hash must have.
    pub bits: u8,
    /// How many parts to solve.
    pub parts: u8,
    /// Where the page posts its answer.
    pub verify_path: &'a str,
    /// Where the page goes once cleared: the path and query the visitor asked for.
    pub return_to: &'a str,
}

/// The interstitial's HTML with the parameters embedded (JSON-escaped so that `</script>` and
/// friends in `return_to` or `host` cannot break out).
///
/// ```
/// use shield::challenge::page::{PageParams, render};
///
/// let html = render(&PageParams {
///     host: "blog.example",
///     token: "c2lnbmVk",
///     bits: 14,
///     parts: 8,
///     verify_path: "/.well-known/palisade/challenge",
///     return_to: "/a?b=1",
/// });
/// assert!(html.contains("Checking your browser before accessing blog.example"));
/// assert!(html.contains(r#""c":"c2lnbmVk","bits":14,"parts":8"#));
/// ```
pub fn render(p: &PageParams<'_>) -> String {
    // Room for the values and some escaping; hostile values that escape to more only reallocate.
    let values = p.host.len() + p.token.len() + p.verify_path.len() + p.return_to.len();
    let mut out = String::with_capacity(TEMPLATE.len() + 64 + 2 * values);
    for piece in PIECES.iter() {
        match *piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Host => push_html_text(&mut out, p.host),
            Piece::Params => push_params(&mut out, p),
        }
    }
    out
}

/// The template cut at its placeholders, once, so rendering is a walk over slices.
static PIECES: LazyLock<Vec<Piece>> = LazyLock::new(|| pieces(TEMPLATE));

#[derive(Debug, PartialEq)]
enum Piece {
    Text(&'static str),
    Host,
    Params,
}

fn pieces(mut template: &'static str) -> Vec<Piece> {
    let mut out = Vec::new();
    while let Some(at) = template.find("{{") {
        let (slot, len) = if template[at..].starts_with("{{host}}") {
            (Piece::Host, "{{host}}".len())
        } else if template[at..].starts_with("{{params}}") {
            (Piece::Params, "{{params}}".len())
        } else {
            // Not a placeholder: kept as text (a unit test keeps the template free of these).
            (Piece::Text("{{"), 2)
        };
        out.push(Piece::Text(&template[..at]));
        out.push(slot);
        template = &template[at + len..];
    }
    out.push(Piece::Text(template));
    out
}

/// `{"c":..,"bits":..,"parts":..,"verify":..,"return":..}`, the object the page's script reads.
fn push_params(out: &mut String, p: &PageParams<'_>) {
    out.push_str(r#"{"c":"#);
    push_json_string(out, p.token);
    // Writing integers into a String cannot fail.
    let _ = write!(out, r#","bits":{},"parts":{},"verify":"#, p.bits, p.parts);
    push_json_string(out, p.verify_path);
    out.push_str(r#","return":"#);
    push_json_string(out, p.return_to);
    out.push('}');
}

/// A JSON string safe inside a `<script>` element: beyond JSON's own escapes, `<`, `>` and `&`
/// (no `</script>`, `<!--` or `<script` can form) and the line separators U+2028/U+2029 (line
/// breaks to older JavaScript parsers).
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    // Most values (the base64url token, a plain path) need no escape: one byte scan, one copy.
    // 0xE2 leads U+2028 and U+2029 in UTF-8.
    let needs_escape = |b: u8| matches!(b, b'"' | b'\\' | b'<' | b'>' | b'&' | 0..=0x1f | 0xe2);
    if !s.bytes().any(needs_escape) {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut safe_from = 0;
    for (at, c) in s.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '<' => "\\u003c",
            '>' => "\\u003e",
            '&' => "\\u0026",
            '\u{2028}' => "\\u2028",
            '\u{2029}' => "\\u2029",
            c if c < ' ' => "",
            _ => continue,
        };
        out.push_str(&s[safe_from..at]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push_str(escape);
        }
        safe_from = at + c.len_utf8();
    }
    out.push_str(&s[safe_from..]);
    out.push('"');
}

/// Text content (or a quoted attribute value): `&<>"'` as character references. Also what
/// the edge's other pages (the abuse form) escape with.
pub fn push_html_text(out: &mut String, s: &str) {
    let mut safe_from = 0;
    for (at, c) in s.char_indices() {
        let reference = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            '\'' => "&#39;",
            _ => continue,
        };
        out.push_str(&s[safe_from..at]);
        out.push_str(reference);
        safe_from = at + 1;
    }
    out.push_str(&s[safe_from..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOSTILE: &[&str] = &[
        "</script><script>alert(1)</script>",
        "\"",
        "'",
        "</SCRIPT >",
        "<!--<script>",
        "\\\"};alert(1);//",
        "\u{2028}\u{2029}\u{0}\n\r\t\u{7f}",
        "&lt;&amp;",
        "<img src=x onerror=alert(1)>",
    ];

    fn params<'a>(host: &'a str, return_to: &'a str) -> PageParams<'a> {
        PageParams {
            host,
            // The size of a real token: payload and HMAC tag, base64url.
            token: "AQAAAGf3x2kAAAAAbG9nLnRlc3QAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA-_w",
            bits: 14,
            parts: 8,
            verify_path: "/.well-known/palisade/challenge",
            return_to,
        }
    }

    /// The text of the JSON script element.
    fn json_block(html: &str) -> &str {
        let open = r#"<script type="application/json" id="palisade-challenge">"#;
        let start = html.find(open).expect("the JSON block") + open.len();
        let len = html[start..].find("</script>").expect("its end");
        &html[start..start + len]
    }

    /// How many times `needle` occurs, ASCII case-insensitively (HTML tag names are).
    fn count(haystack: &str, needle: &str) -> usize {
        haystack.to_ascii_lowercase().matches(needle).count()
    }

    fn assert_contained(host: &str, return_to: &str) {
        let p = params(host, return_to);
        let html = render(&p);
        // Nothing the values bring opens or closes an element, a comment or a script.
        for marker in ["<script", "</script", "<!--", "<"] {
            assert_eq!(
                count(&html, marker),
                count(TEMPLATE, marker),
                "{marker:?} from host {host:?} / return_to {return_to:?}"
            );
        }
        let block = json_block(&html);
        assert!(!block.contains(['\u{2028}', '\u{2029}']), "{block:?}");
        let json: serde_json::Value = serde_json::from_str(block).expect("the JSON block parses");
        assert_eq!(json["c"], p.token);
        assert_eq!(json["bits"], 14);
        assert_eq!(json["parts"], 8);
        assert_eq!(json["verify"], p.verify_path);
        assert_eq!(json["return"], return_to);
        assert_eq!(json.as_object().map(|o| o.len()), Some(5), "{json}");
    }

    #[test]
    fn page_is_under_10_kb_rendered() {
        let html = render(&params(
            "www.some-rather-long-site-name.example",
            "/blog/2024/05/a-fairly-long-article-slug?utm_source=newsletter&utm_medium=email",
        ));
        assert!(html.len() < 10 * 1024, "{} bytes", html.len());
        // Room left for a long return path (the edge caps what it embeds).
        assert!(
            TEMPLATE.len() < 8 * 1024,
            "template is {} bytes",
            TEMPLATE.len()
        );
    }

    #[test]
    fn hostile_host_and_return_to_cannot_break_out_of_the_json_block_or_the_html() {
        for &evil in HOSTILE {
            assert_contained(evil, "/");
            assert_contained("blog.test", evil);
            assert_contained(evil, evil);
        }
        let html = render(&params("</script><script>alert(1)</script>", "/"));
        assert!(
            html.contains("accessing &lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;…</h1>")
        );
    }

    #[test]
    fn json_block_parses_back_to_the_given_values() {
        let p = PageParams {
            host: "blog.test",
            token: "tok-_123",
            bits: 255,
            parts: 16,
            verify_path: "/.well-known/palisade/challenge",
            return_to: "/some/page?x=1&y=\"2\"#frag",
        };
        let json: serde_json::Value = serde_json::from_str(json_block(&render(&p))).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"c": "tok-_123", "bits": 255, "parts": 16,
                "verify": "/.well-known/palisade/challenge", "return": "/some/page?x=1&y=\"2\"#frag"})
        );
    }

    #[test]
    fn template_has_one_host_and_one_params_placeholder_and_no_stray_braces() {
        let pieces = pieces(TEMPLATE);
        assert_eq!(pieces.iter().filter(|p| **p == Piece::Host).count(), 1);
        assert_eq!(pieces.iter().filter(|p| **p == Piece::Params).count(), 1);
        assert!(!pieces.contains(&Piece::Text("{{")), "unknown placeholder");
    }

    #[test]
    fn template_loads_nothing_from_elsewhere_and_has_no_inline_handlers() {
        // CSP: default-src 'none', scripts and styles inline only, workers from blob: URLs.
        for banned in [
            "http:",
            "https:",
            "src=",
            "href=",
            "url(",
            "@import",
            "eval(",
            "new Function",
        ] {
            assert!(!TEMPLATE.contains(banned), "{banned}");
        }
        // Handler attributes (`onclick=` ...) in the markup, script bodies aside.
        let mut markup = String::new();
        let mut rest = TEMPLATE;
        while let Some(at) = rest.find("<script") {
            markup.push_str(&rest[..at]);
            let end = rest[at..].find("</script>").expect("closed script") + at;
            rest = &rest[end..];
        }
        markup.push_str(rest);
        for tag in markup.split('<').skip(1) {
            let tag = tag.split('>').next().unwrap_or("").to_ascii_lowercase();
            assert!(
                !tag.split_whitespace()
                    .skip(1)
                    .any(|attr| attr.starts_with("on")),
                "inline handler in <{tag}>"
            );
        }
    }

    #[test]
    fn escapes_control_characters_and_line_separators_in_json() {
        let mut out = String::new();
        push_json_string(&mut out, "a\u{1}\n\u{2028}</x>&\"\\b");
        assert_eq!(out, r#""a\u0001\u000a\u2028\u003c/x\u003e\u0026\"\\b""#);
    }

    proptest! {
        #[test]
        fn any_host_and_return_to_stay_inside_their_slots(host in any::<String>(), ret in any::<String>()) {
            assert_contained(&host, &ret);
        }

        #[test]
        fn markup_like_values_stay_inside_their_slots(host in "[<>/!\"'&a-z\\-\u{2028} ]{0,40}", ret in "[<>/!\"'&a-z\\-\u{2028} ]{0,40}") {
            assert_contained(&host, &ret);
        }
    }
}
