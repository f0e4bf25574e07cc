//! kiln's intermediate representations: the graph IR (typed tensor ops in a
//! DAG), its text form, its verifier, and the reference interpreter that
//! gives it meaning; and the kernel IR (`kernel`: loop nests over buffers,
//! what backends consume), with its own text form and verifier.
//!
//! Invariant: this crate depends on no other kiln crate and knows nothing of
//! the frontend, egg, Cranelift or LLVM.

mod graph;
mod init;
pub mod interp;
pub mod kernel;
mod op;
mod parse;
mod print;
pub mod random;
pub mod scalar;
mod types;
mod typing;
mod verify;

pub use graph::{Function, Graph, Init, InputDecl, Module, Node, NodeId, ParamDecl};
pub use init::{initialize, initialize_params, try_initialize_params};
pub use op::{BinaryOp, CompareOp, ConvAttrs, Literal, Op, ReduceKind, UnaryOp};
pub use parse::{ParseError, parse_float, parse_module};
pub use print::{mnemonic, print_function, print_module};
pub use types::{
    Bindings, DType, Dim, ElementCount, F64Bits, MAX_TENSOR_BYTES, Shape, Symbol, TensorType, write_float,
};
pub use typing::{TypeContext, broadcastable, infer, window_output};
pub use verify::{VerifyError, render_error, verify_module};
