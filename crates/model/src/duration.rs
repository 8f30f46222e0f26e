//! Durations as they are written in the configuration: `"500ms"`, `"10s"`, `"1m 30s"`.

use std::time::Duration;

/// A duration that is not written like `"500ms"` or `"10s"`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "invalid duration {} ({error}); write it like \"500ms\" or \"10s\"",
    crate::shown(.text)
)]
pub struct DurationError {
    /// The text as written, untrimmed.
    pub text: String,
    /// What the duration parser found wrong (printed in the message, so not its source).
    pub error: humantime::DurationError,
}

/// Parses a human duration (`"500ms"`, `"10s"`, `"2m"`). A bare number is refused on purpose:
/// `timeout = 10` is ambiguous between seconds and milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(text.trim()).map_err(|error| DurationError {
        text: text.to_string(),
        error,
    })
}

/// Serde adapter: a duration field written as a string.
pub(crate) mod as_text {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde adapter for an optional duration field.
pub(crate) mod as_text_opt {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_milliseconds_seconds_and_minutes() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    }

    #[test]
    fn refuses_bare_numbers_and_garbage() {
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
    }
}
