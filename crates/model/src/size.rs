//! Byte sizes as they are written in the configuration: `"256MiB"`, `"10 GiB"`, `"512KB"`, or a
//! bare number of bytes.

/// A size that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// No number of bytes before the unit (empty, a bare unit, a sign).
    #[error(
        "invalid size {}; write it like \"256MiB\" or \"10GiB\"",
        crate::shown(.text)
    )]
    NotANumber {
        /// The size as written, trimmed.
        text: String,
    },
    /// The unit is not one of B, KB/KiB, MB/MiB, GB/GiB, TB/TiB.
    #[error(
        "unknown size unit {} in {}; use KiB, MiB, GiB or TiB",
        crate::shown(.unit),
        crate::shown(.text)
    )]
    UnknownUnit {
        /// The unit as written, lower-cased.
        unit: String,
        /// The size as written, trimmed.
        text: String,
    },
    /// More than `u64::MAX` bytes.
    #[error("size {} is too large", crate::shown(.text))]
    TooLarge {
        /// The size as written, trimmed.
        text: String,
    },
}

/// Parses a size: a number with an optional unit (`B`, `KB`/`KiB`, `MB`/`MiB`, `GB`/`GiB`,
/// `TB`/`TiB`; case-insensitive). Both the decimal and binary spellings mean powers of 1024, as
/// nginx and Varnish read them: nobody sizes a cache in powers of 1000.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| SizeError::NotANumber {
        text: text.to_string(),
    })?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(SizeError::UnknownUnit {
                unit: other.to_string(),
                text: text.to_string(),
            });
        }
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| SizeError::TooLarge {
            text: text.to_string(),
        })
}

/// Serde adapter: a size written as a string with a unit, or as a number of bytes.
pub(crate) mod as_size {
    use serde::Deserializer;
    use serde::de::{Error, Visitor};
    use std::fmt;

    struct SizeVisitor;

    impl Visitor<'_> for SizeVisitor {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a size like \"256MiB\" or a number of bytes")
        }

        fn visit_u64<E: Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }

        fn visit_i64<E: Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom("a size cannot be negative"))
        }

        fn visit_str<E: Error>(self, v: &str) -> Result<u64, E> {
            super::parse_size(v).map_err(E::custom)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(SizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_in_powers_of_1024() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("10 GB"), Ok(10 << 30));
        assert_eq!(parse_size("1tib"), Ok(1 << 40));
    }

    #[test]
    fn refuses_garbage_and_overflow() {
        assert!(parse_size("").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("10 parsecs").is_err());
        assert!(parse_size("-5MiB").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }
}
