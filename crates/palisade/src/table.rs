//! Plain aligned columns for the CLI's default output: a header row in capitals, columns two
//! spaces apart, no borders, so `grep`, `awk` and `cut` work on it and a terminal shows it as
//! is.

use std::fmt;

/// A table built row by row and printed with [`fmt::Display`].
///
/// ```ignore
/// let mut table = Table::new(&["NAME", "STATE"]);
/// table.row(["blog", "active"]);
/// print!("{table}");
/// ```
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are empty, extra ones are dropped. Cells are made one line
    /// of printable text ([`crate::cli::clean_line`]): a cell may hold what a stranger wrote
    /// (an abuse report), which must not move the cursor or recolour the operator's terminal.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut row: Vec<String> = cells
            .into_iter()
            .take(self.headers.len())
            .map(|c| crate::cli::clean_line(c.as_ref()))
            .collect();
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = |row: &Vec<String>, i: usize| row[i].chars().count();
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|i| {
                self.rows
                    .iter()
                    .chain(std::iter::once(&self.headers))
                    .map(|row| width(row, i))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let pad = widths[i] - width(row, i);
                line.extend(std::iter::repeat_n(' ', pad));
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell_and_lines_have_no_trailing_spaces() {
        let mut table = Table::new(&["NAME", "STATE", "HOSTS"]);
        table.row(["blog", "active", "blog.example"]);
        table.row(["a-much-longer-name", "paused", ""]);
        assert_eq!(
            table.to_string(),
            "NAME                STATE   HOSTS\n\
             blog                active  blog.example\n\
             a-much-longer-name  paused\n"
        );
    }

    #[test]
    fn widths_count_characters_not_bytes() {
        let mut table = Table::new(&["A", "B"]);
        table.row(["héllo", "x"]);
        table.row(["ab", "y"]);
        assert_eq!(table.to_string(), "A      B\nhéllo  x\nab     y\n");
    }

    #[test]
    fn short_rows_are_padded_long_ones_cut_and_control_characters_defused() {
        let mut table = Table::new(&["ID", "DESCRIPTION"]);
        table.row(["1"]);
        table.row(["2", "two\nlines\x1b[2J", "extra"]);
        assert_eq!(table.to_string(), "ID  DESCRIPTION\n1\n2   two lines?[2J\n");
    }

    #[test]
    fn an_empty_table_prints_its_header() {
        let table = Table::new(&["SEQ", "ACTION"]);
        assert!(table.is_empty());
        assert_eq!(table.to_string(), "SEQ  ACTION\n");
    }
}
