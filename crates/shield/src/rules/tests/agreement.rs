//! Property test: for random expressions and random requests, [`Expr::eval`] agrees with a
//! straightforward interpreter written here over the generated tree.
//!
//! The tree is printed to text (keywords or aliases, random spacing and line breaks, only the
//! parentheses precedence needs plus some spare ones), so the lexer, the parser's precedence,
//! the type checker and the compiled evaluation are all checked against code that shares
//! nothing with them but the language's definition.

use super::Request;
use crate::rules::{Expr, RuleSet};
use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::{IpNet, Ipv4Net};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone)]
enum Rule {
    And(Box<Rule>, Box<Rule>),
    Or(Box<Rule>, Box<Rule>),
    Not(Box<Rule>),
    Ssl,
    Ip(IpCondition),
    Text(TextField, TextCondition),
}

#[derive(Debug, Clone, Copy)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone)]
enum IpCondition {
    Compare(Cmp, IpAddr),
    In(Vec<IpItem>),
}

#[derive(Debug, Clone)]
enum IpItem {
    Address(IpAddr),
    Network(IpNet),
}

#[derive(Debug, Clone)]
enum TextField {
    Host,
    Method,
    Path,
    Query,
    UserAgent,
    Cookie,
    /// The header's name as the rule spells it (any case).
    Header(&'static str),
}

#[derive(Debug, Clone)]
enum TextCondition {
    Compare(Cmp, String),
    CompareInteger(Cmp, i64),
    Contains(String),
    StartsWith(String),
    EndsWith(String),
    Matches(&'static str),
    InStrings(Vec<String>),
    InIntegers(Vec<i64>),
}

// ---- the straightforward interpreter ----

fn reference(rule: &Rule, request: &Request) -> bool {
    match rule {
        Rule::And(a, b) => reference(a, request) && reference(b, request),
        Rule::Or(a, b) => reference(a, request) || reference(b, request),
        Rule::Not(a) => !reference(a, request),
        Rule::Ssl => request.tls,
        Rule::Ip(condition) => ip_holds(condition, unmapped(request.ip)),
        Rule::Text(field, condition) => text_holds(condition, &read(field, request)),
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.octets() {
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d] => {
                IpAddr::V4(Ipv4Addr::new(a, b, c, d))
            }
            _ => ip,
        },
        IpAddr::V4(_) => ip,
    }
}

/// A network inside `::ffff:0:0/96` as the IPv4 network it maps.
fn unmapped_network(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let IpAddr::V4(v4) = unmapped(IpAddr::V6(v6.network()))
    {
        return IpNet::V4(Ipv4Net::new(v4, v6.prefix_len() - 96).expect("prefix fits"));
    }
    net
}

fn cmp_holds(cmp: Cmp, ordering: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match cmp {
        Cmp::Eq => ordering == Equal,
        Cmp::Ne => ordering != Equal,
        Cmp::Lt => ordering == Less,
        Cmp::Le => ordering != Greater,
        Cmp::Gt => ordering == Greater,
        Cmp::Ge => ordering != Less,
    }
}

fn ip_holds(condition: &IpCondition, client: IpAddr) -> bool {
    match condition {
        IpCondition::Compare(cmp, literal) => match (client, unmapped(*literal)) {
            (IpAddr::V4(a), IpAddr::V4(b)) => cmp_holds(*cmp, a.octets().cmp(&b.octets())),
            (IpAddr::V6(a), IpAddr::V6(b)) => cmp_holds(*cmp, a.octets().cmp(&b.octets())),
            _ => matches!(cmp, Cmp::Ne),
        },
        IpCondition::In(items) => items.iter().any(|item| match item {
            IpItem::Address(address) => unmapped(*address) == client,
            IpItem::Network(network) => unmapped_network(*network).contains(&client),
        }),
    }
}

fn read(field: &TextField, request: &Request) -> Vec<u8> {
    let joined = |name: &str, separator: &str| {
        let values: Vec<&[u8]> = request
            .headers
            .get_all(name.to_ascii_lowercase().as_str())
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        values.join(separator.as_bytes())
    };
    match field {
        TextField::Host => request.host.as_bytes().to_vec(),
        TextField::Method => request.method.as_bytes().to_vec(),
        TextField::Path => request.path.as_bytes().to_vec(),
        TextField::Query => request.query.as_bytes().to_vec(),
        TextField::UserAgent => joined("user-agent", ", "),
        TextField::Cookie => joined("cookie", "; "),
        TextField::Header(name) => joined(name, ", "),
    }
}

fn text_holds(condition: &TextCondition, value: &[u8]) -> bool {
    let number = || std::str::from_utf8(value).ok()?.parse::<i64>().ok();
    match condition {
        TextCondition::Compare(cmp, literal) => cmp_holds(*cmp, value.cmp(literal.as_bytes())),
        TextCondition::CompareInteger(cmp, literal) => {
            number().is_some_and(|n| cmp_holds(*cmp, n.cmp(literal)))
        }
        TextCondition::Contains(needle) => {
            needle.is_empty() || value.windows(needle.len()).any(|w| w == needle.as_bytes())
        }
        TextCondition::StartsWith(prefix) => value.starts_with(prefix.as_bytes()),
        TextCondition::EndsWith(suffix) => value.ends_with(suffix.as_bytes()),
        TextCondition::Matches(pattern) => {
            let text = std::str::from_utf8(value).expect("generated values are UTF-8");
            regex::Regex::new(pattern)
                .expect("pool patterns compile")
                .is_match(text)
        }
        TextCondition::InStrings(set) => set.iter().any(|s| s.as_bytes() == value),
        TextCondition::InIntegers(set) => number().is_some_and(|n| set.contains(&n)),
    }
}

// ---- printing a rule as text ----

/// Picks spellings and spacing; seeded by the generated case, so a failure reproduces.
struct Printer {
    state: u64,
    out: String,
}

impl Printer {
    fn chance(&mut self, one_in: u64) -> bool {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state
            .wrapping_mul(0x2545_f491_4f6c_dd1d)
            .is_multiple_of(one_in)
    }

    fn space(&mut self) {
        let space = if self.chance(6) {
            "\n  "
        } else if self.chance(6) {
            "\t"
        } else if self.chance(4) {
            "  "
        } else {
            " "
        };
        self.out.push_str(space);
    }

    /// A keyword, or its alias, which needs no space around it.
    fn operator(&mut self, keyword: &str, alias: &str) {
        if self.chance(2) {
            self.space();
            self.out.push_str(keyword);
            self.space();
        } else {
            if self.chance(2) {
                self.space();
            }
            self.out.push_str(alias);
            if self.chance(2) {
                self.space();
            }
        }
    }

    fn rule(&mut self, rule: &Rule, tightest_allowed: u8) {
        let needed = precedence(rule) < tightest_allowed;
        let parenthesised = needed || self.chance(10);
        if parenthesised {
            self.out.push('(');
        }
        match rule {
            // Left-associative: the right operand of the same operator needs parentheses.
            Rule::Or(a, b) => {
                self.rule(a, 1);
                self.operator("or", "||");
                self.rule(b, 2);
            }
            Rule::And(a, b) => {
                self.rule(a, 2);
                self.operator("and", "&&");
                self.rule(b, 3);
            }
            Rule::Not(a) => {
                if self.chance(2) {
                    self.out.push_str("not");
                    self.space();
                } else {
                    self.out.push('!');
                }
                self.rule(a, 3);
            }
            Rule::Ssl => self.out.push_str("ssl"),
            Rule::Ip(condition) => self.ip(condition),
            Rule::Text(field, condition) => {
                self.field(field);
                self.text(condition);
            }
        }
        if parenthesised {
            self.out.push(')');
        }
    }

    fn comparison(&mut self, cmp: Cmp) {
        let (keyword, alias) = match cmp {
            Cmp::Eq => ("eq", "=="),
            Cmp::Ne => ("ne", "!="),
            Cmp::Lt => ("lt", "<"),
            Cmp::Le => ("le", "<="),
            Cmp::Gt => ("gt", ">"),
            Cmp::Ge => ("ge", ">="),
        };
        self.operator(keyword, alias);
    }

    fn ip(&mut self, condition: &IpCondition) {
        self.out.push_str("ip.src");
        match condition {
            IpCondition::Compare(cmp, ip) => {
                self.comparison(*cmp);
                self.out.push_str(&ip.to_string());
            }
            IpCondition::In(items) => {
                self.space();
                self.out.push_str("in");
                self.space();
                let items: Vec<String> = items
                    .iter()
                    .map(|item| match item {
                        IpItem::Address(ip) => ip.to_string(),
                        IpItem::Network(net) => net.to_string(),
                    })
                    .collect();
                self.set(items);
            }
        }
    }

    fn field(&mut self, field: &TextField) {
        let name = match field {
            TextField::Host => "http.host",
            TextField::Method => "http.request.method",
            TextField::Path => "http.request.uri.path",
            TextField::Query => "http.request.uri.query",
            TextField::UserAgent => "http.user_agent",
            TextField::Cookie => "http.cookie",
            TextField::Header(name) => {
                self.out.push_str("http.request.headers[");
                self.out.push_str(&quoted(name));
                self.out.push(']');
                return;
            }
        };
        self.out.push_str(name);
    }

    fn text(&mut self, condition: &TextCondition) {
        let keyword = |printer: &mut Printer, keyword: &str| {
            printer.space();
            printer.out.push_str(keyword);
            printer.space();
        };
        match condition {
            TextCondition::Compare(cmp, literal) => {
                self.comparison(*cmp);
                self.out.push_str(&quoted(literal));
            }
            TextCondition::CompareInteger(cmp, literal) => {
                self.comparison(*cmp);
                self.out.push_str(&literal.to_string());
            }
            TextCondition::Contains(needle) => {
                keyword(self, "contains");
                self.out.push_str(&quoted(needle));
            }
            TextCondition::StartsWith(prefix) => {
                keyword(self, "starts_with");
                self.out.push_str(&quoted(prefix));
            }
            TextCondition::EndsWith(suffix) => {
                keyword(self, "ends_with");
                self.out.push_str(&quoted(suffix));
            }
            TextCondition::Matches(pattern) => {
                self.operator("matches", "~");
                self.out.push_str(&quoted(pattern));
            }
            TextCondition::InStrings(set) => {
                keyword(self, "in");
                self.set(set.iter().map(|s| quoted(s)).collect());
            }
            TextCondition::InIntegers(set) => {
                keyword(self, "in");
                self.set(set.iter().map(i64::to_string).collect());
            }
        }
    }

    fn set(&mut self, items: Vec<String>) {
        self.out.push('{');
        for (index, item) in items.iter().enumerate() {
            if index > 0 {
                if self.chance(2) {
                    self.out.push(',');
                }
                self.space();
            }
            self.out.push_str(item);
        }
        self.out.push('}');
    }
}

fn precedence(rule: &Rule) -> u8 {
    match rule {
        Rule::Or(..) => 1,
        Rule::And(..) => 2,
        Rule::Not(_) => 3,
        _ => 4,
    }
}

fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn printed(rule: &Rule, seed: u64) -> String {
    let mut printer = Printer {
        state: seed | 1,
        out: String::new(),
    };
    printer.rule(rule, 0);
    printer.out
}

// ---- generators ----

/// Pieces of text literals and request values are made of, so that comparisons often hit.
const PIECES: &[&str] = &[
    "",
    "a",
    "b",
    "ab",
    "GET",
    "POST",
    "/",
    "/admin",
    "x",
    "example.com",
    "10",
    "42",
    "-3",
    "+7",
    "007",
    " ",
    "q=1",
    "session=abc",
    "Mozilla/5.0",
    "curl",
    "é",
    "\"",
    "\\",
    ",",
    // The separators of repeated headers, so that joined values are told apart.
    ", ",
    "; ",
    "A",
];

const PATTERNS: &[&str] = &[
    "^/admin", "com$", "^[0-9]+$", "(?i)get", "a|b", "", "^$", "é", r"\d", "\"", r"\\", "^.{3}$",
    "; ",
];

/// Header names as rules spell them; requests send them lowercase.
const HEADERS: &[&str] = &["user-agent", "Cookie", "x-num", "Content-Length", "X-Empty"];

fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(PIECES), 0..3).prop_map(|p| p.concat())
}

fn integer() -> impl Strategy<Value = i64> {
    prop_oneof![4 => 0i64..50, 1 => Just(i64::MAX), 1 => 0i64..i64::MAX]
}

fn address() -> impl Strategy<Value = IpAddr> {
    let known = [
        "10.0.0.1",
        "10.0.0.2",
        "10.255.0.9",
        "192.168.1.1",
        "0.0.0.0",
        "255.255.255.255",
        "::",
        "::1",
        "2001:db8::1",
        "2001:db8::ffff",
        "fe80::1",
        "::ffff:10.0.0.1",
        "::ffff:192.168.1.1",
    ]
    .map(|ip| ip.parse::<IpAddr>().expect("an address"));
    prop_oneof![
        4 => proptest::sample::select(known.to_vec()),
        1 => any::<u32>().prop_map(|n| IpAddr::V4(Ipv4Addr::from(n))),
        1 => any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(n))),
    ]
}

fn network() -> impl Strategy<Value = IpNet> {
    let any_network = (address(), any::<u8>()).prop_map(|(ip, length)| {
        let longest = if ip.is_ipv4() { 33 } else { 129 };
        IpNet::new(ip, length % longest).expect("prefix fits")
    });
    // An IPv4 network written inside `::ffff:0:0/96`, which must match IPv4 clients.
    let mapped_network = (address(), 96u8..=128).prop_map(|(ip, length)| {
        let v4 = match ip {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(_) => Ipv4Addr::new(10, 0, 0, 1),
        };
        IpNet::new(IpAddr::V6(v4.to_ipv6_mapped()), length).expect("prefix fits")
    });
    prop_oneof![3 => any_network, 1 => mapped_network]
}

fn comparison() -> impl Strategy<Value = Cmp> {
    proptest::sample::select(vec![Cmp::Eq, Cmp::Ne, Cmp::Lt, Cmp::Le, Cmp::Gt, Cmp::Ge])
}

fn text_field() -> impl Strategy<Value = TextField> {
    prop_oneof![
        Just(TextField::Host),
        Just(TextField::Method),
        Just(TextField::Path),
        Just(TextField::Query),
        Just(TextField::UserAgent),
        Just(TextField::Cookie),
        proptest::sample::select(HEADERS).prop_map(TextField::Header),
    ]
}

/// Sets of up to 12 items: past the size below which sets are scanned rather than bisected.
fn text_condition() -> impl Strategy<Value = TextCondition> {
    prop_oneof![
        (comparison(), text()).prop_map(|(c, s)| TextCondition::Compare(c, s)),
        (comparison(), integer()).prop_map(|(c, n)| TextCondition::CompareInteger(c, n)),
        text().prop_map(TextCondition::Contains),
        text().prop_map(TextCondition::StartsWith),
        text().prop_map(TextCondition::EndsWith),
        proptest::sample::select(PATTERNS).prop_map(TextCondition::Matches),
        proptest::collection::vec(text(), 1..12).prop_map(TextCondition::InStrings),
        proptest::collection::vec(integer(), 1..12).prop_map(TextCondition::InIntegers),
    ]
}

fn ip_condition() -> impl Strategy<Value = IpCondition> {
    let item = prop_oneof![
        address().prop_map(IpItem::Address),
        network().prop_map(IpItem::Network),
    ];
    prop_oneof![
        (comparison(), address()).prop_map(|(c, ip)| IpCondition::Compare(c, ip)),
        proptest::collection::vec(item, 1..12).prop_map(IpCondition::In),
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    let leaf = prop_oneof![
        1 => Just(Rule::Ssl),
        3 => ip_condition().prop_map(Rule::Ip),
        6 => (text_field(), text_condition()).prop_map(|(f, c)| Rule::Text(f, c)),
    ];
    leaf.prop_recursive(6, 48, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Rule::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Rule::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| Rule::Not(Box::new(a))),
        ]
    })
}

/// A rule of the shape a rule set matches together with others on its field: one `contains`,
/// `starts_with`, `ends_with`, `eq`, `in` or `matches`, or an `or` of them, on one of a few
/// fields.
fn literal_rule() -> impl Strategy<Value = Rule> {
    let field = prop_oneof![
        Just(TextField::Path),
        Just(TextField::UserAgent),
        Just(TextField::Header("x-num")),
    ];
    let condition = prop_oneof![
        text().prop_map(TextCondition::Contains),
        text().prop_map(TextCondition::StartsWith),
        text().prop_map(TextCondition::EndsWith),
        text().prop_map(|literal| TextCondition::Compare(Cmp::Eq, literal)),
        proptest::collection::vec(text(), 1..12).prop_map(TextCondition::InStrings),
        proptest::sample::select(PATTERNS).prop_map(TextCondition::Matches),
    ];
    (field, proptest::collection::vec(condition, 1..4)).prop_map(|(field, conditions)| {
        conditions
            .into_iter()
            .map(|condition| Rule::Text(field.clone(), condition))
            .reduce(|a, b| Rule::Or(Box::new(a), Box::new(b)))
            .expect("at least one condition")
    })
}

/// A rule of the shapes a rule set answers from its triggers alone: an `or` of one to three
/// conditions of any kind, text (on any field, with any operator) or address, on fields
/// other rules of the set test too.
fn triggered_rule() -> impl Strategy<Value = Rule> {
    let condition = prop_oneof![
        3 => (text_field(), text_condition()).prop_map(|(f, c)| Rule::Text(f, c)),
        2 => ip_condition().prop_map(Rule::Ip),
    ];
    proptest::collection::vec(condition, 1..4).prop_map(|conditions| {
        conditions
            .into_iter()
            .reduce(|a, b| Rule::Or(Box::new(a), Box::new(b)))
            .expect("at least one condition")
    })
}

/// An `and` chain, possibly negated as `not (a or b)` or `not (a and b)`, of rules of any
/// shape with a triggered one among them: evaluated when a trigger fires, the one its most
/// selective term gives, or on every request when it has none.
fn chained_rule() -> impl Strategy<Value = Rule> {
    (rule(), triggered_rule(), rule(), 0..4u8).prop_map(|(a, triggered, b, shape)| {
        let and = |x: Rule, y: Rule| Rule::And(Box::new(x), Box::new(y));
        let or = |x: Rule, y: Rule| Rule::Or(Box::new(x), Box::new(y));
        let not = |x: Rule| Rule::Not(Box::new(x));
        match shape {
            0 => and(and(a, triggered), b),
            1 => and(triggered, not(b)),
            2 => not(or(not(triggered), a)),
            _ => not(and(not(triggered), not(b))),
        }
    })
}

fn request() -> impl Strategy<Value = Request> {
    // Also a header no rule names, which the one pass over the request's headers passes by.
    let name = prop_oneof![
        6 => proptest::sample::select(HEADERS),
        1 => Just("accept"),
    ];
    let header = (name, text());
    (
        address(),
        text(),
        text(),
        text(),
        text(),
        proptest::collection::vec(header, 0..8),
        any::<bool>(),
    )
        .prop_map(|(ip, host, method, path, query, headers, tls)| {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                let name = HeaderName::from_bytes(name.as_bytes()).expect("a header name");
                let value = HeaderValue::from_str(&value).expect("pieces are valid values");
                map.append(name, value);
            }
            Request {
                ip,
                host,
                method,
                path,
                query,
                headers: map,
                tls,
            }
        })
}

proptest! {
    // A failure prints its minimal case; no regression file is written into the source tree.
    #![proptest_config(ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn evaluation_agrees_with_a_straightforward_interpreter(
        rule in rule(),
        seed in any::<u64>(),
        requests in proptest::collection::vec(request(), 4..10),
    ) {
        let text = printed(&rule, seed);
        let expr = Expr::parse(&text).map_err(|error| {
            TestCaseError::fail(format!("{text:?} does not parse: {error}"))
        })?;
        for request in &requests {
            prop_assert_eq!(
                expr.eval(&request.facts()),
                reference(&rule, request),
                "{} on {:?}",
                text,
                request
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// A rule set reads the headers in one pass, tests the conditions of many rules together
    /// (text per field, addresses all at once) and evaluates only the rules whose trigger
    /// fired: what it says of each rule must be what that rule says alone.
    #[test]
    fn a_rule_set_agrees_with_each_rule_alone(
        rules in proptest::collection::vec(
            (
                prop_oneof![
                    3 => literal_rule(),
                    3 => triggered_rule(),
                    1 => (rule(), literal_rule(), rule()).prop_map(|(a, literal, b)| {
                        let first = Rule::And(Box::new(a), Box::new(literal));
                        Rule::And(Box::new(first), Box::new(b))
                    }),
                    2 => chained_rule(),
                    1 => rule(),
                ],
                any::<u64>(),
            ),
            1..24,
        ),
        requests in proptest::collection::vec(request(), 4..10),
    ) {
        let exprs: Vec<Expr> = rules
            .iter()
            .map(|(rule, seed)| {
                let text = printed(rule, *seed);
                Expr::parse(&text).map_err(|error| {
                    TestCaseError::fail(format!("{text:?} does not parse: {error}"))
                })
            })
            .collect::<Result<_, _>>()?;
        let set = RuleSet::new(&exprs);
        for request in &requests {
            let alone: Vec<bool> = exprs.iter().map(|expr| expr.eval(&request.facts())).collect();
            prop_assert_eq!(set.matched(&request.facts()), alone, "on {:?}", request);
        }
    }
}
