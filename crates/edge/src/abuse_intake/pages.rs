//! The abuse intake's HTML pages: the form, the thank-you page and a refusal's page. Every
//! value a reporter sent is escaped; the pages use no script (the phase that serves them sends
//! a policy that allows none).

use super::ABUSE_PATH;
use http::StatusCode;
use model::{ReportCategory, ReportError, ReportSubmission};
use shield::challenge::page::push_html_text;
use std::fmt::Write as _;

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
pub fn form_page(host: &str, values: &ReportSubmission, error: Option<&ReportError>) -> String {
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

/// After a report is taken: its number (when it is stored already), and whether it goes to
/// the front of the queue.
pub fn thanks_page(host: &str, id: Option<u64>, urgent: bool) -> String {
    let mut out = String::with_capacity(1024);
    head(&mut out, "Report received");
    match id {
        Some(id) => {
            let _ = write!(out, "<h1>Report {id} received</h1><p>Thank you. ");
        }
        None => {
            out.push_str("<h1>Report received</h1><p>Thank you. It is on its way to the operator. ")
        }
    }
    out.push_str(if urgent {
        "It is marked urgent and will be reviewed first."
    } else {
        "The operator of this network will review it."
    });
    if id.is_some() {
        out.push_str(" Please give its number if you write about it again.");
    }
    out.push_str("</p><p>");
    let _ = write!(out, "<a href=\"{ABUSE_PATH}\">Send another report about ");
    push_html_text(&mut out, host);
    out.push_str("</a></p>");
    out.push_str(FOOT);
    out
}

/// A refusal without a form: what happened and what to do.
pub fn message_page(status: StatusCode, message: &str) -> String {
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
        let thanks = thanks_page("<i>", Some(7), true);
        assert!(thanks.contains("&lt;i&gt;") && thanks.contains("Report 7"));
        let queued = thanks_page("blog.example", None, false);
        assert!(
            queued.contains("on its way") && !queued.contains("its number"),
            "{queued}"
        );
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
}
