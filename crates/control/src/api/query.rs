//! A request's query string, parsed once: the values that decide who may ask are the values
//! the answer is made from.
//!
//! Names and values are percent-decoded (`+` is a space, as in a form) before anything reads
//! them, so `%73ite` is `site`. Refused with 400, naming no value: a name given twice, a name
//! the operation does not declare in the OpenAPI document, and an escape that is not `%XX` or
//! does not decode to UTF-8. Reading one query two ways (the first raw `site` pair for the
//! decision, the last decoded one for the work) once let a token limited to one site read
//! another's events; with one parse and no duplicates there is nothing to read two ways.

use super::ApiError;
use axum::http::StatusCode;
use std::str::FromStr;

/// A parsed query: each declared name at most once, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

/// Why a query was refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A `%` escape that is not `%XX`, or bytes that are not UTF-8.
    #[error("the query is not percent-encoded UTF-8 (an escape is %XX)")]
    Malformed,
    /// A parameter given twice.
    #[error("parameter {} is given more than once", model::shown(.0))]
    Repeated(String),
    /// A parameter the route does not take, with the ones it takes.
    #[error("unknown parameter {} (this route takes {})", model::shown(.0), .1)]
    Unknown(String, String),
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> ApiError {
        match &e {
            QueryError::Malformed => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
            QueryError::Repeated(name) | QueryError::Unknown(name, _) => {
                ApiError::field(StatusCode::BAD_REQUEST, name.clone(), e.to_string())
            }
        }
    }
}

impl Query {
    /// Parses `raw` (the part after `?`, if any) for an operation that declares `declared`.
    ///
    /// ```
    /// use control::api::Query;
    /// let query = Query::parse(Some("%73ite=blog&limit=5"), &["site", "limit"]).unwrap();
    /// assert_eq!(query.get("site"), Some("blog"));
    /// assert!(Query::parse(Some("site=a&%73ite=b"), &["site"]).is_err());
    /// ```
    pub fn parse<S: AsRef<str>>(raw: Option<&str>, declared: &[S]) -> Result<Query, QueryError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(name)?;
            let value = decode(value)?;
            if !declared.iter().any(|d| d.as_ref() == name) {
                let takes = if declared.is_empty() {
                    "none".to_string()
                } else {
                    let names: Vec<&str> = declared.iter().map(AsRef::as_ref).collect();
                    names.join(", ")
                };
                return Err(QueryError::Unknown(name, takes));
            }
            if pairs.iter().any(|(seen, _)| *seen == name) {
                return Err(QueryError::Repeated(name));
            }
            pairs.push((name, value));
        }
        Ok(Query { pairs })
    }

    /// The value of `name`, if the query gives it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `name` read as a `T` (a number, usually): 400 naming it when it is not one.
    pub fn parsed<T: FromStr>(&self, name: &str, expected: &str) -> Result<Option<T>, ApiError> {
        self.get(name)
            .map(|value| {
                value.parse::<T>().map_err(|_| {
                    ApiError::field(
                        StatusCode::BAD_REQUEST,
                        name,
                        format!("{name} must be {expected}"),
                    )
                })
            })
            .transpose()
    }

    /// `limit`: `default` when absent, 1 to `max` when given.
    pub fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        let expected = format!("a number from 1 to {max}");
        match self.parsed::<usize>("limit", &expected)? {
            None => Ok(default),
            Some(n) if (1..=max).contains(&n) => Ok(n),
            Some(_) => Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "limit",
                format!("limit must be {expected}"),
            )),
        }
    }
}

/// `application/x-www-form-urlencoded` decoding, strictly: `+` is a space, `%XX` a byte, and
/// the bytes must be UTF-8. A lenient decoder keeps `%zz` as it is, which is one more way for
/// two readers to disagree on a name.
fn decode(text: &str) -> Result<String, QueryError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let high = bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16));
                let low = bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16));
                let (Some(high), Some(low)) = (high, low) else {
                    return Err(QueryError::Malformed);
                };
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| QueryError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENTS: &[&str] = &["site", "limit", "after"];

    #[test]
    fn names_and_values_are_decoded_once() {
        let query = Query::parse(Some("%73ite=my%2Dsite&limit=5&after=&&"), EVENTS).unwrap();
        assert_eq!(query.get("site"), Some("my-site"));
        assert_eq!(query.get("limit"), Some("5"));
        assert_eq!(query.get("after"), Some(""));
        let query = Query::parse(Some("site=a+b"), EVENTS).unwrap();
        assert_eq!(query.get("site"), Some("a b"));
        assert_eq!(Query::parse(None, EVENTS).unwrap(), Query::default());
    }

    #[test]
    fn a_name_given_twice_is_refused_however_it_is_spelled() {
        for raw in [
            "site=a&site=b",
            "site=a&%73ite=b",
            "%73ite=a&site=b",
            "%73%69%74%65=a&site=a",
            "limit=1&limit=1",
        ] {
            let error = Query::parse(Some(raw), EVENTS).unwrap_err();
            assert!(matches!(error, QueryError::Repeated(_)), "{raw}: {error}");
        }
    }

    #[test]
    fn undeclared_names_and_broken_escapes_are_refused() {
        assert_eq!(
            Query::parse(Some("Site=a"), EVENTS),
            Err(QueryError::Unknown(
                "Site".into(),
                "site, limit, after".into()
            ))
        );
        assert!(matches!(
            Query::parse(Some("x=1"), &[] as &[&str]),
            Err(QueryError::Unknown(_, takes)) if takes == "none"
        ));
        for raw in ["site=%zz", "site=%4", "site=%", "%ZZite=a", "site=%FF%FE"] {
            assert_eq!(
                Query::parse(Some(raw), EVENTS),
                Err(QueryError::Malformed),
                "{raw}"
            );
        }
    }

    #[test]
    fn refusals_name_no_value_and_cut_long_names() {
        let error = Query::parse(Some("site=secret-one&site=secret-two"), EVENTS).unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
        let long = "n".repeat(10_000);
        let error = Query::parse(Some(&format!("{long}=1")), EVENTS).unwrap_err();
        assert!(error.to_string().len() < 200, "{error}");
    }

    #[test]
    fn numbers_and_limits_are_checked_naming_the_parameter() {
        let query = Query::parse(Some("limit=0&after=x"), EVENTS).unwrap();
        assert_eq!(
            query.limit(100, 10_000).unwrap_err().field.as_deref(),
            Some("limit")
        );
        let after = query.parsed::<u64>("after", "an event id").unwrap_err();
        assert_eq!(after.field.as_deref(), Some("after"));
        let query = Query::parse(Some("limit=7"), EVENTS).unwrap();
        assert_eq!(query.limit(100, 10_000).unwrap(), 7);
        assert_eq!(Query::default().limit(100, 10_000).unwrap(), 100);
    }
}
