//! Where a key stands in the configuration text, so that every error can name its line.
//!
//! Most checks run on the parsed values, after the text's positions are gone; they name the
//! key they refuse by its path (`server.listen_tls`, `site[0].health.path`). This module walks
//! the same path through the text's spanned parse and finds the line that path was written on.
//!
//! A file of 100,000 sites asks for thousands of positions, so [`Source`] counts the text's
//! lines once and parses the spanned tree at most once: each question is then a binary search
//! or a walk down one path, not a pass over the whole text.

use std::cell::OnceCell;
use std::ops::Range;
use toml::de::{DeTable, DeValue};

/// One step of a key path: a table key or an array index.
#[derive(Debug, PartialEq, Eq)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `site[0].rule[2].expr` as its steps; `None` when it is not written that way.
fn steps(path: &str) -> Option<Vec<Step<'_>>> {
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            steps.push(Step::Key(key));
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let end = inner.find(']')?;
            steps.push(Step::Index(inner[..end].parse().ok()?));
            rest = &inner[end + 1..];
        }
        if !rest.is_empty() {
            return None;
        }
    }
    Some(steps)
}

/// The configuration's text, with what answers "where is this written" built once.
pub(crate) struct Source<'a> {
    text: &'a str,
    /// Where each line starts: 0, then one past every `\n`.
    line_starts: Vec<usize>,
    /// The text's spanned parse, made the first time a key is looked for; `None` inside when
    /// the text does not parse.
    tree: OnceCell<Option<DeValue<'a>>>,
}

impl<'a> Source<'a> {
    pub(crate) fn new(text: &'a str) -> Source<'a> {
        let line_starts = std::iter::once(0)
            .chain(
                text.bytes()
                    .enumerate()
                    .filter(|(_, b)| *b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        Source {
            text,
            line_starts,
            tree: OnceCell::new(),
        }
    }

    /// The text itself.
    pub(crate) fn text(&self) -> &'a str {
        self.text
    }

    /// The 1-based line and column of the byte at `offset` (columns count bytes).
    pub(crate) fn line_and_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        // The last line start at or before `offset`; there is always one (0).
        let line = self.line_starts.partition_point(|start| *start <= offset);
        let start = self.line_starts[line - 1];
        (line, offset - start + 1)
    }

    /// The span of the text where `path` is written: the key itself for a table key (the line
    /// an operator looks for), the element for an array index. When the path goes deeper than
    /// the text (a key left at its default), the deepest part that is written. `None` when the
    /// text does not parse or holds none of the path.
    pub(crate) fn key_span(&self, path: &str) -> Option<Range<usize>> {
        let steps = steps(path)?;
        let root = self
            .tree
            .get_or_init(|| Some(DeValue::Table(DeTable::parse(self.text).ok()?.into_inner())))
            .as_ref()?;
        let mut found = None;
        let mut current = root;
        for step in steps {
            let next = match (step, current) {
                (Step::Key(key), DeValue::Table(table)) => table
                    .get_key_value(key)
                    .map(|(key, value)| (key.span(), value.get_ref())),
                (Step::Index(i), DeValue::Array(items)) => {
                    items.get(i).map(|item| (item.span(), item.get_ref()))
                }
                _ => None,
            };
            let Some((span, value)) = next else {
                break;
            };
            found = Some(span);
            current = value;
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, path: &str) -> Option<usize> {
        let source = Source::new(text);
        source
            .key_span(path)
            .map(|span| source.line_and_column(span.start).0)
    }

    const TEXT: &str = r#"[server]
listen = ["127.0.0.1:8080"]
listen_tls = ["127.0.0.1:8443"]

[[site]]
name = "a"
hosts = ["a.example"]

[[site]]
name = "b"
state = "suspended"
[site.health]
path = "nope"
[[site.rule]]
id = "r"
expr = "x"
"#;

    #[test]
    fn paths_are_split_into_keys_and_indexes() {
        assert_eq!(
            steps("site[1].rule[0].expr").unwrap(),
            [
                Step::Key("site"),
                Step::Index(1),
                Step::Key("rule"),
                Step::Index(0),
                Step::Key("expr")
            ]
        );
        assert!(steps("site[x]").is_none());
        assert!(steps("site[1]x").is_none());
    }

    #[test]
    fn keys_are_found_on_the_line_they_are_written() {
        assert_eq!(line(TEXT, "server.listen_tls"), Some(3));
        assert_eq!(line(TEXT, "site[1].state"), Some(11));
        assert_eq!(line(TEXT, "site[1].health.path"), Some(13));
        assert_eq!(line(TEXT, "site[1].rule[0].expr"), Some(16));
        assert_eq!(line(TEXT, "server.listen[0]"), Some(2));
    }

    #[test]
    fn a_key_left_at_its_default_points_at_what_holds_it() {
        assert_eq!(line(TEXT, "site[0].health"), line(TEXT, "site[0]"));
        assert_eq!(line(TEXT, "site[0].cache.ttl"), Some(5));
        assert_eq!(line(TEXT, "server.max_headers"), line(TEXT, "server"));
    }

    #[test]
    fn lines_and_columns_count_from_one_and_columns_restart_after_each_newline() {
        let source = Source::new("ab\ncd\n\nef");
        assert_eq!(source.line_and_column(0), (1, 1));
        assert_eq!(source.line_and_column(1), (1, 2));
        assert_eq!(
            source.line_and_column(2),
            (1, 3),
            "the newline ends its own line"
        );
        assert_eq!(source.line_and_column(3), (2, 1));
        assert_eq!(source.line_and_column(6), (3, 1));
        assert_eq!(source.line_and_column(8), (4, 2));
        assert_eq!(source.line_and_column(100), (4, 3), "past the end: the end");
        assert_eq!(Source::new("").line_and_column(0), (1, 1));
    }

    #[test]
    fn nothing_is_found_in_text_that_does_not_parse_or_lacks_the_path() {
        assert_eq!(line("[server", "server"), None);
        assert_eq!(line("", "server.listen"), None);
    }
}
