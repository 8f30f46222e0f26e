//! What an error message shows of a value someone sent: quoted as Rust's `{:?}` would, and cut.
//!
//! Errors name the value at fault so a person can find it, but a message is no place for all of
//! a 10,000-character name: it would be echoed back whole (to a log, a terminal, an API
//! client), and whatever it holds with it. [`shown`] keeps the first [`SHOWN_CHARS`]
//! characters and says how many more there were.
//!
//! ```
//! let long = "a".repeat(1000);
//! let message = format!("site name {} is not valid", model::shown(&long));
//! assert!(message.len() < 120);
//! assert!(message.contains("(936 more characters)"));
//! assert_eq!(format!("{}", model::shown("blog")), "\"blog\"");
//! ```

use std::fmt;

/// Characters of a value an error message shows.
pub const SHOWN_CHARS: usize = 64;

/// `text` as an error message shows it: see the module's documentation.
pub fn shown(text: &str) -> Shown<'_> {
    Shown(text)
}

/// A value quoted and cut for a message; made by [`shown`].
#[derive(Debug, Clone, Copy)]
pub struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(SHOWN_CHARS) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => {
                let more = self.0[cut..].chars().count();
                write!(f, "{:?}… ({more} more characters)", &self.0[..cut])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_value_is_quoted_whole() {
        assert_eq!(shown("x\"y").to_string(), r#""x\"y""#);
        assert_eq!(
            shown(&"é".repeat(SHOWN_CHARS)).to_string().chars().count(),
            SHOWN_CHARS + 2
        );
    }

    #[test]
    fn a_long_value_is_cut_on_a_character_boundary_saying_how_much_is_left_out() {
        let text = format!("{}{}", "é".repeat(SHOWN_CHARS), "z".repeat(10_000));
        let message = shown(&text).to_string();
        assert!(
            message.starts_with(&format!("\"{}\"…", "é".repeat(SHOWN_CHARS))),
            "{message}"
        );
        assert!(message.ends_with("(10000 more characters)"), "{message}");
    }
}
