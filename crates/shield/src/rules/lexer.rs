//! Text to tokens, each with the line and column it starts at.
//!
//! Literals are decoded here: strings unescaped, integers and addresses parsed. A bare address
//! is a run of the characters that make up field names too (`ip.src`, `10.0.0.1`,
//! `2001:db8::/32`), so a word is told apart by its shape: a colon or a leading digit makes it
//! a literal, a leading letter a name.

use super::RuleError;
use super::eval::Comparison;
use ipnet::IpNet;
use std::net::IpAddr;

/// A place in the expression text: 1-based line and column, the column counted in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub fn error(self, message: impl Into<String>) -> RuleError {
        RuleError {
            line: self.line,
            column: self.column,
            message: message.into(),
        }
    }
}

/// The operators that sit between a field and a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operator {
    Compare(Comparison),
    Contains,
    Matches,
    StartsWith,
    EndsWith,
    In,
}

impl Operator {
    /// The operator's keyword, as error messages name it.
    pub fn keyword(self) -> &'static str {
        match self {
            Operator::Compare(Comparison::Eq) => "eq",
            Operator::Compare(Comparison::Ne) => "ne",
            Operator::Compare(Comparison::Lt) => "lt",
            Operator::Compare(Comparison::Le) => "le",
            Operator::Compare(Comparison::Gt) => "gt",
            Operator::Compare(Comparison::Ge) => "ge",
            Operator::Contains => "contains",
            Operator::Matches => "matches",
            Operator::StartsWith => "starts_with",
            Operator::EndsWith => "ends_with",
            Operator::In => "in",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Token {
    /// A word starting with a letter that is not an operator: a field name, or a mistake.
    Name,
    Str(String),
    Int(i64),
    Ip(IpAddr),
    Cidr(IpNet),
    Op(Operator),
    Not,
    And,
    Or,
    OpenParen,
    CloseParen,
    OpenSet,
    CloseSet,
    OpenIndex,
    CloseIndex,
    Comma,
    End,
}

/// A token, where it starts, and its text (for error messages and names).
#[derive(Debug, Clone)]
pub(super) struct Lexed<'s> {
    pub token: Token,
    pub at: Pos,
    pub text: &'s str,
}

impl Lexed<'_> {
    /// The token as an error message names it.
    pub fn describe(&self) -> String {
        match self.token {
            Token::End => "the end of the expression".to_owned(),
            _ => format!("`{}`", shown(self.text)),
        }
    }
}

/// `text` cut to a length that fits in an error message.
pub(super) fn shown(text: &str) -> String {
    const LONGEST: usize = 40;
    match text.char_indices().nth(LONGEST) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

pub(super) struct Lexer<'s> {
    text: &'s str,
    offset: usize,
    line: usize,
    column: usize,
}

impl<'s> Lexer<'s> {
    pub fn new(text: &'s str) -> Lexer<'s> {
        Lexer {
            text,
            offset: 0,
            line: 1,
            column: 1,
        }
    }

    pub fn next_token(&mut self) -> Result<Lexed<'s>, RuleError> {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
        let at = self.pos();
        let start = self.offset;
        let token = match self.peek() {
            None => Token::End,
            Some('"') => self.string(at)?,
            Some(c) if is_word_char(c) => self.word(at)?,
            Some(_) => self.punctuation(at)?,
        };
        Ok(Lexed {
            token,
            at,
            text: &self.text[start..self.offset],
        })
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    fn peek(&self) -> Option<char> {
        self.text[self.offset..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.offset += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    /// Consumes `next` if it comes next.
    fn eat(&mut self, next: char) -> bool {
        let found = self.peek() == Some(next);
        if found {
            self.bump();
        }
        found
    }

    fn punctuation(&mut self, at: Pos) -> Result<Token, RuleError> {
        let Some(c) = self.bump() else {
            return Ok(Token::End);
        };
        let compare = |c| Token::Op(Operator::Compare(c));
        Ok(match c {
            '(' => Token::OpenParen,
            ')' => Token::CloseParen,
            '{' => Token::OpenSet,
            '}' => Token::CloseSet,
            '[' => Token::OpenIndex,
            ']' => Token::CloseIndex,
            ',' => Token::Comma,
            '~' => Token::Op(Operator::Matches),
            '=' if self.eat('=') => compare(Comparison::Eq),
            '!' if self.eat('=') => compare(Comparison::Ne),
            '!' => Token::Not,
            '<' if self.eat('=') => compare(Comparison::Le),
            '<' => compare(Comparison::Lt),
            '>' if self.eat('=') => compare(Comparison::Ge),
            '>' => compare(Comparison::Gt),
            '&' if self.eat('&') => Token::And,
            '|' if self.eat('|') => Token::Or,
            '=' => return Err(at.error("unexpected `=`: equality is `eq` or `==`")),
            '&' => return Err(at.error("unexpected `&`: the operator is `and` or `&&`")),
            '|' => return Err(at.error("unexpected `|`: the operator is `or` or `||`")),
            other => {
                let shown = other.escape_debug();
                return Err(at.error(format!("unexpected character `{shown}`")));
            }
        })
    }

    /// A double-quoted string. Only `\"` and `\\` are escapes, as in Cloudflare's language; any
    /// other backslash is refused rather than guessed at, since regexes are where it shows up.
    fn string(&mut self, at: Pos) -> Result<Token, RuleError> {
        self.bump();
        let mut value = String::new();
        loop {
            let escape_at = self.pos();
            match self.bump() {
                None => return Err(at.error("unterminated string: no closing `\"`")),
                Some('"') => return Ok(Token::Str(value)),
                Some('\\') => match self.bump() {
                    Some(c @ ('"' | '\\')) => value.push(c),
                    None => return Err(at.error("unterminated string: no closing `\"`")),
                    Some(other) => {
                        return Err(escape_at.error(format!(
                            "unknown escape `\\{other}`: strings know only `\\\"` and `\\\\` \
                             (a regex's `\\{other}` is written `\\\\{other}`)"
                        )));
                    }
                },
                Some(c) => value.push(c),
            }
        }
    }

    fn word(&mut self, at: Pos) -> Result<Token, RuleError> {
        let start = self.offset;
        while self.peek().is_some_and(is_word_char) {
            self.bump();
        }
        let word = &self.text[start..self.offset];
        if let Some(token) = keyword_token(word) {
            return Ok(token);
        }
        let first = word.chars().next().unwrap_or(' ');
        if word.contains(':') || first.is_ascii_digit() {
            return literal(word, at);
        }
        if first.is_ascii_alphabetic() || first == '_' {
            return Ok(Token::Name);
        }
        Err(at.error(format!(
            "`{}` is neither a field, an operator nor a value (strings are quoted)",
            shown(word)
        )))
    }
}

/// The characters of field names, operator keywords, integers, addresses and CIDRs.
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/')
}

pub(super) fn keyword_token(word: &str) -> Option<Token> {
    let compare = |c| Some(Token::Op(Operator::Compare(c)));
    match word {
        "eq" => compare(Comparison::Eq),
        "ne" => compare(Comparison::Ne),
        "lt" => compare(Comparison::Lt),
        "le" => compare(Comparison::Le),
        "gt" => compare(Comparison::Gt),
        "ge" => compare(Comparison::Ge),
        "contains" => Some(Token::Op(Operator::Contains)),
        "matches" => Some(Token::Op(Operator::Matches)),
        "starts_with" => Some(Token::Op(Operator::StartsWith)),
        "ends_with" => Some(Token::Op(Operator::EndsWith)),
        "in" => Some(Token::Op(Operator::In)),
        "not" => Some(Token::Not),
        "and" => Some(Token::And),
        "or" => Some(Token::Or),
        _ => None,
    }
}

/// An integer, an address or a CIDR. Leading zeros in IPv4 octets are refused (by the
/// standard library's parser): `010.0.0.1` is octal to some tools and decimal to others.
fn literal(word: &str, at: Pos) -> Result<Token, RuleError> {
    if word.bytes().all(|b| b.is_ascii_digit()) {
        return word
            .parse()
            .map(Token::Int)
            .map_err(|_| at.error(format!("integer `{}` is too large", shown(word))));
    }
    if word.contains('/') {
        return word.parse().map(Token::Cidr).map_err(|_| {
            at.error(format!(
                "`{}` is not a CIDR (an address, `/` and a prefix length)",
                shown(word)
            ))
        });
    }
    word.parse().map(Token::Ip).map_err(|_| {
        at.error(format!(
            "`{}` is not a number or an IP address",
            shown(word)
        ))
    })
}
