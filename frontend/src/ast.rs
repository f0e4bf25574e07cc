//! The syntax tree of a kiln file, as the parser builds it. Every node keeps
//! its span so that later errors point at the source.

use crate::source::Span;

/// A name with where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// One parsed file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Use(Use),
    Fn(FnDecl),
    Model(ModelDecl),
    Train(TrainDecl),
}

/// `use "path/to/file.kiln"`
#[derive(Clone, Debug, PartialEq)]
pub struct Use {
    pub path: String,
    pub span: Span,
}

/// `fn name(params) -> type { body }`
#[derive(Clone, Debug, PartialEq)]
pub struct FnDecl {
    pub name: Ident,
    pub params: Vec<FnParam>,
    pub ret: Option<TypeExpr>,
    pub body: Block,
    pub span: Span,
}

/// One parameter of a function or a model.
#[derive(Clone, Debug, PartialEq)]
pub struct FnParam {
    pub name: Ident,
    pub ty: ParamType,
    pub default: Option<Expr>,
}

/// What a parameter accepts.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamType {
    Tensor(TypeExpr),
    /// A compile-time `int`, `float` or `bool`.
    Scalar(ScalarKind, Span),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarKind {
    Int,
    Float,
    Bool,
}

impl ScalarKind {
    pub fn name(self) -> &'static str {
        match self {
            ScalarKind::Int => "int",
            ScalarKind::Float => "float",
            ScalarKind::Bool => "bool",
        }
    }
}

/// A tensor type as written: `f32[N, 784]`, `f32[..., C]`, `f32` (a scalar).
#[derive(Clone, Debug, PartialEq)]
pub struct TypeExpr {
    pub dtype: Ident,
    pub dims: Vec<DimExpr>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum DimExpr {
    /// `...`: any number of leading dimensions.
    Ellipsis(Span),
    /// A size: a constant expression, or a name that binds a symbol.
    Expr(Expr),
}

/// `model Name(args) { members }`
#[derive(Clone, Debug, PartialEq)]
pub struct ModelDecl {
    pub name: Ident,
    pub params: Vec<FnParam>,
    pub members: Vec<Member>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Member {
    /// `param w: f32[2, 1] = normal(0.0, 0.01)`, or `state mean: f32[c] =
    /// zeros`: state is updated by assignment while training, not trained.
    Param {
        state: bool,
        name: Ident,
        ty: TypeExpr,
        init: Expr,
        span: Span,
    },
    /// `fc1 = Linear(784, 256)`
    Sub {
        name: Ident,
        value: Expr,
        span: Span,
    },
    Fn(FnDecl),
}

/// `train Model { fn loss(...) ... optimizer sgd(lr = 0.1) }`
#[derive(Clone, Debug, PartialEq)]
pub struct TrainDecl {
    pub model: Ident,
    pub fns: Vec<FnDecl>,
    pub optimizer: Option<OptimizerDecl>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerDecl {
    pub name: Ident,
    pub args: Vec<Arg>,
    pub span: Span,
}

/// `{ statements; value }`
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    pub value: Option<Box<Expr>>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// `let x: type = value`
    Let { name: Ident, ty: Option<TypeExpr>, value: Expr, span: Span },
    /// `x = value`: gives an existing `let` (or a model's `state`) a new value.
    Assign { name: Ident, value: Expr, span: Span },
    /// `for i in start..end { body }` or `for b in list { body }`, unrolled
    /// at compile time.
    For { var: Ident, iter: ForIter, body: Block, span: Span },
    /// An expression evaluated for its errors only.
    Expr(Expr),
}

/// What a `for` runs over.
#[derive(Clone, Debug, PartialEq)]
pub enum ForIter {
    /// `start..end`: compile-time integers.
    Range(Expr, Expr),
    /// A compile-time list: its items in order.
    Each(Expr),
}

impl ForIter {
    pub fn span(&self) -> Span {
        match self {
            ForIter::Range(a, b) => a.span.to(b.span),
            ForIter::Each(e) => e.span,
        }
    }
}

/// A call argument, positional or `name = value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Int(i64),
    Float(f64),
    Bool(bool),
    Name(String),
    List(Vec<Expr>),
    /// `[item for var in iter]`, evaluated at compile time.
    Comprehension(Box<Expr>, Ident, Box<ForIter>),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Call(Box<Expr>, Vec<Arg>),
    Index(Box<Expr>, Vec<IndexItem>),
    Field(Box<Expr>, Ident),
    If(Box<Expr>, Block, Block),
    Block(Block),
    /// A placeholder where the parser recovered from an error.
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Neg,
    Not,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Pow,
    MatMul,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
            BinaryOp::Pow => "**",
            BinaryOp::MatMul => "@",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::And => "&&",
            BinaryOp::Or => "||",
        }
    }
}

/// One entry of `x[...]`.
#[derive(Clone, Debug, PartialEq)]
pub enum IndexItem {
    /// `i`: one element (the axis disappears), or a gather with a tensor.
    At(Expr),
    /// `start:stop:step`, each optional.
    Range { start: Option<Box<Expr>>, stop: Option<Box<Expr>>, step: Option<Box<Expr>>, span: Span },
}
