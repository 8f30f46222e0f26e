//! Tokens to a compiled tree, by recursive descent over this grammar:
//!
//! ```text
//! expression  := conjunction (("or" | "||") conjunction)*
//! conjunction := unary (("and" | "&&") unary)*
//! unary       := ("not" | "!")* primary
//! primary     := "(" expression ")" | condition
//! condition   := "ssl" | field operator value
//! field       := name | "http.request.headers" "[" string "]"
//! value       := literal | "{" (literal ","?)* "}"
//! ```
//!
//! The parser looks at a token before moving past it, so an error always names the first token
//! that is wrong, not a later one the lexer trips over. It recurses once per parenthesis (four
//! frames), never per `and`, `or` or `not`, and parentheses are capped at [`MAX_NESTING`].

use super::compile::{self, Literal, Positions, SSL_STANDS_ALONE, Value};
use super::eval::Node;
use super::field::{self, Field, Named, TextField};
use super::lexer::{Lexed, Lexer, Pos, Token, keyword_token, shown};
use super::{MAX_EXPRESSION_BYTES, MAX_NESTING, RuleError};
use http::HeaderName;

pub(super) fn parse(text: &str) -> Result<Node, RuleError> {
    if text.len() > MAX_EXPRESSION_BYTES {
        return Err(position_of_byte(text, MAX_EXPRESSION_BYTES).error(format!(
            "expression longer than {MAX_EXPRESSION_BYTES} bytes: split it across rules"
        )));
    }
    let mut parser = Parser::new(text)?;
    if parser.current.token == Token::End {
        return Err(parser.current.at.error("empty expression"));
    }
    let node = parser.expression()?;
    if parser.current.token == Token::CloseParen {
        return Err(parser.current.at.error("unmatched `)`: no `(` before it"));
    }
    if parser.current.token != Token::End {
        return Err(parser.current.at.error(format!(
            "expected `and`, `or` or the end of the expression, found {}",
            parser.current.describe()
        )));
    }
    Ok(node)
}

struct Parser<'s> {
    lexer: Lexer<'s>,
    /// The next token, not yet consumed.
    current: Lexed<'s>,
    /// Parentheses open around `current`.
    depth: usize,
}

impl<'s> Parser<'s> {
    fn new(text: &'s str) -> Result<Parser<'s>, RuleError> {
        let mut lexer = Lexer::new(text);
        let current = lexer.next_token()?;
        Ok(Parser {
            lexer,
            current,
            depth: 0,
        })
    }

    /// Moves to the next token, returning the one moved past.
    fn advance(&mut self) -> Result<Lexed<'s>, RuleError> {
        let next = self.lexer.next_token()?;
        Ok(std::mem::replace(&mut self.current, next))
    }

    fn expect(&mut self, token: Token, what: &str) -> Result<Lexed<'s>, RuleError> {
        if self.current.token != token {
            return Err(self.current.at.error(format!(
                "expected {what}, found {}",
                self.current.describe()
            )));
        }
        self.advance()
    }

    fn expression(&mut self) -> Result<Node, RuleError> {
        let mut terms = vec![self.conjunction()?];
        while self.current.token == Token::Or {
            self.advance()?;
            terms.push(self.conjunction()?);
        }
        Ok(flattened(terms, Node::Any))
    }

    fn conjunction(&mut self) -> Result<Node, RuleError> {
        let mut terms = vec![self.unary()?];
        while self.current.token == Token::And {
            self.advance()?;
            terms.push(self.unary()?);
        }
        Ok(flattened(terms, Node::All))
    }

    /// `not` repeated any number of times is a loop, not recursion: `not not x` is `x`.
    fn unary(&mut self) -> Result<Node, RuleError> {
        let mut negated = false;
        while self.current.token == Token::Not {
            self.advance()?;
            negated = !negated;
        }
        let node = self.primary()?;
        Ok(if negated {
            Node::Not(Box::new(node))
        } else {
            node
        })
    }

    fn primary(&mut self) -> Result<Node, RuleError> {
        match self.current.token {
            Token::OpenParen => {
                if self.depth == MAX_NESTING {
                    return Err(self.current.at.error(format!(
                        "parentheses nested deeper than {MAX_NESTING} levels"
                    )));
                }
                let open = self.advance()?.at;
                self.depth += 1;
                let node = self.expression()?;
                self.depth -= 1;
                let closing = format!(
                    "`)` to close the `(` at line {}, column {}",
                    open.line, open.column
                );
                self.expect(Token::CloseParen, &closing)?;
                Ok(node)
            }
            Token::Name => self.condition(),
            _ => Err(self.current.at.error(format!(
                "expected a field, `not` or `(`, found {}",
                self.current.describe()
            ))),
        }
    }

    fn condition(&mut self) -> Result<Node, RuleError> {
        let field = match field::named(self.current.text) {
            Some(Named::Field(field)) => {
                self.advance()?;
                field
            }
            Some(Named::Headers) => {
                self.advance()?;
                self.header()?
            }
            None => return Err(self.current.at.error(unknown_name(self.current.text))),
        };
        let Token::Op(operator) = self.current.token else {
            return match field {
                Field::Tls => Ok(Node::Tls),
                _ => Err(self.current.at.error(format!(
                    "expected an operator after `{field}` (`eq`, `contains`, `in`, ...), found {}",
                    self.current.describe()
                ))),
            };
        };
        if let Field::Tls = field {
            return Err(self.current.at.error(SSL_STANDS_ALONE));
        }
        let operator_at = self.advance()?.at;
        let value_at = self.current.at;
        let value = self.value()?;
        let at = Positions {
            operator: operator_at,
            value: value_at,
        };
        compile::condition(field, operator, value, at)
    }

    /// `["name"]` after `http.request.headers`.
    fn header(&mut self) -> Result<Field, RuleError> {
        self.expect(
            Token::OpenIndex,
            "`[` and a quoted header name, as in http.request.headers[\"x-name\"]",
        )?;
        let Token::Str(name) = &self.current.token else {
            return Err(self.current.at.error(format!(
                "expected a quoted header name, found {}",
                self.current.describe()
            )));
        };
        // `from_bytes` lowercases: header names are case-insensitive (RFC 9110 §5.1).
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            self.current
                .at
                .error(format!("`{}` is not a valid header name", shown(name)))
        })?;
        self.advance()?;
        self.expect(Token::CloseIndex, "`]`")?;
        Ok(Field::Text(TextField::Header(name)))
    }

    fn value(&mut self) -> Result<Value, RuleError> {
        if self.current.token != Token::OpenSet {
            return Ok(Value::One(self.literal()?));
        }
        let open = self.advance()?.at;
        let mut items = Vec::new();
        loop {
            match self.current.token {
                Token::CloseSet => {
                    self.advance()?;
                    return Ok(Value::Set(items));
                }
                Token::End => {
                    return Err(self.current.at.error(format!(
                        "unclosed set: no `}}` for the `{{` at line {}, column {}",
                        open.line, open.column
                    )));
                }
                _ => {
                    let at = self.current.at;
                    items.push((self.literal()?, at));
                    if self.current.token == Token::Comma {
                        self.advance()?;
                    }
                }
            }
        }
    }

    fn literal(&mut self) -> Result<Literal, RuleError> {
        let literal = match &mut self.current.token {
            Token::Str(s) => Literal::Str(std::mem::take(s)),
            Token::Int(n) => Literal::Int(*n),
            Token::Ip(ip) => Literal::Ip(*ip),
            Token::Cidr(net) => Literal::Cidr(*net),
            _ => {
                return Err(self.current.at.error(format!(
                    "expected a value (a quoted string, an integer, an IP address or a CIDR), \
                     found {}",
                    self.current.describe()
                )));
            }
        };
        self.advance()?;
        Ok(literal)
    }
}

/// One term as itself; several as one flat `and` or `or` node.
fn flattened(mut terms: Vec<Node>, combine: fn(Box<[Node]>) -> Node) -> Node {
    if terms.len() == 1
        && let Some(only) = terms.pop()
    {
        return only;
    }
    combine(terms.into())
}

fn unknown_name(name: &str) -> String {
    let lowercase = name.to_ascii_lowercase();
    let known_lowercase = keyword_token(&lowercase).is_some() || field::named(&lowercase).is_some();
    if lowercase != name && known_lowercase {
        format!(
            "unknown field `{}`: fields and operators are lowercase (`{lowercase}`)",
            shown(name)
        )
    } else {
        format!("unknown field `{}`", shown(name))
    }
}

/// The line and column of the character holding byte `offset` of `text`.
fn position_of_byte(text: &str, offset: usize) -> Pos {
    let mut at = Pos { line: 1, column: 1 };
    for (index, c) in text.char_indices() {
        if index + c.len_utf8() > offset {
            break;
        }
        if c == '\n' {
            at.line += 1;
            at.column = 1;
        } else {
            at.column += 1;
        }
    }
    at
}
