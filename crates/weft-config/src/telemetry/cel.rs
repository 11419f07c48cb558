//! A syntax checker for CEL (Common Expression Language) expressions, as Istio checks the
//! `accessLogging[].filter.expression` of a Telemetry: the expression must parse; names and
//! types are not checked.
//!
//! The grammar is CEL's (github.com/google/cel-spec, `langdef.md`): conditional, `||`, `&&`,
//! relations (including `in`), arithmetic, unary `!`/`-`, member selection, calls, indexing,
//! list/map/message literals, and int/uint/double/string/bytes/bool/null literals.

use std::fmt;

/// Why an expression does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CelError {
    /// Byte offset of the problem.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for CelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ERROR: <input>:1:{}: Syntax error: {}",
            self.offset + 1,
            self.message
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Lit,
    Punct(&'static str),
}

const PUNCTS: &[&str] = &[
    "==", "!=", "<=", ">=", "&&", "||", "<", ">", "+", "-", "*", "/", "%", "!", "?", ":", ".", ",",
    "(", ")", "[", "]", "{", "}",
];

const RESERVED: &[&str] = &[
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// Maximum nesting accepted (CEL's default parser limit is in the same range).
const MAX_DEPTH: usize = 250;

fn err(offset: usize, message: impl Into<String>) -> CelError {
    CelError {
        offset,
        message: message.into(),
    }
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, CelError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        // String and bytes literals, with optional r/R and b/B prefixes.
        let mut j = i;
        let mut raw = false;
        while j < b.len() && j - i < 2 && matches!(b[j], b'r' | b'R' | b'b' | b'B') {
            if matches!(b[j], b'r' | b'R') {
                raw = true;
            }
            j += 1;
        }
        if j < b.len() && (b[j] == b'"' || b[j] == b'\'') {
            let q = b[j];
            let triple = b.get(j + 1) == Some(&q) && b.get(j + 2) == Some(&q);
            let mut k = if triple { j + 3 } else { j + 1 };
            loop {
                if k >= b.len() {
                    return Err(err(start, "unterminated string literal"));
                }
                if !raw && b[k] == b'\\' {
                    k += 2;
                    continue;
                }
                if triple {
                    if b[k] == q && b.get(k + 1) == Some(&q) && b.get(k + 2) == Some(&q) {
                        k += 3;
                        break;
                    }
                } else {
                    if b[k] == b'\n' {
                        return Err(err(start, "newline in string literal"));
                    }
                    if b[k] == q {
                        k += 1;
                        break;
                    }
                }
                k += 1;
            }
            out.push((Tok::Lit, start));
            i = k;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let mut k = i;
            while k < b.len() && (b[k].is_ascii_alphanumeric() || b[k] == b'_') {
                k += 1;
            }
            let word = &src[i..k];
            let tok = match word {
                "true" | "false" | "null" => Tok::Lit,
                "in" => Tok::Punct("in"),
                w if RESERVED.contains(&w) => {
                    return Err(err(start, format!("reserved identifier: {w}")));
                }
                w => Tok::Ident(w.to_string()),
            };
            out.push((tok, start));
            i = k;
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let mut k = i;
            if c == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X')) {
                k += 2;
                let s = k;
                while k < b.len() && b[k].is_ascii_hexdigit() {
                    k += 1;
                }
                if k == s {
                    return Err(err(start, "invalid hex literal"));
                }
            } else {
                while k < b.len() && b[k].is_ascii_digit() {
                    k += 1;
                }
                if k < b.len() && b[k] == b'.' && b.get(k + 1).is_some_and(u8::is_ascii_digit) {
                    k += 1;
                    while k < b.len() && b[k].is_ascii_digit() {
                        k += 1;
                    }
                }
                if k < b.len() && matches!(b[k], b'e' | b'E') {
                    let mut m = k + 1;
                    if m < b.len() && matches!(b[m], b'+' | b'-') {
                        m += 1;
                    }
                    if m < b.len() && b[m].is_ascii_digit() {
                        k = m;
                        while k < b.len() && b[k].is_ascii_digit() {
                            k += 1;
                        }
                    }
                }
            }
            if k < b.len() && matches!(b[k], b'u' | b'U') {
                k += 1;
            }
            if k < b.len() && (b[k].is_ascii_alphabetic() || b[k] == b'_') {
                return Err(err(k, "invalid numeric literal"));
            }
            out.push((Tok::Lit, start));
            i = k;
            continue;
        }
        let Some(p) = PUNCTS.iter().find(|p| src[i..].starts_with(**p)) else {
            return Err(err(
                start,
                format!("token recognition error at: '{}'", &src[i..=i]),
            ));
        };
        out.push((Tok::Punct(p), start));
        i += p.len();
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    end: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn offset(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(_, o)| *o)
    }

    fn is(&self, p: &str) -> bool {
        matches!(self.peek(), Some(Tok::Punct(q)) if *q == p)
    }

    fn eat(&mut self, p: &str) -> bool {
        if self.is(p) {
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
            Err(self.unexpected(&format!("expecting '{p}'")))
        }
    }

    fn unexpected(&self, what: &str) -> CelError {
        match self.toks.get(self.pos) {
            None => err(self.end, format!("mismatched input '<EOF>' {what}")),
            Some((t, o)) => {
                let text = match t {
                    Tok::Ident(s) => s.clone(),
                    Tok::Lit => "literal".into(),
                    Tok::Punct(p) => (*p).to_string(),
                };
                err(*o, format!("mismatched input '{text}' {what}"))
            }
        }
    }

    fn enter(&mut self) -> Result<(), CelError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(err(self.offset(), "expression nests too deeply"));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<(), CelError> {
        self.enter()?;
        self.binary(0)?;
        if self.eat("?") {
            self.binary(0)?;
            self.expect(":")?;
            self.expr()?;
        }
        self.depth -= 1;
        Ok(())
    }

    /// Binary operators by precedence level: `||`, `&&`, relations, additive, multiplicative.
    fn binary(&mut self, level: usize) -> Result<(), CelError> {
        const LEVELS: &[&[&str]] = &[
            &["||"],
            &["&&"],
            &["<", "<=", ">", ">=", "==", "!=", "in"],
            &["+", "-"],
            &["*", "/", "%"],
        ];
        if level == LEVELS.len() {
            return self.unary();
        }
        self.binary(level + 1)?;
        while LEVELS[level].iter().any(|op| self.is(op)) {
            self.pos += 1;
            self.binary(level + 1)?;
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<(), CelError> {
        if self.is("!") || self.is("-") {
            while self.eat("!") || self.eat("-") {}
        }
        self.member()
    }

    fn member(&mut self) -> Result<(), CelError> {
        self.primary()?;
        loop {
            if self.eat(".") {
                match self.peek() {
                    Some(Tok::Ident(_)) => self.pos += 1,
                    _ => return Err(self.unexpected("expecting IDENTIFIER")),
                }
                if self.eat("(") {
                    self.args(")")?;
                } else if self.is("{") {
                    self.pos += 1;
                    self.field_inits()?;
                }
            } else if self.eat("[") {
                self.expr()?;
                self.expect("]")?;
            } else {
                return Ok(());
            }
        }
    }

    fn args(&mut self, close: &str) -> Result<(), CelError> {
        if self.eat(close) {
            return Ok(());
        }
        loop {
            self.expr()?;
            if self.eat(",") {
                if self.eat(close) {
                    return Ok(());
                }
                continue;
            }
            return self.expect(close);
        }
    }

    fn field_inits(&mut self) -> Result<(), CelError> {
        if self.eat("}") {
            return Ok(());
        }
        loop {
            match self.peek() {
                Some(Tok::Ident(_)) => self.pos += 1,
                _ => return Err(self.unexpected("expecting IDENTIFIER")),
            }
            self.expect(":")?;
            self.expr()?;
            if self.eat(",") {
                if self.eat("}") {
                    return Ok(());
                }
                continue;
            }
            return self.expect("}");
        }
    }

    fn map_inits(&mut self) -> Result<(), CelError> {
        if self.eat("}") {
            return Ok(());
        }
        loop {
            self.expr()?;
            self.expect(":")?;
            self.expr()?;
            if self.eat(",") {
                if self.eat("}") {
                    return Ok(());
                }
                continue;
            }
            return self.expect("}");
        }
    }

    fn primary(&mut self) -> Result<(), CelError> {
        let leading_dot = self.eat(".");
        match self.peek().cloned() {
            Some(Tok::Ident(_)) => {
                self.pos += 1;
                if self.eat("(") {
                    self.args(")")?;
                } else if self.is("{") {
                    self.pos += 1;
                    self.field_inits()?;
                }
                Ok(())
            }
            _ if leading_dot => Err(self.unexpected("expecting IDENTIFIER")),
            Some(Tok::Lit) => {
                self.pos += 1;
                Ok(())
            }
            Some(Tok::Punct("(")) => {
                self.pos += 1;
                self.expr()?;
                self.expect(")")
            }
            Some(Tok::Punct("[")) => {
                self.pos += 1;
                self.args("]")
            }
            Some(Tok::Punct("{")) => {
                self.pos += 1;
                self.map_inits()
            }
            _ => Err(self.unexpected("expecting an expression")),
        }
    }
}

/// Parses `src` as a CEL expression, reporting the first syntax error.
pub fn parse(src: &str) -> Result<(), CelError> {
    let toks = lex(src)?;
    if toks.is_empty() {
        return Err(err(0, "mismatched input '<EOF>' expecting an expression"));
    }
    let mut p = Parser {
        toks,
        pos: 0,
        end: src.len(),
        depth: 0,
    };
    p.expr()?;
    if p.pos < p.toks.len() {
        return Err(p.unexpected("expecting <EOF>"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn accepts_valid_expressions() {
        for e in [
            "response.code >= 400",
            "response.code",
            "true",
            "request.headers['x-user'] == 'admin' && !(response.code in [200, 201])",
            "connection.mtls ? 1 : 2",
            "size(request.path) > 10u",
            "request.url_path.startsWith(\"/api\")",
            "{'a': 1, 'b': 2.5e3}['a'] == 1",
            "google.protobuf.Duration{seconds: 1}",
            "-1 + -(2) * 3 % 4 / 5 - 0x1F",
            "r'raw\\n' + b\"bytes\" + '''tri'ple'''",
            "xds.node.id != ''",
            "[1, 2, 3,].exists(x, x > 2)",
        ] {
            assert!(parse(e).is_ok(), "{e:?}: {:?}", parse(e));
        }
    }

    #[test]
    fn rejects_invalid_expressions() {
        for e in [
            "",
            "response.code >=",
            "(a",
            "a b",
            "'unterminated",
            "a.",
            "if x",
            "a ? b",
            "1abc",
            "a $ b",
            "[1, 2",
            "{1: }",
        ] {
            assert!(parse(e).is_err(), "{e:?} should not parse");
        }
        let deep = format!("{}1{}", "(".repeat(1000), ")".repeat(1000));
        assert!(parse(&deep).is_err());
    }
}
