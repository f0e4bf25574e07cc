//! The kernel IR text form, parsing side: the inverse of `print.rs`. A plan
//! that parses is verified before it is returned.

use super::{
    AccId, Affine, BufferDecl, BufferId, BufferRole, KExpr, KStmt, Kernel, MatrixRef, Plan, RuntimeCall, Size,
    SizeSymbol, VarId,
};
use crate::op::{BinaryOp, CompareOp, Literal, ReduceKind, UnaryOp};
use crate::parse::{ParseError, parse_float};
use crate::print::{binary_name, compare_name, reduce_name, unary_name};
use crate::types::DType;
use crate::types::Symbol;

/// Parses and verifies a plan.
pub fn parse_plan(text: &str) -> std::result::Result<Plan, ParseError> {
    let tokens = tokenize(text)?;
    let mut p = Parser { tokens, pos: 0 };
    let plan = p.plan()?;
    if p.pos < p.tokens.len() {
        return p.error("expected the end of the text after the plan");
    }
    super::verify_plan(&plan).map_err(|e| ParseError { line: 1, column: 1, message: e.to_string() })?;
    Ok(plan)
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Punct(&'static str),
}

struct Token {
    tok: Tok,
    line: usize,
    column: usize,
}

const PUNCTS: [&str; 14] = ["..", "+=", ">=", "[", "]", "(", ")", "{", "}", ",", ":", "=", "+", "*"];

fn tokenize(text: &str) -> std::result::Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    for (l, line) in text.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let (line, column) = (l + 1, i + 1);
            let c = chars[i];
            if c.is_whitespace() {
                i += 1;
            } else if c == '/' && chars.get(i + 1) == Some(&'/') {
                break;
            } else if c == '-' {
                tokens.push(Token { tok: Tok::Punct("-"), line, column });
                i += 1;
            } else if c.is_ascii_digit() {
                let start = i;
                while i < chars.len() {
                    let d = chars[i];
                    let exponent_sign = matches!(d, '+' | '-') && matches!(chars[i - 1], 'e' | 'E');
                    let fraction = d == '.' && chars.get(i + 1) != Some(&'.');
                    if d.is_ascii_alphanumeric() || fraction || exponent_sign {
                        i += 1;
                    } else {
                        break;
                    }
                }
                tokens.push(Token { tok: Tok::Word(chars[start..i].iter().collect()), line, column });
            } else if c.is_alphabetic() || c == '_' {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                    i += 1;
                }
                tokens.push(Token { tok: Tok::Word(chars[start..i].iter().collect()), line, column });
            } else if let Some(p) = PUNCTS.iter().find(|p| line_starts_with(&chars[i..], p)) {
                tokens.push(Token { tok: Tok::Punct(p), line, column });
                i += p.len();
            } else {
                return Err(ParseError { line, column, message: format!("unexpected character `{c}`") });
            }
        }
    }
    Ok(tokens)
}

fn line_starts_with(chars: &[char], p: &str) -> bool {
    p.chars().enumerate().all(|(k, c)| chars.get(k) == Some(&c))
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

type Result<T> = std::result::Result<T, ParseError>;

impl Parser {
    fn error<T>(&self, message: impl Into<String>) -> Result<T> {
        let (line, column) = self.tokens.get(self.pos).or(self.tokens.last()).map_or((1, 1), |t| (t.line, t.column));
        Err(ParseError { line, column, message: message.into() })
    }

    fn found(&self) -> String {
        match self.tokens.get(self.pos).map(|t| &t.tok) {
            Some(Tok::Word(w)) => format!("`{w}`"),
            Some(Tok::Punct(p)) => format!("`{p}`"),
            None => "the end of the text".into(),
        }
    }

    fn peek_word(&self) -> Option<&str> {
        match self.tokens.get(self.pos).map(|t| &t.tok) {
            Some(Tok::Word(w)) => Some(w),
            _ => None,
        }
    }

    fn at(&self, p: &str) -> bool {
        matches!(self.tokens.get(self.pos).map(|t| &t.tok), Some(Tok::Punct(q)) if *q == p)
    }

    fn eat(&mut self, p: &str) -> bool {
        let yes = self.at(p);
        if yes {
            self.pos += 1;
        }
        yes
    }

    fn punct(&mut self, p: &str) -> Result<()> {
        if self.eat(p) { Ok(()) } else { self.error(format!("expected `{p}`, found {}", self.found())) }
    }

    fn word(&mut self, what: &str) -> Result<String> {
        match self.peek_word() {
            Some(w) => {
                let w = w.to_string();
                self.pos += 1;
                Ok(w)
            }
            None => self.error(format!("expected {what}, found {}", self.found())),
        }
    }

    fn keyword(&mut self, kw: &str) -> Result<()> {
        if self.peek_word() == Some(kw) {
            self.pos += 1;
            Ok(())
        } else {
            self.error(format!("expected `{kw}`, found {}", self.found()))
        }
    }

    fn uint(&mut self, what: &str) -> Result<u64> {
        let w = self.word(what)?;
        w.parse().or_else(|_| {
            self.pos -= 1;
            self.error(format!("expected {what} (an integer), found `{w}`"))
        })
    }

    /// A prefixed id such as `b3`, `i0` or `a2`.
    fn id(&mut self, prefix: char, what: &str) -> Result<u32> {
        let w = self.word(what)?;
        match w.strip_prefix(prefix).and_then(|n| n.parse().ok()) {
            Some(n) => Ok(n),
            None => {
                self.pos -= 1;
                self.error(format!("expected {what} like `{prefix}0`, found `{w}`"))
            }
        }
    }

    fn dtype(&mut self) -> Result<DType> {
        let w = self.word("a dtype")?;
        DType::from_name(&w).map_or_else(
            || {
                self.pos -= 1;
                self.error(format!("expected a dtype, found `{w}`"))
            },
            Ok,
        )
    }

    fn plan(&mut self) -> Result<Plan> {
        self.keyword("plan")?;
        let name = self.word("a plan name")?;
        self.punct("{")?;
        let mut symbols: Vec<SizeSymbol> = Vec::new();
        while self.peek_word() == Some("size") {
            self.pos += 1;
            let symbol = Symbol::new(self.word("a size symbol")?);
            if symbols.iter().any(|s| s.symbol == symbol) {
                self.pos -= 1;
                return self.error(format!("size {symbol} is declared twice"));
            }
            self.punct(">=")?;
            let min = self.uint("the least value")?;
            self.keyword("hint")?;
            let hint = self.uint("a hint")?;
            symbols.push(SizeSymbol { symbol, min, hint });
        }
        let mut buffers = Vec::new();
        while self.peek_word().is_some_and(|w| w.starts_with('b') && w[1..].parse::<u32>().is_ok()) {
            let id = self.id('b', "a buffer")?;
            if id as usize != buffers.len() {
                return self.error(format!("expected buffer b{} here (buffers are numbered in order)", buffers.len()));
            }
            self.punct(":")?;
            let dtype = self.dtype()?;
            self.punct("[")?;
            let len = self.size()?;
            self.punct("]")?;
            let role = match self.word("a buffer role")?.as_str() {
                "input" => BufferRole::Input(self.uint("an input number")? as u32),
                "output" => BufferRole::Output(self.uint("an output number")? as u32),
                "param" => BufferRole::Param(self.word("a parameter name")?),
                "temp" => BufferRole::Temp,
                other => {
                    let other = other.to_string();
                    self.pos -= 1;
                    return self.error(format!("expected `input`, `output`, `param` or `temp`, found `{other}`"));
                }
            };
            buffers.push(BufferDecl { role, dtype, len });
        }
        let mut kernels = Vec::new();
        while self.peek_word() == Some("kernel") {
            self.pos += 1;
            let name = self.word("a kernel name")?;
            let body = self.block()?;
            kernels.push(Kernel { name, body });
        }
        self.punct("}")?;
        Ok(Plan { name, symbols, buffers, kernels })
    }

    fn block(&mut self) -> Result<Vec<KStmt>> {
        self.punct("{")?;
        let mut body = Vec::new();
        while !self.eat("}") {
            if self.pos >= self.tokens.len() {
                return self.error("expected `}` before the end of the text");
            }
            body.push(self.stmt()?);
        }
        Ok(body)
    }

    fn stmt(&mut self) -> Result<KStmt> {
        let word = self.peek_word().map(str::to_string);
        match word.as_deref() {
            Some("for") => {
                self.pos += 1;
                let var = VarId(self.id('i', "a loop variable")?);
                self.keyword("in")?;
                self.keyword("0")?;
                self.punct("..")?;
                let extent = self.size()?;
                let parallel = self.peek_word() == Some("parallel");
                if parallel {
                    self.pos += 1;
                }
                let vector = if self.peek_word() == Some("vector") {
                    self.pos += 1;
                    self.uint("a lane count")? as u32
                } else {
                    1
                };
                let body = self.block()?;
                Ok(KStmt::For { var, extent, parallel, vector, body })
            }
            Some("scatter_add") => {
                self.pos += 1;
                self.punct("(")?;
                let buffer = BufferId(self.id('b', "a buffer")?);
                self.punct(",")?;
                let base = self.bracketed_affine()?;
                self.punct(",")?;
                let index = self.expr()?;
                self.punct(",")?;
                let stride = self.size()?;
                self.punct(",")?;
                let bound = self.size()?;
                self.punct(",")?;
                let value = self.expr()?;
                self.punct(")")?;
                Ok(KStmt::ScatterAdd { buffer, base, index, stride, bound, value })
            }
            Some("gemm") => {
                self.pos += 1;
                self.punct("(")?;
                let mut sizes: [Size; 4] = Default::default();
                for (i, key) in ["batch", "m", "n", "k"].iter().enumerate() {
                    self.keyword(key)?;
                    self.punct("=")?;
                    sizes[i] = self.size()?;
                    self.punct(",")?;
                }
                let mut matrices = Vec::new();
                for (i, key) in ["a", "b", "c"].iter().enumerate() {
                    if i > 0 {
                        self.punct(",")?;
                    }
                    self.keyword(key)?;
                    self.punct("=")?;
                    let buffer = BufferId(self.id('b', "a buffer")?);
                    self.punct("[")?;
                    let offset = self.size()?;
                    self.punct(",")?;
                    let row_stride = self.size()?;
                    self.punct(",")?;
                    let batch_stride = self.size()?;
                    // An optional column stride (1 when absent).
                    let col_stride = if self.eat(",") { self.size()? } else { Size::constant(1) };
                    self.punct("]")?;
                    matrices.push(MatrixRef { buffer, offset, row_stride, batch_stride, col_stride });
                }
                self.punct(")")?;
                let [batch, m, n, k] = sizes;
                let [a, b, c]: [MatrixRef; 3] = matrices.try_into().map_err(|_| ParseError {
                    line: 1,
                    column: 1,
                    message: "three matrices".into(),
                })?;
                Ok(KStmt::Call(RuntimeCall::Gemm { batch, m, n, k, a, b, c }))
            }
            Some(w) if w.starts_with('a') && w[1..].parse::<u32>().is_ok() => {
                let acc = AccId(self.id('a', "an accumulator")?);
                if self.eat("+=") {
                    return Ok(KStmt::AccUpdate { acc, value: self.expr()? });
                }
                self.punct(":")?;
                let dtype = self.dtype()?;
                self.punct("=")?;
                let w = self.word("`sum` or `max`")?;
                let Some(kind) = ReduceKind::ALL.into_iter().find(|k| reduce_name(*k) == w) else {
                    self.pos -= 1;
                    return self.error(format!("expected `sum` or `max`, found `{w}`"));
                };
                Ok(KStmt::AccInit { acc, dtype, kind })
            }
            Some(w) if w.starts_with('b') && w[1..].parse::<u32>().is_ok() => {
                let buffer = BufferId(self.id('b', "a buffer")?);
                let index = self.bracketed_affine()?;
                self.punct("=")?;
                Ok(KStmt::Store { buffer, index, value: self.expr()? })
            }
            _ => self.error(format!("expected a statement, found {}", self.found())),
        }
    }

    fn bracketed_affine(&mut self) -> Result<Affine> {
        self.punct("[")?;
        let a = self.affine()?;
        self.punct("]")?;
        Ok(a)
    }

    /// `256*i0 + i1 - 3`, `784*N*i0 + (N + 1)*i1`: a sum of terms, each a
    /// product of integers, size symbols, parenthesized sums and at most
    /// one loop variable.
    fn affine(&mut self) -> Result<Affine> {
        let terms = self.sum()?;
        let mut a = Affine::default();
        for (var, coefficient) in terms {
            a = match var {
                Some(v) => a.plus_term(v, coefficient),
                None => a.plus(coefficient),
            };
        }
        Ok(a)
    }

    /// A size: like an affine index, without loop variables.
    fn size(&mut self) -> Result<Size> {
        let start = self.pos;
        let terms = self.sum()?;
        let mut size = Size::constant(0);
        for (var, coefficient) in terms {
            if var.is_some() {
                self.pos = start;
                return self.error("expected a size, found an expression of a loop variable");
            }
            size = size + coefficient;
        }
        Ok(size)
    }

    /// `term (+|- term)*`, as the coefficient of each loop variable (`None`
    /// for the constant part).
    fn sum(&mut self) -> Result<Vec<(Option<VarId>, Size)>> {
        let mut out = Vec::new();
        let mut negative = self.eat("-");
        loop {
            for (var, c) in self.product()? {
                out.push((var, if negative { -c } else { c }));
            }
            if self.eat("+") {
                negative = false;
            } else if self.eat("-") {
                negative = true;
            } else {
                return Ok(out);
            }
        }
    }

    /// `factor (* factor)*`, where at most one factor mentions a loop variable.
    fn product(&mut self) -> Result<Vec<(Option<VarId>, Size)>> {
        let mut out = self.factor()?;
        while self.eat("*") {
            let start = self.pos;
            let next = self.factor()?;
            let has_var = |t: &[(Option<VarId>, Size)]| t.iter().any(|x| x.0.is_some());
            if has_var(&out) && has_var(&next) {
                self.pos = start;
                return self.error("a product of two loop variables is not affine");
            }
            let mut product = Vec::new();
            for (va, ca) in &out {
                for (vb, cb) in &next {
                    product.push((va.or(*vb), ca.clone() * cb.clone()));
                }
            }
            out = product;
        }
        Ok(out)
    }

    /// An integer, a loop variable `i3`, a size symbol, or `( sum )`.
    fn factor(&mut self) -> Result<Vec<(Option<VarId>, Size)>> {
        if self.eat("(") {
            let inner = self.sum()?;
            self.punct(")")?;
            return Ok(inner);
        }
        let word = self.word("a term")?;
        if let Some(v) = word.strip_prefix('i').and_then(|n| n.parse::<u32>().ok()) {
            return Ok(vec![(Some(VarId(v)), Size::constant(1))]);
        }
        if word.starts_with(|c: char| c.is_ascii_digit()) {
            let n: i64 = word.parse().or_else(|_| {
                self.pos -= 1;
                self.error(format!("expected an integer, found `{word}`"))
            })?;
            return Ok(vec![(None, Size::constant(n))]);
        }
        if word.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Ok(vec![(None, Size::symbol(Symbol::new(word)))]);
        }
        self.pos -= 1;
        self.error(format!("expected an integer, a size symbol or a loop variable, found `{word}`"))
    }

    fn literal(&mut self, dtype: DType) -> Result<Literal> {
        let negative = self.eat("-");
        let w = self.word("a literal")?;
        let text = if negative { format!("-{w}") } else { w.clone() };
        let lit = match dtype {
            DType::Bool => match w.as_str() {
                "true" if !negative => Some(Literal::Bool(true)),
                "false" if !negative => Some(Literal::Bool(false)),
                _ => None,
            },
            DType::I32 | DType::I64 => text.parse().ok().map(Literal::Int),
            DType::F32 | DType::F64 => parse_float(&text).map(Literal::float),
        };
        lit.map_or_else(|| self.error(format!("`{text}` is not a {dtype} literal")), Ok)
    }

    fn expr(&mut self) -> Result<KExpr> {
        let w = self.word("an expression")?;
        if let Some(b) = w.strip_prefix('b').and_then(|n| n.parse::<u32>().ok()) {
            let index = self.bracketed_affine()?;
            return Ok(KExpr::Load { buffer: BufferId(b), index });
        }
        if let Some(a) = w.strip_prefix('a').and_then(|n| n.parse::<u32>().ok()) {
            return Ok(KExpr::Acc(AccId(a)));
        }
        self.punct("(")?;
        let e = match w.as_str() {
            "const" => {
                let dtype = self.dtype()?;
                self.punct(",")?;
                KExpr::Const { value: self.literal(dtype)?, dtype }
            }
            "index" => {
                let dtype = self.dtype()?;
                self.punct(",")?;
                KExpr::Index { index: self.bracketed_affine()?, dtype }
            }
            "gather" => {
                let buffer = BufferId(self.id('b', "a buffer")?);
                self.punct(",")?;
                let base = self.bracketed_affine()?;
                self.punct(",")?;
                let index = Box::new(self.expr()?);
                self.punct(",")?;
                let stride = self.size()?;
                self.punct(",")?;
                let bound = self.size()?;
                KExpr::Gather { buffer, base, index, stride, bound }
            }
            "select" => {
                let c = self.expr()?;
                self.punct(",")?;
                let a = self.expr()?;
                self.punct(",")?;
                KExpr::Select(Box::new(c), Box::new(a), Box::new(self.expr()?))
            }
            "cast" => {
                let dtype = self.dtype()?;
                self.punct(",")?;
                KExpr::Cast(dtype, Box::new(self.expr()?))
            }
            "random_bits" => {
                let dtype = self.dtype()?;
                self.punct(",")?;
                let key = Box::new(self.expr()?);
                self.punct(",")?;
                let stream = self.uint("a stream")?;
                self.punct(",")?;
                KExpr::RandomBits { key, stream, counter: self.bracketed_affine()?, dtype }
            }
            name => {
                if let Some(op) = UnaryOp::ALL.into_iter().find(|u| unary_name(*u) == name) {
                    KExpr::Unary(op, Box::new(self.expr()?))
                } else if let Some(op) = BinaryOp::ALL.into_iter().find(|b| binary_name(*b) == name) {
                    let a = self.expr()?;
                    self.punct(",")?;
                    KExpr::Binary(op, Box::new(a), Box::new(self.expr()?))
                } else if let Some(op) = CompareOp::ALL.into_iter().find(|c| compare_name(*c) == name) {
                    let a = self.expr()?;
                    self.punct(",")?;
                    KExpr::Compare(op, Box::new(a), Box::new(self.expr()?))
                } else {
                    let name = name.to_string();
                    return self.error(format!("unknown operation `{name}`"));
                }
            }
        };
        self.punct(")")?;
        Ok(e)
    }
}
