//! The graph IR text form, parsing side: the inverse of [`crate::print`].
//!
//! The parser checks the syntax and that nodes are numbered `%0, %1, ...` in
//! order; it then runs the verifier, so a module it returns is valid. Errors
//! carry the line and column they were found at.

use std::fmt;

use crate::graph::{Function, Graph, Init, InputDecl, Module, Node, NodeId, ParamDecl};
use crate::op::{BinaryOp, CompareOp, ConvAttrs, Literal, Op, ReduceKind, UnaryOp};
use crate::print::{binary_name, compare_name, reduce_name, unary_name};
use crate::types::{DType, Dim, F64Bits, Shape, Symbol, TensorType};
use crate::verify::verify_module;

/// A syntax or verification error in IR text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Parses a whole module and verifies it.
pub fn parse_module(text: &str) -> std::result::Result<Module, ParseError> {
    let tokens = tokenize(text)?;
    let mut p = Parser { tokens, pos: 0, positions: Vec::new() };
    let module = p.module()?;
    verify_module(&module).map_err(|e| {
        let (line, column) = e.location.and_then(|loc| p.node_position(loc)).unwrap_or((1, 1));
        ParseError { line, column, message: e.message }
    })?;
    Ok(module)
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// `%3`
    Node(u32),
    /// Names, keywords and numbers: `fc1.w`, `xavier_uniform`, `-1.5e-3`.
    Word(String),
    Punct(char),
    Arrow,
    Newline,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Node(n) => write!(f, "`%{n}`"),
            Tok::Word(w) => write!(f, "`{w}`"),
            Tok::Punct(c) => write!(f, "`{c}`"),
            Tok::Arrow => f.write_str("`->`"),
            Tok::Newline => f.write_str("end of line"),
        }
    }
}

struct Token {
    tok: Tok,
    line: usize,
    column: usize,
}

fn tokenize(text: &str) -> std::result::Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    for (l, line) in text.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let (line, column) = (l + 1, i + 1);
            let word_char = |c: char| c.is_alphanumeric() || matches!(c, '_' | '.' | '+' | '-');
            if c == '/' && chars.get(i + 1) == Some(&'/') {
                break;
            } else if c.is_whitespace() {
                i += 1;
                continue;
            } else if c == '-' && chars.get(i + 1) == Some(&'>') {
                tokens.push(Token { tok: Tok::Arrow, line, column });
                i += 2;
                continue;
            } else if c == '%' {
                let start = i + 1;
                i = start;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
                let digits: String = chars[start..i].iter().collect();
                let n = digits.parse().map_err(|_| ParseError {
                    line,
                    column,
                    message: "expected a node number after `%`".into(),
                })?;
                tokens.push(Token { tok: Tok::Node(n), line, column });
                continue;
            } else if c.is_alphanumeric() || c == '_' || c == '-' {
                let start = i;
                i += 1;
                // A `+` or `-` continues a word only as an exponent sign (`1e-8`).
                while i < chars.len() && word_char(chars[i]) {
                    if matches!(chars[i], '+' | '-') && !matches!(chars[i - 1], 'e' | 'E') {
                        break;
                    }
                    i += 1;
                }
                tokens.push(Token { tok: Tok::Word(chars[start..i].iter().collect()), line, column });
                continue;
            } else if "[](){},:=".contains(c) {
                tokens.push(Token { tok: Tok::Punct(c), line, column });
            } else {
                return Err(ParseError { line, column, message: format!("unexpected character `{c}`") });
            }
            i += 1;
        }
        tokens.push(Token { tok: Tok::Newline, line: l + 1, column: chars.len() + 1 });
    }
    Ok(tokens)
}

/// Where a function's header starts and where each of its nodes is defined,
/// as (line, column).
type FunctionPositions = ((usize, usize), Vec<(usize, usize)>);

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// Per function: where its header starts and where each node is defined.
    positions: Vec<FunctionPositions>,
}

type Result<T> = std::result::Result<T, ParseError>;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|t| &t.tok)
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T> {
        let (line, column) = match self.tokens.get(self.pos).or(self.tokens.last()) {
            Some(t) => (t.line, t.column),
            None => (1, 1),
        };
        Err(ParseError { line, column, message: message.into() })
    }

    fn found(&self) -> String {
        self.peek().map_or("end of input".to_string(), |t| t.to_string())
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek() == Some(tok) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, tok: Tok) -> Result<()> {
        if self.eat(&tok) { Ok(()) } else { self.error(format!("expected {tok}, found {}", self.found())) }
    }

    fn punct(&mut self, c: char) -> Result<()> {
        self.expect(Tok::Punct(c))
    }

    fn skip_newlines(&mut self) {
        while self.eat(&Tok::Newline) {}
    }

    fn word(&mut self, what: &str) -> Result<String> {
        match self.peek() {
            Some(Tok::Word(w)) => {
                let w = w.clone();
                self.pos += 1;
                Ok(w)
            }
            _ => self.error(format!("expected {what}, found {}", self.found())),
        }
    }

    fn keyword(&mut self, kw: &str) -> Result<()> {
        match self.peek() {
            Some(Tok::Word(w)) if w == kw => {
                self.pos += 1;
                Ok(())
            }
            _ => self.error(format!("expected `{kw}`, found {}", self.found())),
        }
    }

    fn uint(&mut self, what: &str) -> Result<u64> {
        let w = self.word(what)?;
        match w.parse() {
            Ok(n) => Ok(n),
            Err(_) => {
                self.pos -= 1;
                self.error(format!("expected {what} (a non-negative integer), found `{w}`"))
            }
        }
    }

    fn float(&mut self) -> Result<F64Bits> {
        let w = self.word("a number")?;
        match parse_float(&w) {
            Some(x) => Ok(F64Bits::new(x)),
            None => {
                self.pos -= 1;
                self.error(format!("expected a number, found `{w}`"))
            }
        }
    }

    fn module(&mut self) -> Result<Module> {
        let mut module = Module::default();
        self.skip_newlines();
        while self.peek().is_some() {
            match self.peek() {
                Some(Tok::Word(w)) if w == "param" => module.params.push(self.param()?),
                Some(Tok::Word(w)) if w == "func" => module.functions.push(self.function()?),
                _ => return self.error(format!("expected `param` or `func`, found {}", self.found())),
            }
            self.skip_newlines();
        }
        Ok(module)
    }

    fn param(&mut self) -> Result<ParamDecl> {
        self.keyword("param")?;
        let name = self.word("a parameter name")?;
        self.punct(':')?;
        let ty = self.tensor_type()?;
        self.punct('=')?;
        let init = self.init()?;
        self.expect(Tok::Newline)?;
        Ok(ParamDecl { name, ty, init })
    }

    fn init(&mut self) -> Result<Init> {
        let name = self.word("an initializer")?;
        let two_floats = |p: &mut Parser| -> Result<(F64Bits, F64Bits)> {
            p.punct('(')?;
            let a = p.float()?;
            p.punct(',')?;
            let b = p.float()?;
            p.punct(')')?;
            Ok((a, b))
        };
        Ok(match name.as_str() {
            "zeros" => Init::Zeros,
            "ones" => Init::Ones,
            "xavier_uniform" => Init::XavierUniform,
            "kaiming_normal" => Init::KaimingNormal,
            "normal" => {
                let (mean, std) = two_floats(self)?;
                Init::Normal { mean, std }
            }
            "uniform" => {
                let (low, high) = two_floats(self)?;
                Init::Uniform { low, high }
            }
            other => {
                self.pos -= 1;
                return self.error(format!("unknown initializer `{other}`"));
            }
        })
    }

    fn dtype(&mut self) -> Result<DType> {
        let w = self.word("a dtype")?;
        DType::from_name(&w).map_or_else(
            || {
                self.pos -= 1;
                self.error(format!("expected a dtype (f32, f64, i32, i64, bool), found `{w}`"))
            },
            Ok,
        )
    }

    fn tensor_type(&mut self) -> Result<TensorType> {
        let dtype = self.dtype()?;
        self.punct('[')?;
        let mut dims = Vec::new();
        while !self.eat(&Tok::Punct(']')) {
            if !dims.is_empty() {
                self.punct(',')?;
            }
            let w = self.word("a dimension")?;
            dims.push(match w.parse::<u64>() {
                Ok(n) => Dim::Const(n),
                Err(_) if w.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_') => Dim::Sym(Symbol(w)),
                Err(_) => {
                    self.pos -= 1;
                    return self.error(format!("expected a dimension (a size or a symbol), found `{w}`"));
                }
            });
        }
        Ok(TensorType::new(dtype, Shape(dims)))
    }

    fn here(&self) -> (usize, usize) {
        self.tokens.get(self.pos).map_or((1, 1), |t| (t.line, t.column))
    }

    fn function(&mut self) -> Result<Function> {
        self.positions.push((self.here(), Vec::new()));
        self.keyword("func")?;
        let name = self.word("a function name")?;
        self.punct('(')?;
        let mut inputs = Vec::new();
        while !self.eat(&Tok::Punct(')')) {
            if !inputs.is_empty() {
                self.punct(',')?;
            }
            let name = self.word("an input name")?;
            self.punct(':')?;
            inputs.push(InputDecl { name, ty: self.tensor_type()? });
        }
        self.expect(Tok::Arrow)?;
        self.punct('(')?;
        let mut declared = Vec::new();
        while !self.eat(&Tok::Punct(')')) {
            if !declared.is_empty() {
                self.punct(',')?;
            }
            declared.push((self.pos, self.tensor_type()?));
        }
        self.punct('{')?;
        self.expect(Tok::Newline)?;
        self.skip_newlines();
        let mut graph = Graph::new();
        while let Some(Tok::Node(n)) = self.peek() {
            if *n as usize != graph.len() {
                return self.error(format!("expected node %{} here (nodes are numbered in order)", graph.len()));
            }
            let here = self.here();
            if let Some(p) = self.positions.last_mut() {
                p.1.push(here);
            }
            self.pos += 1;
            self.punct(':')?;
            let ty = self.tensor_type()?;
            self.punct('=')?;
            let (op, args) = self.node_body(&ty, graph.len())?;
            self.expect(Tok::Newline)?;
            self.skip_newlines();
            graph.push_unchecked(Node { op, args, ty, line: None });
        }
        self.keyword("return")?;
        let mut outputs = Vec::new();
        while self.peek() != Some(&Tok::Newline) {
            if !outputs.is_empty() {
                self.punct(',')?;
            }
            outputs.push(self.operand(graph.len())?);
        }
        self.expect(Tok::Newline)?;
        self.skip_newlines();
        self.punct('}')?;
        if self.peek().is_some() {
            self.expect(Tok::Newline)?;
        }
        if declared.len() != outputs.len() {
            return self.error(format!(
                "function `{name}` declares {} outputs and returns {}",
                declared.len(),
                outputs.len()
            ));
        }
        for ((pos, ty), out) in declared.iter().zip(&outputs) {
            if graph.ty(*out) != ty {
                self.pos = *pos;
                return self.error(format!("declared output type {ty} differs from {out}'s type {}", graph.ty(*out)));
            }
        }
        Ok(Function { name, inputs, graph, outputs })
    }

    fn operand(&mut self, defined: usize) -> Result<NodeId> {
        match self.peek() {
            Some(Tok::Node(n)) if (*n as usize) < defined => {
                let id = NodeId(*n);
                self.pos += 1;
                Ok(id)
            }
            Some(Tok::Node(n)) => self.error(format!("%{n} is used before it is defined")),
            _ => self.error(format!("expected an operand like `%0`, found {}", self.found())),
        }
    }

    fn operands(&mut self, defined: usize) -> Result<Vec<NodeId>> {
        let mut args = Vec::new();
        if let Some(Tok::Node(_)) = self.peek() {
            args.push(self.operand(defined)?);
            while self.eat(&Tok::Punct(',')) {
                args.push(self.operand(defined)?);
            }
        }
        Ok(args)
    }

    fn attr<T>(&mut self, key: &str, value: impl FnOnce(&mut Parser) -> Result<T>) -> Result<T> {
        self.keyword(key)?;
        self.punct('=')?;
        value(self)
    }

    fn uint_list(&mut self) -> Result<Vec<u64>> {
        self.punct('[')?;
        let mut xs = Vec::new();
        while !self.eat(&Tok::Punct(']')) {
            if !xs.is_empty() {
                self.punct(',')?;
            }
            xs.push(self.uint("a list element")?);
        }
        Ok(xs)
    }

    fn axis_list(&mut self) -> Result<Vec<usize>> {
        Ok(self.uint_list()?.into_iter().map(|x| x as usize).collect())
    }

    fn pairs(&mut self) -> Result<Vec<(u64, u64)>> {
        self.punct('[')?;
        let mut xs = Vec::new();
        while !self.eat(&Tok::Punct(']')) {
            if !xs.is_empty() {
                self.punct(',')?;
            }
            self.punct('(')?;
            let a = self.uint("padding")?;
            self.punct(',')?;
            let b = self.uint("padding")?;
            self.punct(')')?;
            xs.push((a, b));
        }
        Ok(xs)
    }

    fn boolean(&mut self) -> Result<bool> {
        match self.word("`true` or `false`")?.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            w => {
                let w = w.to_string();
                self.pos -= 1;
                self.error(format!("expected `true` or `false`, found `{w}`"))
            }
        }
    }

    fn node_body(&mut self, ty: &TensorType, defined: usize) -> Result<(Op, Vec<NodeId>)> {
        let name = self.word("an op name")?;
        let args = self.operands(defined)?;
        let (dtype, shape) = (ty.dtype, ty.shape.clone());
        let op = match name.as_str() {
            "input" => Op::Input { index: self.uint("an input number")? as u32 },
            "param" => Op::Param { name: self.word("a parameter name")? },
            "const" => Op::Constant { value: self.literal(dtype)?, dtype, shape },
            "dim" => Op::DimValue { symbol: Symbol(self.word("a symbol")?) },
            "iota" => Op::Iota { axis: self.attr("axis", |p| p.uint("an axis"))? as usize, dtype, shape },
            "random_bits" => Op::RandomBits { stream: self.attr("stream", |p| p.uint("a stream"))?, dtype, shape },
            "select" => Op::Select,
            "cast" => Op::Cast { to: dtype },
            "stop_gradient" => Op::StopGradient,
            "reshape" => Op::Reshape { shape },
            "broadcast" => Op::Broadcast { shape },
            "permute" => Op::Permute { perm: self.attr("perm", Parser::axis_list)? },
            "slice" => Op::Slice {
                axis: self.attr("axis", |p| p.uint("an axis"))? as usize,
                start: self.attr("start", |p| p.uint("a start"))?,
                stop: self.attr("stop", |p| p.uint("a stop"))?,
                step: self.attr("step", |p| p.uint("a step"))?,
            },
            "pad" => Op::Pad { padding: self.attr("padding", Parser::pairs)? },
            "concat" => Op::Concat { axis: self.attr("axis", |p| p.uint("an axis"))? as usize },
            "gather" => Op::Gather { axis: self.attr("axis", |p| p.uint("an axis"))? as usize },
            "scatter_add" => Op::ScatterAdd { axis: self.attr("axis", |p| p.uint("an axis"))? as usize },
            "matmul" => Op::MatMul,
            "conv_transpose" => Op::ConvTranspose {
                conv: ConvAttrs {
                    stride: self.attr("stride", Parser::uint_list)?,
                    padding: self.attr("padding", Parser::pairs)?,
                    dilation: self.attr("dilation", Parser::uint_list)?,
                    groups: self.attr("groups", |p| p.uint("a group count"))?,
                },
                size: self.attr("size", Parser::uint_list)?,
            },
            "conv" => Op::Conv(ConvAttrs {
                stride: self.attr("stride", Parser::uint_list)?,
                padding: self.attr("padding", Parser::pairs)?,
                dilation: self.attr("dilation", Parser::uint_list)?,
                groups: self.attr("groups", |p| p.uint("a group count"))?,
            }),
            other => {
                if let Some(kind) = strip_kind(other, "reduce_window_") {
                    Op::ReduceWindow {
                        kind,
                        window: self.attr("window", Parser::uint_list)?,
                        stride: self.attr("stride", Parser::uint_list)?,
                        padding: self.attr("padding", Parser::pairs)?,
                    }
                } else if let Some(kind) = strip_kind(other, "reduce_") {
                    Op::Reduce {
                        kind,
                        axes: self.attr("axes", Parser::axis_list)?,
                        keepdims: self.attr("keepdims", Parser::boolean)?,
                    }
                } else if let Some(u) = UnaryOp::ALL.into_iter().find(|&u| unary_name(u) == other) {
                    Op::Unary(u)
                } else if let Some(b) = BinaryOp::ALL.into_iter().find(|&b| binary_name(b) == other) {
                    Op::Binary(b)
                } else if let Some(c) = CompareOp::ALL.into_iter().find(|&c| compare_name(c) == other) {
                    Op::Compare(c)
                } else {
                    return self.error(format!("unknown op `{other}`"));
                }
            }
        };
        Ok((op, args))
    }

    fn literal(&mut self, dtype: DType) -> Result<Literal> {
        let w = self.word("a literal")?;
        let lit = match dtype {
            DType::Bool => match w.as_str() {
                "true" => Some(Literal::Bool(true)),
                "false" => Some(Literal::Bool(false)),
                _ => None,
            },
            DType::I32 | DType::I64 => w.parse().ok().map(Literal::Int),
            DType::F32 | DType::F64 => parse_float(&w).map(Literal::float),
        };
        lit.map_or_else(
            || {
                self.pos -= 1;
                self.error(format!("`{w}` is not a {dtype} literal"))
            },
            Ok,
        )
    }

    /// The line and column of a verifier error's location in the text.
    fn node_position(&self, loc: (usize, Option<NodeId>)) -> Option<(usize, usize)> {
        let (header, nodes) = self.positions.get(loc.0)?;
        match loc.1 {
            Some(node) => nodes.get(node.index()).copied(),
            None => Some(*header),
        }
    }
}

fn strip_kind(name: &str, prefix: &str) -> Option<ReduceKind> {
    let rest = name.strip_prefix(prefix)?;
    ReduceKind::ALL.into_iter().find(|&k| reduce_name(k) == rest)
}

/// Parses a float as the printer writes it, including `inf`, `-inf`, `nan`.
pub fn parse_float(w: &str) -> Option<f64> {
    match w {
        "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ if w.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')) => w.parse().ok(),
        _ => None,
    }
}
