//! The part of CEL (Common Expression Language) that access log filters use, evaluated
//! against one request: Istio's Telemetry `accessLogging[].filter.expression` arrives as Envoy's
//! `envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter`.
//!
//! Supported: int, string, bool and null literals; the attributes `response.code`,
//! `response.grpc_status`, `response.flags`, `response.size`, `response.total_size`,
//! `request.method`, `request.path`, `request.host`, `request.protocol`, `request.id`,
//! `request.total_size`, `request.duration` (milliseconds), `request.headers['name']`,
//! `response.headers['name']`, `connection.mtls`, `upstream.address`, `xds.cluster_name`;
//! `==`, `!=`, `<`, `<=`, `>`, `>=`, `&&`, `||`, `!`, parentheses, `in [..]`. As in Envoy, an
//! expression that fails to evaluate (an unknown attribute, a missing header) does not log.

use std::fmt;

/// A parse error, with the offending position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CelError(pub String);

impl fmt::Display for CelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value an expression computes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// Integers (codes, sizes).
    Int(i64),
    /// Strings.
    Str(String),
    /// Booleans.
    Bool(bool),
    /// `null`.
    Null,
    /// A list literal (for `in`).
    List(Vec<Value>),
}

/// Where attribute values come from.
pub trait Attributes {
    /// The value of a dotted attribute path (`response.code`), `None` when unknown.
    fn attribute(&self, path: &str) -> Option<Value>;
    /// A header of the request (`request.headers[name]`) or the response.
    fn header(&self, response: bool, name: &str) -> Option<Value>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    In,
}

/// A parsed expression.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expr {
    /// A literal.
    Lit(Value),
    /// A dotted attribute path.
    Attr(String),
    /// `request.headers['x']` / `response.headers['x']`.
    Header(bool, String),
    /// A list literal.
    List(Vec<Expr>),
    /// `!e`.
    Not(Box<Expr>),
    /// A binary operation.
    Bin(Box<Expr>, BinOp, Box<Expr>),
}

/// A binary operator (public wrapper so that [`Expr`] can be inspected).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BinOp(Op);

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Int(i64),
    Str(String),
    P(&'static str),
}

fn lex(src: &str) -> Result<Vec<Tok>, CelError> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i < b.len() && (b[i] == b'u' || b[i] == b'U') {
                i += 1;
            }
            let n = src[start..i].trim_end_matches(['u', 'U']);
            out.push(Tok::Int(n.parse().map_err(|_| {
                CelError(format!("number {n:?} at {start} is out of range"))
            })?));
        } else if c == b'\'' || c == b'"' {
            let start = i;
            i += 1;
            let mut s = String::new();
            loop {
                match b.get(i) {
                    None => return Err(CelError(format!("unterminated string at {start}"))),
                    Some(q) if *q == c => break,
                    Some(b'\\') => {
                        if let Some(n) = src.get(i + 1..).and_then(|r| r.chars().next()) {
                            s.push(n);
                            i += 1 + n.len_utf8();
                        } else {
                            i += 1;
                        }
                    }
                    Some(_) => {
                        let ch = src[i..].chars().next().unwrap_or('\u{fffd}');
                        s.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            i += 1;
            out.push(Tok::Str(s));
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                i += 1;
            }
            out.push(Tok::Ident(src[start..i].to_owned()));
        } else {
            const PUNCT: [&str; 14] = [
                "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "(", ")", "[", "]", ",",
            ];
            match PUNCT.iter().find(|p| src[i..].starts_with(**p)) {
                Some(p) => {
                    out.push(Tok::P(p));
                    i += p.len();
                }
                None => {
                    return Err(CelError(format!(
                        "unexpected {:?} at {i}",
                        src[i..].chars().next().unwrap_or(' ')
                    )));
                }
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn eat(&mut self, p: &str) -> bool {
        if matches!(self.peek(), Some(Tok::P(q)) if *q == p) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, p: &str) -> Result<(), CelError> {
        if self.eat(p) {
            Ok(())
        } else {
            Err(CelError(format!("expected {p:?} at token {}", self.pos)))
        }
    }

    fn or(&mut self) -> Result<Expr, CelError> {
        let mut l = self.and()?;
        while self.eat("||") {
            let r = self.and()?;
            l = Expr::Bin(Box::new(l), BinOp(Op::Or), Box::new(r));
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Expr, CelError> {
        let mut l = self.rel()?;
        while self.eat("&&") {
            let r = self.rel()?;
            l = Expr::Bin(Box::new(l), BinOp(Op::And), Box::new(r));
        }
        Ok(l)
    }

    fn rel(&mut self) -> Result<Expr, CelError> {
        let l = self.unary()?;
        let op = match self.peek() {
            Some(Tok::P("==")) => Op::Eq,
            Some(Tok::P("!=")) => Op::Ne,
            Some(Tok::P("<")) => Op::Lt,
            Some(Tok::P("<=")) => Op::Le,
            Some(Tok::P(">")) => Op::Gt,
            Some(Tok::P(">=")) => Op::Ge,
            Some(Tok::Ident(i)) if i == "in" => Op::In,
            _ => return Ok(l),
        };
        self.pos += 1;
        let r = self.unary()?;
        Ok(Expr::Bin(Box::new(l), BinOp(op), Box::new(r)))
    }

    fn unary(&mut self) -> Result<Expr, CelError> {
        if self.eat("!") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, CelError> {
        let t = self
            .toks
            .get(self.pos)
            .cloned()
            .ok_or_else(|| CelError("unexpected end of expression".into()))?;
        self.pos += 1;
        match t {
            Tok::Int(n) => Ok(Expr::Lit(Value::Int(n))),
            Tok::Str(s) => Ok(Expr::Lit(Value::Str(s))),
            Tok::P("(") => {
                let e = self.or()?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::P("[") => {
                let mut items = Vec::new();
                if !self.eat("]") {
                    loop {
                        items.push(self.or()?);
                        if self.eat("]") {
                            break;
                        }
                        self.expect(",")?;
                    }
                }
                Ok(Expr::List(items))
            }
            Tok::Ident(id) => match id.as_str() {
                "true" => Ok(Expr::Lit(Value::Bool(true))),
                "false" => Ok(Expr::Lit(Value::Bool(false))),
                "null" => Ok(Expr::Lit(Value::Null)),
                "request.headers" | "response.headers" => {
                    self.expect("[")?;
                    let name = match self.toks.get(self.pos).cloned() {
                        Some(Tok::Str(s)) => s,
                        _ => return Err(CelError(format!("{id}[...] needs a string key"))),
                    };
                    self.pos += 1;
                    self.expect("]")?;
                    Ok(Expr::Header(
                        id.starts_with("response"),
                        name.to_ascii_lowercase(),
                    ))
                }
                _ => {
                    if !KNOWN.contains(&id.as_str()) {
                        return Err(CelError(format!(
                            "attribute {id:?} is not supported by weft (supported: {})",
                            KNOWN.join(", ")
                        )));
                    }
                    Ok(Expr::Attr(id))
                }
            },
            Tok::P(p) => Err(CelError(format!("unexpected {p:?}"))),
        }
    }
}

/// The attributes an expression may name.
pub const KNOWN: &[&str] = &[
    "response.code",
    "response.grpc_status",
    "response.flags",
    "response.size",
    "response.total_size",
    "request.method",
    "request.path",
    "request.url_path",
    "request.host",
    "request.protocol",
    "request.id",
    "request.size",
    "request.total_size",
    "request.duration",
    "connection.mtls",
    "upstream.address",
    "xds.cluster_name",
];

/// Parses an expression.
pub fn parse(src: &str) -> Result<Expr, CelError> {
    let toks = lex(src)?;
    let mut p = Parser { toks, pos: 0 };
    let e = p.or()?;
    if p.pos != p.toks.len() {
        return Err(CelError(format!(
            "unexpected {:?} after the expression",
            p.toks[p.pos]
        )));
    }
    Ok(e)
}

impl Value {
    /// The value as a metric label: strings as they are, numbers and booleans in CEL's text.
    pub fn label(&self) -> String {
        match self {
            Value::Int(i) => i.to_string(),
            Value::Str(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Null => String::new(),
            Value::List(_) => String::new(),
        }
    }
}

impl Expr {
    /// Evaluates to a value; `None` is an evaluation error.
    pub fn eval(&self, a: &dyn Attributes) -> Option<Value> {
        Some(match self {
            Expr::Lit(v) => v.clone(),
            Expr::Attr(p) => a.attribute(p)?,
            Expr::Header(resp, n) => a.header(*resp, n)?,
            Expr::List(items) => Value::List(
                items
                    .iter()
                    .map(|e| e.eval(a))
                    .collect::<Option<Vec<_>>>()?,
            ),
            Expr::Not(e) => match e.eval(a)? {
                Value::Bool(b) => Value::Bool(!b),
                _ => return None,
            },
            Expr::Bin(l, BinOp(Op::And), r) => match l.eval(a) {
                Some(Value::Bool(false)) => Value::Bool(false),
                lv => match (lv, r.eval(a)) {
                    (_, Some(Value::Bool(false))) => Value::Bool(false),
                    (Some(Value::Bool(true)), Some(Value::Bool(true))) => Value::Bool(true),
                    _ => return None,
                },
            },
            Expr::Bin(l, BinOp(Op::Or), r) => match l.eval(a) {
                Some(Value::Bool(true)) => Value::Bool(true),
                lv => match (lv, r.eval(a)) {
                    (_, Some(Value::Bool(true))) => Value::Bool(true),
                    (Some(Value::Bool(false)), Some(Value::Bool(false))) => Value::Bool(false),
                    _ => return None,
                },
            },
            Expr::Bin(l, BinOp(op), r) => {
                let (lv, rv) = (l.eval(a)?, r.eval(a)?);
                Value::Bool(match (op, &lv, &rv) {
                    (Op::Eq, _, _) => lv == rv,
                    (Op::Ne, _, _) => lv != rv,
                    (Op::In, _, Value::List(items)) => items.contains(&lv),
                    (Op::Lt, Value::Int(x), Value::Int(y)) => x < y,
                    (Op::Le, Value::Int(x), Value::Int(y)) => x <= y,
                    (Op::Gt, Value::Int(x), Value::Int(y)) => x > y,
                    (Op::Ge, Value::Int(x), Value::Int(y)) => x >= y,
                    (Op::Lt, Value::Str(x), Value::Str(y)) => x < y,
                    (Op::Le, Value::Str(x), Value::Str(y)) => x <= y,
                    (Op::Gt, Value::Str(x), Value::Str(y)) => x > y,
                    (Op::Ge, Value::Str(x), Value::Str(y)) => x >= y,
                    _ => return None,
                })
            }
        })
    }

    /// Whether the expression holds (errors and non-booleans do not).
    pub fn matches(&self, a: &dyn Attributes) -> bool {
        matches!(self.eval(a), Some(Value::Bool(true)))
    }

    /// Request headers the expression reads.
    pub fn request_headers(&self, out: &mut Vec<String>) {
        match self {
            Expr::Header(false, n) => out.push(n.clone()),
            Expr::Not(e) => e.request_headers(out),
            Expr::Bin(l, _, r) => {
                l.request_headers(out);
                r.request_headers(out);
            }
            Expr::List(items) => items.iter().for_each(|e| e.request_headers(out)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct A(i64, &'static str);
    impl Attributes for A {
        fn attribute(&self, path: &str) -> Option<Value> {
            match path {
                "response.code" => Some(Value::Int(self.0)),
                "request.method" => Some(Value::Str(self.1.into())),
                "connection.mtls" => Some(Value::Bool(false)),
                _ => None,
            }
        }
        fn header(&self, _: bool, name: &str) -> Option<Value> {
            (name == "x-debug").then(|| Value::Str("1".into()))
        }
    }

    #[test]
    fn istio_common_expressions() {
        let e = parse("response.code >= 400").unwrap();
        assert!(e.matches(&A(503, "GET")));
        assert!(!e.matches(&A(200, "GET")));
        let e = parse("response.code >= 400 || request.headers['X-Debug'] == '1'").unwrap();
        assert!(e.matches(&A(200, "GET")));
        let e = parse("!connection.mtls && request.method in ['GET', \"HEAD\"]").unwrap();
        assert!(e.matches(&A(200, "GET")));
        assert!(!e.matches(&A(200, "POST")));
        // A missing header is an evaluation error: no log.
        let e = parse("request.headers['x-other'] == '1'").unwrap();
        assert!(!e.matches(&A(200, "GET")));
        assert!(parse("response.code >=").is_err());
        assert!(parse("source.labels['x'] == 'y'").is_err());
    }
}
