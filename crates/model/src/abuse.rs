//! Abuse reports: what a visitor may report about a hosted site, and the rules a report meets
//! before anyone stores it.
//!
//! The edge takes reports at `/.well-known/palisade/abuse` (see `docs/abuse.md`) and turns what
//! the reporter wrote ([`ReportSubmission`]) into a [`NewReport`] with
//! [`NewReport::from_submission`], which refuses anything out of bounds with a [`ReportError`]
//! naming the field. The control plane stores reports with a [`ReportStatus`] and lists the
//! [`urgent`](ReportCategory::urgent) ones first.
//!
//! ```
//! use model::{NewReport, ReportCategory, ReportSubmission};
//!
//! let report = NewReport::from_submission(
//!     ReportSubmission {
//!         category: Some("phishing".into()),
//!         urls: vec!["https://blog.example/login".into()],
//!         description: "A copy of my bank's login page.".into(),
//!         contact: None,
//!     },
//!     Some("blog".into()),
//!     "blog.example".into(),
//!     "203.0.113.7".into(),
//!     None,
//! )
//! .unwrap();
//! assert_eq!(report.category, ReportCategory::Phishing);
//! assert!(!report.urgent());
//! ```

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Most URLs one report may name.
pub const MAX_REPORT_URLS: usize = 20;
/// Longest URL, in bytes (what browsers and most servers accept in a request line).
pub const MAX_REPORT_URL_BYTES: usize = 2048;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
/// Longest contact, in characters (an e-mail address can be 320 characters long).
pub const MAX_CONTACT_CHARS: usize = 320;

/// What a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportCategory {
    /// A threat of violence against a person or a group.
    ViolentThreat,
    /// Someone's private information published against their will (doxxing).
    PersonalInformation,
    /// Repeated abuse aimed at a person: insults, intimidation, unwanted contact.
    Harassment,
    /// A page posing as someone else's to take credentials or payment details.
    Phishing,
    /// Software that harms whoever runs it, served or linked by the site.
    Malware,
    /// Child sexual abuse material.
    Csam,
    /// Someone's work published without their permission.
    Copyright,
    /// Anything else; the description says what.
    Other,
}

impl ReportCategory {
    /// Every category, in the order the form lists them.
    pub const ALL: [ReportCategory; 8] = [
        ReportCategory::ViolentThreat,
        ReportCategory::PersonalInformation,
        ReportCategory::Harassment,
        ReportCategory::Phishing,
        ReportCategory::Malware,
        ReportCategory::Csam,
        ReportCategory::Copyright,
        ReportCategory::Other,
    ];

    /// The name in JSON, the form and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportCategory::ViolentThreat => "violent_threat",
            ReportCategory::PersonalInformation => "personal_information",
            ReportCategory::Harassment => "harassment",
            ReportCategory::Phishing => "phishing",
            ReportCategory::Malware => "malware",
            ReportCategory::Csam => "csam",
            ReportCategory::Copyright => "copyright",
            ReportCategory::Other => "other",
        }
    }

    /// What the form shows a reporter.
    pub fn label(self) -> &'static str {
        match self {
            ReportCategory::ViolentThreat => "Violent threat",
            ReportCategory::PersonalInformation => "Personal information (doxxing)",
            ReportCategory::Harassment => "Harassment",
            ReportCategory::Phishing => "Phishing",
            ReportCategory::Malware => "Malware",
            ReportCategory::Csam => "Child sexual abuse material",
            ReportCategory::Copyright => "Copyright",
            ReportCategory::Other => "Other",
        }
    }

    /// Reviewed before anything else: a person may be in danger, or every hour the material
    /// stays up harms someone (violent threats, doxxing, child sexual abuse material).
    pub fn urgent(self) -> bool {
        matches!(
            self,
            ReportCategory::ViolentThreat
                | ReportCategory::PersonalInformation
                | ReportCategory::Csam
        )
    }
}

impl fmt::Display for ReportCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReportCategory {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReportCategory::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "category",
                name: s.to_string(),
                expected: "violent_threat, personal_information, harassment, phishing, malware, \
                           csam, copyright or other",
            })
    }
}

/// Where a report stands with the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    /// Taken, nobody has looked at it yet.
    #[default]
    New,
    /// Someone is on it.
    Reviewing,
    /// Something was done (content removed, a site suspended).
    Actioned,
    /// Nothing to do (unfounded, a duplicate, out of the operator's reach).
    Dismissed,
}

impl ReportStatus {
    /// Every status, in the order a report moves through them.
    pub const ALL: [ReportStatus; 4] = [
        ReportStatus::New,
        ReportStatus::Reviewing,
        ReportStatus::Actioned,
        ReportStatus::Dismissed,
    ];

    /// The status as the API, the store and the CLI write it: `new`, `reviewing`, `actioned`
    /// or `dismissed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::New => "new",
            ReportStatus::Reviewing => "reviewing",
            ReportStatus::Actioned => "actioned",
            ReportStatus::Dismissed => "dismissed",
        }
    }
}

impl fmt::Display for ReportStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReportStatus {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReportStatus::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "status",
                name: s.to_string(),
                expected: "new, reviewing, actioned or dismissed",
            })
    }
}

/// A name that is not one of a fixed set (a report category or status).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {}: expected {expected}", crate::shown(name))]
pub struct UnknownName {
    /// What the name should have been: `category` or `status`.
    pub what: &'static str,
    /// The name as given.
    pub name: String,
    /// The names there are, as the message lists them.
    pub expected: &'static str,
}

/// What a reporter wrote, as received (JSON or the form), before any check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportSubmission {
    /// A [`ReportCategory`] name; required.
    pub category: Option<String>,
    /// The URLs the report is about (blank entries are dropped).
    pub urls: Vec<String>,
    /// What is wrong and where, in the reporter's words; required.
    pub description: String,
    /// How to reach the reporter, if they want to be reached (blank means none).
    pub contact: Option<String>,
}

/// A report ready to store: checked, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewReport {
    /// The site whose host the report came in on; `None` on the operator's own hostname.
    pub site: Option<String>,
    /// The host the report came in on (normalised).
    pub host: String,
    /// What the report is about.
    pub category: ReportCategory,
    /// 1 to [`MAX_REPORT_URLS`] absolute `http`/`https` URLs, trimmed, non-ASCII
    /// percent-encoded.
    pub urls: Vec<String>,
    /// Newlines are `\n` (a form's `\r\n` is folded).
    pub description: String,
    /// How to reach the reporter, trimmed; `None` when left blank.
    pub contact: Option<String>,
    /// The reporter's address as the edge saw it (after trusted proxies).
    pub reporter_ip: String,
    /// The reporter's `User-Agent`, when there was one (the edge keeps its first 512
    /// characters).
    pub user_agent: Option<String>,
}

/// Why a report was refused: the field at fault and what is wrong with it, in the reporter's
/// terms (it is shown to them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ReportError {
    /// `category`, `urls`, `description` or `contact` (the names in JSON and in the form).
    pub field: &'static str,
    /// What is wrong with it, in terms the reporter understands.
    pub message: String,
}

impl ReportError {
    /// A refusal of `field` saying `message`.
    pub fn new(field: &'static str, message: impl Into<String>) -> ReportError {
        ReportError {
            field,
            message: message.into(),
        }
    }
}

impl NewReport {
    /// Checks what a reporter wrote and makes the report. Blank URL entries are dropped, the
    /// URLs, description and contact trimmed, a URL's non-ASCII characters percent-encoded
    /// (RFC 3987's mapping of an IRI to a URI), and a blank contact is none; then everything
    /// must pass [`validate`](Self::validate).
    pub fn from_submission(
        submission: ReportSubmission,
        site: Option<String>,
        host: String,
        reporter_ip: String,
        user_agent: Option<String>,
    ) -> Result<NewReport, ReportError> {
        let category = match submission.category.as_deref().map(str::trim) {
            None | Some("") => {
                return Err(ReportError::new("category", "choose a category"));
            }
            Some(name) => name
                .parse::<ReportCategory>()
                .map_err(|e| ReportError::new("category", e.to_string()))?,
        };
        let urls = submission
            .urls
            .iter()
            .map(|u| u.trim())
            .filter(|u| !u.is_empty())
            .map(iri_to_uri)
            .collect();
        let description = submission.description.trim().replace("\r\n", "\n");
        let contact = submission
            .contact
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty());
        let report = NewReport {
            site,
            host,
            category,
            urls,
            description,
            contact,
            reporter_ip,
            user_agent,
        };
        report.validate()?;
        Ok(report)
    }

    /// Reviewed first: see [`ReportCategory::urgent`].
    pub fn urgent(&self) -> bool {
        self.category.urgent()
    }

    /// Every bound on what a reporter wrote: 1 to 20 `http`/`https` URLs (RFC 3986) of at most
    /// 2048 bytes each; a description of 1 to 10,000 characters with no control character but newline and
    /// tab; a contact of at most 320 characters with no control character.
    pub fn validate(&self) -> Result<(), ReportError> {
        if self.urls.is_empty() {
            return Err(ReportError::new(
                "urls",
                "give at least one URL of what you are reporting",
            ));
        }
        if self.urls.len() > MAX_REPORT_URLS {
            return Err(ReportError::new(
                "urls",
                format!(
                    "at most {MAX_REPORT_URLS} URLs per report ({} given)",
                    self.urls.len()
                ),
            ));
        }
        for (i, url) in self.urls.iter().enumerate() {
            check_url(url)
                .map_err(|why| ReportError::new("urls", format!("URL {}: {why}", i + 1)))?;
        }
        let chars = self.description.chars().count();
        if chars == 0 {
            return Err(ReportError::new(
                "description",
                "describe what is wrong and where",
            ));
        }
        if chars > MAX_DESCRIPTION_CHARS {
            return Err(ReportError::new(
                "description",
                format!("at most {MAX_DESCRIPTION_CHARS} characters ({chars} given)"),
            ));
        }
        if self
            .description
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(ReportError::new(
                "description",
                "must not hold control characters (only newlines and tabs)",
            ));
        }
        if let Some(contact) = &self.contact {
            let chars = contact.chars().count();
            if chars > MAX_CONTACT_CHARS {
                return Err(ReportError::new(
                    "contact",
                    format!("at most {MAX_CONTACT_CHARS} characters ({chars} given)"),
                ));
            }
            if contact.chars().any(char::is_control) {
                return Err(ReportError::new(
                    "contact",
                    "must not hold control characters",
                ));
            }
        }
        Ok(())
    }
}

/// RFC 3987 section 3.1: an IRI becomes a URI by percent-encoding the UTF-8 bytes of each
/// non-ASCII character. What a reporter pastes from an address bar may hold them (`/café`);
/// stored mapped, every URL a report keeps is an RFC 3986 URI. Whitespace and control
/// characters are left as they are, for [`check_url`] to refuse.
fn iri_to_uri(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() || c.is_whitespace() || c.is_control() {
            out.push(c);
        } else {
            let mut bytes = [0u8; 4];
            for b in c.encode_utf8(&mut bytes).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// An absolute `http` or `https` URI as RFC 3986 writes it (section 3: `scheme "://"
/// authority path-abempty [ "?" query ] [ "#" fragment ]`) with a host, at most
/// [`MAX_REPORT_URL_BYTES`]. Everything outside the grammar is refused rather than repaired:
/// `"`, `<`, `>` and the like cannot appear, so a report's URL never carries markup to a page
/// that forgets to escape it (every page that shows one escapes it anyway).
fn check_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_REPORT_URL_BYTES {
        return Err(format!(
            "at most {MAX_REPORT_URL_BYTES} bytes ({} given)",
            url.len()
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not hold spaces or control characters".into());
    }
    let lower = |n: usize| url.get(..n).map(str::to_ascii_lowercase);
    let rest = if lower(7).as_deref() == Some("http://") {
        &url[7..]
    } else if lower(8).as_deref() == Some("https://") {
        &url[8..]
    } else {
        return Err("must start with http:// or https://".into());
    };
    let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (userinfo, host_port),
        None => ("", authority),
    };
    uri_part(userinfo, "the user part", |b| sub_delim(b) || b == b':')?;
    let (host, port) = split_port(host_port)?;
    if host.is_empty() {
        return Err("must name a host".into());
    }
    if let Some(literal) = host.strip_prefix('[') {
        let inside = literal
            .strip_suffix(']')
            .ok_or("an IPv6 address must be written in brackets: [2001:db8::1]")?;
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("the brackets must hold an IPv6 address".into());
        }
    } else {
        uri_part(host, "the host", sub_delim)?;
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the port must be digits".into());
    }
    uri_part(path, "the path", |b| pchar(b) || b == b'/')?;
    uri_part(query, "the query", |b| pchar(b) || b == b'/' || b == b'?')?;
    uri_part(fragment, "the fragment", |b| {
        pchar(b) || b == b'/' || b == b'?'
    })
}

/// `host[:port]`: the port follows the last colon outside an IPv6 literal's brackets.
fn split_port(host_port: &str) -> Result<(&str, &str), String> {
    let after_literal = match host_port.find(']') {
        Some(end) if host_port.starts_with('[') => end + 1,
        Some(_) => return Err("holds ']' outside an IPv6 address".into()),
        None => 0,
    };
    match host_port[after_literal..].rfind(':') {
        Some(i) => {
            let at = after_literal + i;
            Ok((&host_port[..at], &host_port[at + 1..]))
        }
        None if after_literal == 0 || after_literal == host_port.len() => Ok((host_port, "")),
        None => Err("holds characters after an IPv6 address".into()),
    }
}

/// Checks one part of a URI: every byte unreserved, a `%XX` escape, or one `also` allows.
fn uri_part(part: &str, what: &str, also: impl Fn(u8) -> bool) -> Result<(), String> {
    let bytes = part.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let escape = bytes.get(i + 1..i + 3);
            if !escape.is_some_and(|e| e.iter().all(u8::is_ascii_hexdigit)) {
                return Err(format!(
                    "{what} holds a '%' that is not followed by two hex digits"
                ));
            }
            i += 3;
            continue;
        }
        if !(unreserved(b) || also(b)) {
            return Err(format!(
                "{what} holds {:?}, which a URL must percent-encode (RFC 3986)",
                b as char
            ));
        }
        i += 1;
    }
    Ok(())
}

/// RFC 3986 section 2.3.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 section 2.2.
fn sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// RFC 3986 section 3.3, less the escapes `uri_part` reads itself.
fn pchar(b: u8) -> bool {
    sub_delim(b) || matches!(b, b':' | b'@')
}

/// Why a posted body is not a [`ReportSubmission`]: the field at fault, when there is one (a
/// body that is not JSON at all has none).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", field.map(|f| format!("{f}: ")).unwrap_or_default())]
pub struct SubmissionError {
    /// `category`, `urls`, `description` or `contact`, as in JSON and in the form.
    pub field: Option<&'static str>,
    /// What is wrong, in terms the reporter understands.
    pub message: String,
}

impl SubmissionError {
    fn body(message: impl Into<String>) -> SubmissionError {
        SubmissionError {
            field: None,
            message: message.into(),
        }
    }

    fn field(field: &'static str, message: impl Into<String>) -> SubmissionError {
        SubmissionError {
            field: Some(field),
            message: message.into(),
        }
    }
}

impl ReportSubmission {
    /// A JSON report: `{"category": "...", "urls": ["..."], "description": "...", "contact": "..."}`
    /// (`contact` optional; other members ignored).
    pub fn from_json(bytes: &[u8]) -> Result<ReportSubmission, SubmissionError> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| SubmissionError::body(format!("the body is not valid JSON: {e}")))?;
        let serde_json::Value::Object(object) = value else {
            return Err(SubmissionError::body("the body must be a JSON object"));
        };
        let text = |field: &'static str| -> Result<Option<String>, SubmissionError> {
            match object.get(field) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(SubmissionError::field(field, "must be a string")),
            }
        };
        let urls = match object.get("urls") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_string))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| SubmissionError::field("urls", "must be a list of strings"))?,
            Some(_) => return Err(SubmissionError::field("urls", "must be a list of strings")),
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
    pub fn from_form(bytes: &[u8]) -> Result<ReportSubmission, SubmissionError> {
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
                .map_err(|_| SubmissionError::field(field, "is not UTF-8 text"))?;
            let once = |slot: &mut Option<String>, value: String| {
                if slot.replace(value).is_some() {
                    return Err(SubmissionError::field(field, "given more than once"));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn submission() -> ReportSubmission {
        ReportSubmission {
            category: Some("harassment".into()),
            urls: vec!["https://blog.example/post/1".into()],
            description: "Posts about me, daily.".into(),
            contact: Some("me@mail.example".into()),
        }
    }

    fn make(s: ReportSubmission) -> Result<NewReport, ReportError> {
        NewReport::from_submission(
            s,
            Some("blog".into()),
            "blog.example".into(),
            "192.0.2.1".into(),
            Some("curl/8".into()),
        )
    }

    fn field_of(s: ReportSubmission) -> &'static str {
        make(s).unwrap_err().field
    }

    #[test]
    fn names_are_the_documented_snake_case_ones() {
        let names: Vec<&str> = ReportCategory::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "violent_threat",
                "personal_information",
                "harassment",
                "phishing",
                "malware",
                "csam",
                "copyright",
                "other"
            ]
        );
        for category in ReportCategory::ALL {
            // serde's names (JSON, the store) are as_str's.
            let via_serde: ReportCategory = toml::Value::String(category.as_str().into())
                .try_into()
                .unwrap();
            assert_eq!(via_serde, category);
            assert_eq!(category.as_str().parse::<ReportCategory>(), Ok(category));
            assert!(!category.label().is_empty());
        }
        for status in ReportStatus::ALL {
            let via_serde: ReportStatus = toml::Value::String(status.as_str().into())
                .try_into()
                .unwrap();
            assert_eq!(via_serde, status);
            assert_eq!(status.as_str().parse::<ReportStatus>(), Ok(status));
        }
        assert_eq!(ReportStatus::default(), ReportStatus::New);
        assert!("Phishing".parse::<ReportCategory>().is_err());
        assert!("closed".parse::<ReportStatus>().is_err());
    }

    #[test]
    fn threats_doxxing_and_csam_are_urgent_and_nothing_else() {
        let urgent: Vec<ReportCategory> = ReportCategory::ALL
            .into_iter()
            .filter(|c| c.urgent())
            .collect();
        assert_eq!(
            urgent,
            [
                ReportCategory::ViolentThreat,
                ReportCategory::PersonalInformation,
                ReportCategory::Csam
            ]
        );
    }

    #[test]
    fn a_good_submission_becomes_a_trimmed_report() {
        let report = make(ReportSubmission {
            urls: vec![
                "  https://blog.example/a ".into(),
                "".into(),
                "HTTP://blog.example:8080/b?c#d".into(),
            ],
            description: "  line one\r\nline two\twith a tab  ".into(),
            contact: Some("   ".into()),
            ..submission()
        })
        .unwrap();
        assert_eq!(
            report.urls,
            ["https://blog.example/a", "HTTP://blog.example:8080/b?c#d"]
        );
        assert_eq!(report.description, "line one\nline two\twith a tab");
        assert_eq!(report.contact, None);
        assert_eq!(report.category, ReportCategory::Harassment);
        assert_eq!(report.site.as_deref(), Some("blog"));
    }

    #[test]
    fn the_category_is_required_and_must_be_known() {
        let err = make(ReportSubmission {
            category: None,
            ..submission()
        })
        .unwrap_err();
        assert_eq!(err.field, "category");
        let err = make(ReportSubmission {
            category: Some("spam".into()),
            ..submission()
        })
        .unwrap_err();
        assert_eq!(err.field, "category");
        assert!(err.message.contains("\"spam\""), "{err}");
        assert!(err.to_string().starts_with("category: "), "{err}");
    }

    #[test]
    fn urls_are_one_to_twenty_http_urls_with_a_host() {
        let with_urls = |urls: Vec<String>| ReportSubmission {
            urls,
            ..submission()
        };
        assert_eq!(field_of(with_urls(vec![])), "urls");
        assert_eq!(field_of(with_urls(vec![" ".into()])), "urls");
        let twenty: Vec<String> = (0..20).map(|i| format!("http://a.example/{i}")).collect();
        assert!(make(with_urls(twenty.clone())).is_ok());
        let mut twenty_one = twenty;
        twenty_one.push("http://a.example/x".into());
        assert_eq!(field_of(with_urls(twenty_one)), "urls");
        for bad in [
            "ftp://a.example/",
            "javascript:alert(1)",
            "blog.example/a",
            "http://",
            "https:///path",
            "http://:80/",
            "http://a.example/with space",
            "http://a.example/\u{0}",
            "http://a.example/\u{7f}",
        ] {
            let err = make(with_urls(vec!["http://ok.example/".into(), bad.into()])).unwrap_err();
            assert_eq!(err.field, "urls", "{bad:?}");
            assert!(err.message.starts_with("URL 2: "), "{bad:?}: {err}");
        }
        let long = format!("https://a.example/{}", "a".repeat(2048 - 18));
        assert_eq!(long.len(), 2048);
        assert!(make(with_urls(vec![long.clone()])).is_ok());
        assert_eq!(field_of(with_urls(vec![format!("{long}a")])), "urls");
    }

    #[test]
    fn urls_follow_rfc_3986_and_markup_never_passes() {
        let with_url = |url: &str| ReportSubmission {
            urls: vec![url.into()],
            ..submission()
        };
        for good in [
            "https://blog.example/a?b=c&d=%20e#f",
            "HTTPS://Blog.Example:8443/",
            "http://[2001:db8::1]:8080/x",
            "https://user:pw@blog.example/'quoted'(1)*",
            "https://blog.example/a/?q=/x?y#frag/ment?",
            "https://blog.example",
            "https://xn--caf-dma.example/",
        ] {
            assert!(make(with_url(good)).is_ok(), "{good}");
        }
        for bad in [
            r#"https://a.test/"><script>alert(1)</script>"#,
            "https://blog.example/<b>",
            "https://blog.example/{x}",
            "https://blog.example/a|b",
            "https://blog.example/a\\b",
            "https://blog.example/a^b",
            "https://blog.example/`",
            "https://blog.example/%zz",
            "https://blog.example/%4",
            "https://blog.example/a#b#c",
            "https://bl<og.example/",
            "https://blog.example:80a/",
            "https://[::1/",
            "https://[not-v6]/",
            "https://[::1]x/",
            "https://bl]og.example/",
            "https://us\"er@blog.example/",
        ] {
            let err = make(with_url(bad)).unwrap_err();
            assert_eq!(err.field, "urls", "{bad:?}");
            assert!(
                !err.message.contains(bad),
                "the message names the fault, not the URL: {err}"
            );
        }
    }

    #[test]
    fn an_iri_is_stored_as_the_uri_rfc_3987_maps_it_to() {
        let report = make(ReportSubmission {
            urls: vec!["https://blog.example/café?q=ü".into()],
            ..submission()
        })
        .unwrap();
        assert_eq!(report.urls, ["https://blog.example/caf%C3%A9?q=%C3%BC"]);
        // Non-ASCII spaces are not mapped: they are refused.
        let err = make(ReportSubmission {
            urls: vec!["https://blog.example/a\u{a0}b".into()],
            ..submission()
        })
        .unwrap_err();
        assert_eq!(err.field, "urls");
    }

    #[test]
    fn the_description_is_one_to_ten_thousand_characters_without_control_characters() {
        let with = |description: String| ReportSubmission {
            description,
            ..submission()
        };
        assert_eq!(field_of(with(String::new())), "description");
        assert_eq!(field_of(with(" \r\n\t ".into())), "description");
        // Characters, not bytes: ten thousand 'é' are 20,000 bytes and fine.
        assert!(make(with("é".repeat(10_000))).is_ok());
        assert_eq!(field_of(with("a".repeat(10_001))), "description");
        for bad in ["a\u{0}b", "a\rb", "a\u{1b}[31mb", "a\u{85}b"] {
            assert_eq!(field_of(with(bad.into())), "description", "{bad:?}");
        }
        assert!(make(with("a\n\tb\r\nc".into())).is_ok());
    }

    #[test]
    fn the_contact_is_optional_short_and_without_control_characters() {
        let with = |contact: &str| ReportSubmission {
            contact: Some(contact.into()),
            ..submission()
        };
        assert!(make(with(&"a".repeat(320))).is_ok());
        assert_eq!(field_of(with(&"a".repeat(321))), "contact");
        assert_eq!(field_of(with("me@mail.example\nBcc: x")), "contact");
    }

    #[test]
    fn a_report_survives_a_serde_round_trip() {
        let report = make(submission()).unwrap();
        let text = toml::to_string(&report).unwrap();
        assert!(text.contains("category = \"harassment\""), "{text}");
        let back: NewReport = toml::from_str(&text).unwrap();
        assert_eq!(back, report);
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
        let submission = ReportSubmission::from_form(
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
        let err = ReportSubmission::from_form(b"category=a&category=b").unwrap_err();
        assert_eq!(err.field, Some("category"));
        let err = ReportSubmission::from_form(b"description=%FF%FE").unwrap_err();
        assert_eq!(err.field, Some("description"));
        // Unknown fields are not looked at.
        assert!(ReportSubmission::from_form(b"x=%FF&y&=").is_ok());
    }

    #[test]
    fn json_fields_of_the_wrong_type_are_named() {
        let ok = ReportSubmission::from_json(GOOD_JSON.as_bytes()).unwrap();
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
                ReportSubmission::from_json(body.as_bytes())
                    .unwrap_err()
                    .field,
                field,
                "{body}"
            );
        }
        let empty = ReportSubmission::from_json(br#"{"contact":null}"#).unwrap();
        assert_eq!(empty, ReportSubmission::default());
    }
}
