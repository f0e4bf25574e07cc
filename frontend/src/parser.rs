//! The parser: tokens to a syntax tree, by recursive descent.
//!
//! Statements end at a line break, except inside `(...)` and `[...]`; a
//! binary operator therefore continues an expression only from the end of a
//! line, never from the start of the next one. On a syntax error the parser
//! records a diagnostic and skips to the next statement or item, so one run
//! reports several errors. It never panics, whatever the input.

use crate::ast::*;
use crate::diag::{Code, Diagnostic};
use crate::lexer::{Token, TokenKind};
use crate::source::Span;

/// Parses one file's tokens; syntax errors go to `diagnostics`.
pub fn parse(tokens: Vec<Token>, source: &str, diagnostics: &mut Vec<Diagnostic>) -> File {
    let newline_before = newline_flags(&tokens, source);
    let mut p = Parser { tokens, newline_before, pos: 0, diagnostics, nesting: vec![false], depth: 0 };
    p.file()
}

/// Whether a line break separates each token from the one before it.
fn newline_flags(tokens: &[Token], source: &str) -> Vec<bool> {
    let mut prev_end = 0usize;
    tokens
        .iter()
        .map(|t| {
            let start = t.span.start as usize;
            let gap = source.get(prev_end..start).unwrap_or("");
            prev_end = t.span.end as usize;
            gap.contains('\n')
        })
        .collect()
}

/// A syntax error already reported; the caller recovers.
struct Reported;

type PResult<T> = Result<T, Reported>;

/// Nesting deeper than this is reported instead of overflowing the stack.
const MAX_DEPTH: usize = 2000;

struct Parser<'d> {
    tokens: Vec<Token>,
    newline_before: Vec<bool>,
    pos: usize,
    diagnostics: &'d mut Vec<Diagnostic>,
    /// Whether line breaks are ignored at each level of brackets.
    nesting: Vec<bool>,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &TokenKind {
        &self.tokens[self.pos.min(self.tokens.len() - 1)].kind
    }

    fn peek_at(&self, offset: usize) -> &TokenKind {
        &self.tokens[(self.pos + offset).min(self.tokens.len() - 1)].kind
    }

    fn span(&self) -> Span {
        self.tokens[self.pos.min(self.tokens.len() - 1)].span
    }

    fn prev_span(&self) -> Span {
        self.tokens[self.pos.saturating_sub(1).min(self.tokens.len() - 1)].span
    }

    /// Whether a line break comes before the current token and counts here.
    fn at_line_start(&self) -> bool {
        !self.nesting.last().copied().unwrap_or(false) && self.newline_before.get(self.pos).copied().unwrap_or(false)
    }

    fn bump(&mut self) -> Token {
        let t = self.tokens[self.pos.min(self.tokens.len() - 1)].clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn at(&self, kind: &TokenKind) -> bool {
        self.peek() == kind
    }

    fn eat(&mut self, kind: &TokenKind) -> bool {
        if self.at(kind) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn error(&mut self, span: Span, message: String, label: &str) -> Reported {
        self.diagnostics.push(Diagnostic::new(Code("E0101"), span, message).label(label));
        Reported
    }

    fn expected(&mut self, what: &str) -> Reported {
        let found = self.peek().describe();
        let span = self.span();
        self.error(span, format!("expected {what}, found {found}"), &format!("expected {what} here"))
    }

    fn expect(&mut self, kind: TokenKind) -> PResult<Span> {
        if self.at(&kind) { Ok(self.bump().span) } else { Err(self.expected(&kind.describe())) }
    }

    fn ident(&mut self, what: &str) -> PResult<Ident> {
        match self.peek().clone() {
            TokenKind::Ident(name) => {
                let span = self.bump().span;
                Ok(Ident { name, span })
            }
            _ => Err(self.expected(what)),
        }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.depth -= 1;
            let span = self.span();
            self.diagnostics.push(
                Diagnostic::new(Code("E0102"), span, "the program nests too deeply")
                    .label(format!("nesting exceeds {MAX_DEPTH} levels here")),
            );
            return Err(Reported);
        }
        Ok(())
    }

    /// Runs `f` with line breaks ignored (inside parentheses and brackets)
    /// or respected (inside braces).
    fn nested<T>(&mut self, ignore_newlines: bool, f: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        self.enter()?;
        self.nesting.push(ignore_newlines);
        let result = f(self);
        self.nesting.pop();
        self.depth -= 1;
        result
    }

    // ---------------------------------------------------------------- items

    fn file(&mut self) -> File {
        let mut items = Vec::new();
        while !self.at(&TokenKind::Eof) {
            match self.item() {
                Ok(item) => items.push(item),
                Err(Reported) => self.skip_to_item(),
            }
        }
        File { items }
    }

    fn skip_to_item(&mut self) {
        self.bump();
        while !matches!(
            self.peek(),
            TokenKind::Eof | TokenKind::Fn | TokenKind::Model | TokenKind::Train | TokenKind::Use
        ) || !self.newline_before.get(self.pos).copied().unwrap_or(true)
        {
            if self.at(&TokenKind::Eof) {
                break;
            }
            self.bump();
        }
    }

    fn item(&mut self) -> PResult<Item> {
        match self.peek() {
            TokenKind::Use => {
                let start = self.bump().span;
                match self.peek().clone() {
                    TokenKind::Str(path) => {
                        let end = self.bump().span;
                        Ok(Item::Use(Use { path, span: start.to(end) }))
                    }
                    _ => Err(self.expected("a file path in quotes")),
                }
            }
            TokenKind::Fn => Ok(Item::Fn(self.fn_decl()?)),
            TokenKind::Model => Ok(Item::Model(self.model()?)),
            TokenKind::Train => Ok(Item::Train(self.train()?)),
            _ => Err(self.expected("`fn`, `model`, `train` or `use`")),
        }
    }

    fn fn_decl(&mut self) -> PResult<FnDecl> {
        let start = self.expect(TokenKind::Fn)?;
        let name = self.ident("a function name")?;
        let params = self.params()?;
        let ret = if self.eat(&TokenKind::Arrow) { Some(self.type_expr()?) } else { None };
        let body = self.block()?;
        let span = start.to(body.span);
        Ok(FnDecl { name, params, ret, body, span })
    }

    fn params(&mut self) -> PResult<Vec<FnParam>> {
        self.expect(TokenKind::LParen)?;
        self.nested(true, |p| {
            let mut params = Vec::new();
            while !p.at(&TokenKind::RParen) {
                params.push(p.param()?);
                if !p.eat(&TokenKind::Comma) {
                    break;
                }
            }
            p.expect(TokenKind::RParen)?;
            Ok(params)
        })
    }

    fn param(&mut self) -> PResult<FnParam> {
        let name = self.ident("a parameter name")?;
        self.expect(TokenKind::Colon)?;
        let (ty, mut default) = match self.peek().clone() {
            // `inputs: 784` is shorthand for `inputs: int = 784`.
            TokenKind::Int(_) | TokenKind::Float(_) | TokenKind::Minus => {
                let value = self.expr()?;
                let kind = if matches!(value.kind, ExprKind::Int(_)) { ScalarKind::Int } else { ScalarKind::Float };
                (ParamType::Scalar(kind, value.span), Some(value))
            }
            TokenKind::Ident(word)
                if matches!(word.as_str(), "int" | "float")
                    || (word == "bool" && self.peek_at(1) != &TokenKind::LBracket) =>
            {
                let span = self.bump().span;
                let kind = match word.as_str() {
                    "int" => ScalarKind::Int,
                    "float" => ScalarKind::Float,
                    _ => ScalarKind::Bool,
                };
                (ParamType::Scalar(kind, span), None)
            }
            _ => (ParamType::Tensor(self.type_expr()?), None),
        };
        if self.eat(&TokenKind::Assign) {
            default = Some(self.expr()?);
        }
        Ok(FnParam { name, ty, default })
    }

    fn type_expr(&mut self) -> PResult<TypeExpr> {
        let dtype = self.ident("a type like `f32[N, 10]`")?;
        let mut dims = Vec::new();
        let mut span = dtype.span;
        if self.at(&TokenKind::LBracket) && !self.at_line_start() {
            self.bump();
            dims = self.nested(true, |p| {
                let mut dims = Vec::new();
                while !p.at(&TokenKind::RBracket) {
                    if p.at(&TokenKind::Ellipsis) {
                        dims.push(DimExpr::Ellipsis(p.bump().span));
                    } else {
                        dims.push(DimExpr::Expr(p.expr()?));
                    }
                    if !p.eat(&TokenKind::Comma) {
                        break;
                    }
                }
                Ok(dims)
            })?;
            span = span.to(self.expect(TokenKind::RBracket)?);
        }
        Ok(TypeExpr { dtype, dims, span })
    }

    fn model(&mut self) -> PResult<ModelDecl> {
        let start = self.expect(TokenKind::Model)?;
        let name = self.ident("a model name")?;
        let params = if self.at(&TokenKind::LParen) { self.params()? } else { Vec::new() };
        let open = self.expect(TokenKind::LBrace)?;
        let members = self.nested(false, |p| {
            let mut members = Vec::new();
            while !matches!(p.peek(), TokenKind::RBrace | TokenKind::Eof) {
                match p.member() {
                    Ok(m) => members.push(m),
                    Err(Reported) => p.skip_to_member(),
                }
            }
            Ok(members)
        })?;
        let end = self.close_brace(open)?;
        Ok(ModelDecl { name, params, members, span: start.to(end) })
    }

    fn skip_to_member(&mut self) {
        self.bump();
        let mut depth = 0usize;
        loop {
            match self.peek() {
                TokenKind::Eof => return,
                TokenKind::RBrace if depth == 0 => return,
                TokenKind::LBrace => depth += 1,
                TokenKind::RBrace => depth -= 1,
                TokenKind::Fn | TokenKind::Param if depth == 0 => return,
                TokenKind::Ident(word)
                    if depth == 0
                        && self.newline_before[self.pos]
                        && (self.peek_at(1) == &TokenKind::Assign
                            || (word == "state" && matches!(self.peek_at(1), TokenKind::Ident(_)))) =>
                {
                    return;
                }
                _ => {}
            }
            self.bump();
        }
    }

    fn member(&mut self) -> PResult<Member> {
        match self.peek() {
            TokenKind::Fn => Ok(Member::Fn(self.fn_decl()?)),
            TokenKind::Param => self.param_member(false),
            // `state` is a keyword only here, before a member's name.
            TokenKind::Ident(word) if word == "state" && matches!(self.peek_at(1), TokenKind::Ident(_)) => {
                self.param_member(true)
            }
            TokenKind::Ident(_) => {
                let name = self.ident("a member name")?;
                self.expect(TokenKind::Assign)?;
                let value = self.expr()?;
                Ok(Member::Sub { span: name.span.to(value.span), name, value })
            }
            _ => Err(self.expected("`param`, `state`, `fn` or a sub-model like `fc = Linear(784, 10)`")),
        }
    }

    /// `param NAME: type = init` or `state NAME: type = init`.
    fn param_member(&mut self, state: bool) -> PResult<Member> {
        let start = self.bump().span;
        let name = self.ident("a parameter name")?;
        self.expect(TokenKind::Colon)?;
        let ty = self.type_expr()?;
        if !self.at(&TokenKind::Assign) {
            let span = self.span();
            self.diagnostics.push(
                Diagnostic::new(Code("E0501"), span, format!("parameter `{}` has no initializer", name.name))
                    .label("expected `= initializer` here")
                    .hint("write for example `= zeros` or `= normal(0.0, 0.01)`"),
            );
            return Err(Reported);
        }
        self.bump();
        let init = self.expr()?;
        Ok(Member::Param { state, span: start.to(init.span), name, ty, init })
    }

    fn train(&mut self) -> PResult<TrainDecl> {
        let start = self.expect(TokenKind::Train)?;
        let model = self.ident("the name of the model to train")?;
        let open = self.expect(TokenKind::LBrace)?;
        let (fns, optimizer) = self.nested(false, |p| {
            let mut fns = Vec::new();
            let mut optimizer = None;
            while !matches!(p.peek(), TokenKind::RBrace | TokenKind::Eof) {
                let result = match p.peek() {
                    TokenKind::Fn => p.fn_decl().map(|f| fns.push(f)),
                    TokenKind::Optimizer => {
                        let start = p.bump().span;
                        p.ident("an optimizer name such as `sgd`").and_then(|name| {
                            let (args, end) = p.call_args()?;
                            optimizer = Some(OptimizerDecl { name, args, span: start.to(end) });
                            Ok(())
                        })
                    }
                    _ => Err(p.expected("`fn` or `optimizer`")),
                };
                if result.is_err() {
                    p.skip_to_member();
                }
            }
            Ok((fns, optimizer))
        })?;
        let end = self.close_brace(open)?;
        Ok(TrainDecl { model, fns, optimizer, span: start.to(end) })
    }

    // ----------------------------------------------------------- statements

    /// Expects the `}` that closes the `{` at `open`, pointing at both if it
    /// is missing.
    fn close_brace(&mut self, open: Span) -> PResult<Span> {
        self.expect(TokenKind::RBrace).inspect_err(|_| {
            if let Some(d) = self.diagnostics.last_mut() {
                d.secondary.push((open, "this `{` is never closed".into()));
            }
        })
    }

    fn block(&mut self) -> PResult<Block> {
        let start = self.expect(TokenKind::LBrace)?;
        let (stmts, value) = self.nested(false, |p| {
            let mut stmts = Vec::new();
            let mut value = None;
            while !matches!(p.peek(), TokenKind::RBrace | TokenKind::Eof) {
                if let Some(v) = value.take() {
                    stmts.push(Stmt::Expr(v));
                }
                match p.stmt() {
                    Ok(Stmt::Expr(e)) => value = Some(e),
                    Ok(s) => stmts.push(s),
                    Err(Reported) => p.skip_to_stmt(),
                }
            }
            Ok((stmts, value.map(Box::new)))
        })?;
        let end = self.close_brace(start)?;
        Ok(Block { stmts, value, span: start.to(end) })
    }

    fn skip_to_stmt(&mut self) {
        let mut depth = 0usize;
        loop {
            match self.peek() {
                TokenKind::Eof => return,
                TokenKind::RBrace if depth == 0 => return,
                TokenKind::LBrace | TokenKind::LParen | TokenKind::LBracket => depth += 1,
                TokenKind::RBrace | TokenKind::RParen | TokenKind::RBracket => depth = depth.saturating_sub(1),
                _ => {}
            }
            self.bump();
            if depth == 0 && self.newline_before.get(self.pos).copied().unwrap_or(true) {
                return;
            }
        }
    }

    /// `NAME in start..end` or `NAME in list`, after `for`.
    fn for_head(&mut self) -> PResult<(Ident, ForIter)> {
        let var = self.ident("a loop variable")?;
        self.expect(TokenKind::In)?;
        let from = self.expr()?;
        if self.eat(&TokenKind::DotDot) {
            let to = self.expr()?;
            return Ok((var, ForIter::Range(from, to)));
        }
        Ok((var, ForIter::Each(from)))
    }

    fn stmt(&mut self) -> PResult<Stmt> {
        match self.peek() {
            TokenKind::Let => {
                let start = self.bump().span;
                let name = self.ident("a variable name")?;
                let ty = if self.eat(&TokenKind::Colon) { Some(self.type_expr()?) } else { None };
                self.expect(TokenKind::Assign)?;
                let value = self.expr()?;
                Ok(Stmt::Let { span: start.to(value.span), name, ty, value })
            }
            TokenKind::For => {
                let start = self.bump().span;
                let (var, iter) = self.for_head()?;
                let body = self.block()?;
                Ok(Stmt::For { span: start.to(body.span), var, iter, body })
            }
            TokenKind::Ident(_) if self.peek_at(1) == &TokenKind::Assign => {
                let name = self.ident("a variable name")?;
                self.bump();
                let value = self.expr()?;
                Ok(Stmt::Assign { span: name.span.to(value.span), name, value })
            }
            _ => {
                let e = self.expr()?;
                if !matches!(self.peek(), TokenKind::RBrace | TokenKind::Eof) && !self.at_line_start() {
                    return Err(self.expected("a line break or `}` after the expression"));
                }
                Ok(Stmt::Expr(e))
            }
        }
    }

    // ---------------------------------------------------------- expressions

    fn expr(&mut self) -> PResult<Expr> {
        self.enter()?;
        let result = self.binary(0);
        self.depth -= 1;
        result
    }

    /// Binary operators by precedence level, loosest first.
    fn binary_op(&self, level: usize) -> Option<BinaryOp> {
        if self.at_line_start() {
            return None;
        }
        let op = match (level, self.peek()) {
            (0, TokenKind::OrOr) => BinaryOp::Or,
            (1, TokenKind::AndAnd) => BinaryOp::And,
            (2, TokenKind::EqEq) => BinaryOp::Eq,
            (2, TokenKind::NotEq) => BinaryOp::Ne,
            (2, TokenKind::Lt) => BinaryOp::Lt,
            (2, TokenKind::Le) => BinaryOp::Le,
            (2, TokenKind::Gt) => BinaryOp::Gt,
            (2, TokenKind::Ge) => BinaryOp::Ge,
            (3, TokenKind::Plus) => BinaryOp::Add,
            (3, TokenKind::Minus) => BinaryOp::Sub,
            (4, TokenKind::Star) => BinaryOp::Mul,
            (4, TokenKind::Slash) => BinaryOp::Div,
            (4, TokenKind::Percent) => BinaryOp::Rem,
            (4, TokenKind::At) => BinaryOp::MatMul,
            _ => return None,
        };
        Some(op)
    }

    fn binary(&mut self, level: usize) -> PResult<Expr> {
        if level == 5 {
            return self.unary();
        }
        let mut lhs = self.binary(level + 1)?;
        let depth = self.depth;
        while let Some(op) = self.binary_op(level) {
            self.bump();
            // Each operator in a chain deepens the tree the checker walks.
            if let Err(r) = self.enter() {
                self.depth = depth;
                return Err(r);
            }
            let rhs = self.binary(level + 1);
            let Ok(rhs) = rhs else {
                self.depth = depth;
                return rhs;
            };
            let span = lhs.span.to(rhs.span);
            lhs = Expr { kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)), span };
            // Comparisons do not chain: `a < b < c` is an error.
            if level == 2
                && let Some(op) = self.binary_op(2)
            {
                let span = self.span();
                return Err(self.error(
                    span,
                    format!("comparisons cannot be chained with `{}`", op.symbol()),
                    "a second comparison",
                ));
            }
        }
        self.depth = depth;
        Ok(lhs)
    }

    fn unary(&mut self) -> PResult<Expr> {
        let op = match self.peek() {
            TokenKind::Minus => UnaryOp::Neg,
            TokenKind::Bang => UnaryOp::Not,
            _ => return self.power(),
        };
        let start = self.bump().span;
        self.enter()?;
        let operand = self.unary();
        self.depth -= 1;
        let operand = operand?;
        let span = start.to(operand.span);
        Ok(Expr { kind: ExprKind::Unary(op, Box::new(operand)), span })
    }

    fn power(&mut self) -> PResult<Expr> {
        let base = self.postfix()?;
        if self.at(&TokenKind::StarStar) && !self.at_line_start() {
            self.bump();
            self.enter()?;
            let exponent = self.unary();
            self.depth -= 1;
            let exponent = exponent?;
            let span = base.span.to(exponent.span);
            return Ok(Expr { kind: ExprKind::Binary(BinaryOp::Pow, Box::new(base), Box::new(exponent)), span });
        }
        Ok(base)
    }

    fn postfix(&mut self) -> PResult<Expr> {
        let depth = self.depth;
        let result = self.postfix_chain();
        self.depth = depth;
        result
    }

    fn postfix_chain(&mut self) -> PResult<Expr> {
        let mut e = self.primary()?;
        loop {
            if self.at_line_start() {
                break;
            }
            if matches!(self.peek(), TokenKind::LParen | TokenKind::LBracket | TokenKind::Dot) {
                self.enter()?;
            }
            match self.peek() {
                TokenKind::LParen => {
                    let (args, end) = self.call_args()?;
                    let span = e.span.to(end);
                    e = Expr { kind: ExprKind::Call(Box::new(e), args), span };
                }
                TokenKind::LBracket => {
                    self.bump();
                    let items = self.nested(true, |p| {
                        let mut items = Vec::new();
                        while !p.at(&TokenKind::RBracket) {
                            items.push(p.index_item()?);
                            if !p.eat(&TokenKind::Comma) {
                                break;
                            }
                        }
                        Ok(items)
                    })?;
                    let end = self.expect(TokenKind::RBracket)?;
                    let span = e.span.to(end);
                    e = Expr { kind: ExprKind::Index(Box::new(e), items), span };
                }
                TokenKind::Dot => {
                    self.bump();
                    let field = self.ident("a member name after `.`")?;
                    let span = e.span.to(field.span);
                    e = Expr { kind: ExprKind::Field(Box::new(e), field), span };
                }
                _ => break,
            }
        }
        Ok(e)
    }

    fn call_args(&mut self) -> PResult<(Vec<Arg>, Span)> {
        self.expect(TokenKind::LParen)?;
        let args = self.nested(true, |p| {
            let mut args = Vec::new();
            while !p.at(&TokenKind::RParen) {
                let name = match (p.peek().clone(), p.peek_at(1)) {
                    (TokenKind::Ident(_), TokenKind::Assign) => {
                        let name = p.ident("an argument name")?;
                        p.bump();
                        Some(name)
                    }
                    _ => None,
                };
                args.push(Arg { name, value: p.expr()? });
                if !p.eat(&TokenKind::Comma) {
                    break;
                }
            }
            Ok(args)
        })?;
        let end = self.expect(TokenKind::RParen)?;
        Ok((args, end))
    }

    fn index_item(&mut self) -> PResult<IndexItem> {
        let start_span = self.span();
        let start = if self.at(&TokenKind::Colon) { None } else { Some(Box::new(self.expr()?)) };
        if !self.eat(&TokenKind::Colon) {
            return start.map(|e| IndexItem::At(*e)).ok_or_else(|| self.expected("an index"));
        }
        let bound = |p: &mut Self| -> PResult<Option<Box<Expr>>> {
            if matches!(p.peek(), TokenKind::Colon | TokenKind::Comma | TokenKind::RBracket) {
                Ok(None)
            } else {
                p.expr().map(|e| Some(Box::new(e)))
            }
        };
        let stop = bound(self)?;
        let step = if self.eat(&TokenKind::Colon) { bound(self)? } else { None };
        Ok(IndexItem::Range { start, stop, step, span: start_span.to(self.prev_span()) })
    }

    fn primary(&mut self) -> PResult<Expr> {
        let span = self.span();
        let kind = match self.peek().clone() {
            TokenKind::Int(i) => {
                self.bump();
                ExprKind::Int(i)
            }
            TokenKind::Float(x) => {
                self.bump();
                ExprKind::Float(x)
            }
            TokenKind::True => {
                self.bump();
                ExprKind::Bool(true)
            }
            TokenKind::False => {
                self.bump();
                ExprKind::Bool(false)
            }
            TokenKind::Ident(name) => {
                self.bump();
                ExprKind::Name(name)
            }
            TokenKind::LParen => {
                self.bump();
                let inner = self.nested(true, |p| p.expr())?;
                let end = self.expect(TokenKind::RParen)?;
                return Ok(Expr { kind: inner.kind, span: span.to(end) });
            }
            TokenKind::LBracket => {
                self.bump();
                let kind = self.nested(true, |p| {
                    let mut items = Vec::new();
                    while !p.at(&TokenKind::RBracket) {
                        items.push(p.expr()?);
                        if items.len() == 1 && p.eat(&TokenKind::For) {
                            let (var, iter) = p.for_head()?;
                            let item = items.pop().map(Box::new).ok_or_else(|| p.expected("an expression"))?;
                            return Ok(ExprKind::Comprehension(item, var, Box::new(iter)));
                        }
                        if !p.eat(&TokenKind::Comma) {
                            break;
                        }
                    }
                    Ok(ExprKind::List(items))
                })?;
                let end = self.expect(TokenKind::RBracket)?;
                return Ok(Expr { kind, span: span.to(end) });
            }
            TokenKind::LBrace => {
                let block = self.block()?;
                return Ok(Expr { span: block.span, kind: ExprKind::Block(block) });
            }
            TokenKind::If => return self.if_expr(),
            _ => return Err(self.expected("an expression")),
        };
        Ok(Expr { kind, span })
    }

    fn if_expr(&mut self) -> PResult<Expr> {
        let start = self.expect(TokenKind::If)?;
        let cond = self.expr()?;
        let then = self.block()?;
        if !self.eat(&TokenKind::Else) {
            let span = self.span();
            return Err(self.error(span, "`if` needs an `else` branch".into(), "expected `else` here"));
        }
        let otherwise = if self.at(&TokenKind::If) {
            let nested = self.if_expr()?;
            Block { span: nested.span, stmts: Vec::new(), value: Some(Box::new(nested)) }
        } else {
            self.block()?
        };
        let span = start.to(otherwise.span);
        Ok(Expr { kind: ExprKind::If(Box::new(cond), then, otherwise), span })
    }
}
