//! `parse(print(m)) == m` for random valid modules, and the parser's errors.
//!
//! The generator builds graphs op by op, trying random ops on random earlier
//! nodes through the typed builder, which keeps only the ones that fit; so
//! every generated module verifies, and between them they use every op,
//! dtype and attribute kind (checked by `the_generator_reaches_every_op`).

use kiln_ir::{
    BinaryOp, CompareOp, ConvAttrs, DType, Dim, F64Bits, Function, Init, InputDecl, Literal, Module, NodeId, Op,
    ParamDecl, ReduceKind, Shape, Symbol, TensorType, UnaryOp, parse_module, verify_module,
};
use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, TestRng};

/// Builds a random module from a seeded choice stream.
struct Gen {
    rng: TestRng,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&seed.to_le_bytes());
        Gen { rng: TestRng::from_seed(RngAlgorithm::ChaCha, &s) }
    }

    fn below(&mut self, n: usize) -> usize {
        (self.rng.next_u32() as usize) % n.max(1)
    }

    fn float(&mut self) -> f64 {
        let specials = [0.0, -0.0, 1.0, -2.5, 1e-8, 3.25e12, f64::INFINITY, f64::NEG_INFINITY, 0.1];
        if self.below(3) == 0 {
            specials[self.below(specials.len())]
        } else {
            (self.rng.next_u64() as f64 / 7.0).sin() * 1e3
        }
    }

    fn module(&mut self) -> Module {
        let params = vec![
            ParamDecl {
                name: "layer.w".into(),
                ty: TensorType::new(DType::F32, Shape::of(&[4, 3])),
                init: Init::XavierUniform,
            },
            ParamDecl {
                name: "b".into(),
                ty: TensorType::new(DType::F32, Shape::of(&[3])),
                init: Init::Normal { mean: F64Bits::new(self.float()), std: F64Bits::new(0.01) },
            },
            ParamDecl {
                name: "u".into(),
                ty: TensorType::new(DType::F64, Shape::of(&[2])),
                init: Init::Uniform { low: F64Bits::new(-1.0), high: F64Bits::new(2.0) },
            },
            ParamDecl {
                name: "k".into(),
                ty: TensorType::new(DType::F32, Shape::of(&[3, 3, 3, 3])),
                init: Init::KaimingNormal,
            },
        ];
        let mut module = Module { params, functions: Vec::new() };
        for i in 0..1 + self.below(2) {
            let f = self.function(&module, i);
            module.functions.push(f);
        }
        module
    }

    fn function(&mut self, module: &Module, index: usize) -> Function {
        let n = Dim::Sym(Symbol::new("N"));
        let inputs = vec![
            InputDecl { name: "x".into(), ty: TensorType::new(DType::F32, Shape(vec![n.clone(), Dim::Const(4)])) },
            InputDecl { name: "labels".into(), ty: TensorType::new(DType::I32, Shape(vec![n])) },
            InputDecl { name: "img".into(), ty: TensorType::new(DType::F32, Shape::of(&[2, 3, 6, 6])) },
            InputDecl { name: "key".into(), ty: TensorType::scalar(DType::I64) },
        ];
        let mut f = Function::new(format!("f{index}"), inputs);
        let mut nodes: Vec<NodeId> = Vec::new();
        for i in 0..4 {
            nodes.push(add(module, &mut f, Op::Input { index: i }, &[]).expect("inputs type"));
        }
        for _ in 0..10 + self.below(30) {
            if let Some(id) = self.random_node(module, &mut f, &nodes) {
                nodes.push(id);
            }
        }
        let outputs = 1 + self.below(2);
        f.outputs = (0..outputs).map(|_| nodes[self.below(nodes.len())]).collect();
        f
    }

    /// Tries one random op on random operands; `None` if they do not fit.
    fn random_node(&mut self, module: &Module, f: &mut Function, nodes: &[NodeId]) -> Option<NodeId> {
        let a = nodes[self.below(nodes.len())];
        let b = nodes[self.below(nodes.len())];
        let ta = f.graph.ty(a).clone();
        let rank = ta.rank();
        let op = match self.below(24) {
            0 => Op::Unary(UnaryOp::ALL[self.below(UnaryOp::ALL.len())]),
            1 => return add(module, f, Op::Binary(BinaryOp::ALL[self.below(BinaryOp::ALL.len())]), &[a, a]),
            2 => Op::Binary(BinaryOp::ALL[self.below(BinaryOp::ALL.len())]),
            3 => return add(module, f, Op::Compare(CompareOp::ALL[self.below(6)]), &[a, a]),
            4 => {
                let c = add(module, f, Op::Compare(CompareOp::Eq), &[a, a])?;
                return add(module, f, Op::Select, &[c, a, a]);
            }
            5 => Op::Cast { to: DType::ALL[self.below(5)] },
            6 => Op::StopGradient,
            7 => {
                let axes: Vec<usize> = (0..rank).filter(|_| self.below(2) == 0).collect();
                Op::Reduce { kind: ReduceKind::ALL[self.below(2)], axes, keepdims: self.below(2) == 0 }
            }
            8 => {
                let mut dims = ta.shape.0.clone();
                dims.reverse();
                Op::Reshape { shape: Shape(dims) }
            }
            9 => {
                let mut dims = ta.shape.0.clone();
                dims.insert(0, Dim::Const(2));
                Op::Broadcast { shape: Shape(dims) }
            }
            10 => Op::Permute { perm: (0..rank).rev().collect() },
            11 => Op::Slice { axis: self.below(rank), start: 0, stop: 1, step: 1 + self.below(2) as u64 },
            12 => Op::Pad {
                padding: (0..rank)
                    .map(|i| if ta.shape.0[i].as_const().is_some() { (self.below(2) as u64, 1) } else { (0, 0) })
                    .collect(),
            },
            13 => return add(module, f, Op::Concat { axis: self.below(rank.max(1)) }, &[a, a, a]),
            14 => {
                let p = add(module, f, Op::Param { name: "layer.w".into() }, &[])?;
                return add(module, f, Op::MatMul, &[a, p]);
            }
            15 => {
                let w = add(module, f, Op::Param { name: "k".into() }, &[])?;
                let attrs =
                    ConvAttrs { stride: vec![1, 2], padding: vec![(1, 1), (0, 2)], dilation: vec![1, 2], groups: 1 };
                return add(module, f, Op::Conv(attrs), &[a, w]);
            }
            16 => Op::ReduceWindow {
                kind: ReduceKind::ALL[self.below(2)],
                window: (0..rank).map(|i| if i >= 2 { 2 } else { 1 }).collect(),
                stride: (0..rank).map(|i| if i >= 2 { 2 } else { 1 }).collect(),
                padding: (0..rank).map(|i| if i >= 2 { (1, 0) } else { (0, 0) }).collect(),
            },
            17 => return add(module, f, Op::Gather { axis: self.below(rank.max(1)) }, &[a, b]),
            18 => {
                let g = add(module, f, Op::Gather { axis: 0 }, &[a, b])?;
                return add(module, f, Op::ScatterAdd { axis: 0 }, &[a, b, g]);
            }
            19 => {
                let (value, dtype) = match DType::ALL[self.below(5)] {
                    DType::F32 => (Literal::float(self.float()), DType::F32),
                    DType::F64 => (Literal::float(self.float()), DType::F64),
                    DType::I32 => (Literal::Int(self.rng.next_u32() as i32 as i64), DType::I32),
                    DType::I64 => (Literal::Int(self.rng.next_u64() as i64), DType::I64),
                    DType::Bool => (Literal::Bool(self.below(2) == 0), DType::Bool),
                };
                return add(module, f, Op::Constant { value, dtype, shape: ta.shape.clone() }, &[]);
            }
            20 => {
                return add(
                    module,
                    f,
                    Op::Iota { axis: self.below(rank.max(1)), dtype: DType::I64, shape: ta.shape.clone() },
                    &[],
                );
            }
            21 => {
                let key = add(module, f, Op::Input { index: 3 }, &[])?;
                let stream = self.rng.next_u64() % 100;
                return add(module, f, Op::RandomBits { stream, dtype: DType::I32, shape: ta.shape.clone() }, &[key]);
            }
            22 => return add(module, f, Op::DimValue { symbol: Symbol::new("N") }, &[]),
            _ => return add(module, f, Op::Param { name: ["b", "u", "layer.w"][self.below(3)].into() }, &[]),
        };
        let args: Vec<NodeId> = match op.arity() {
            Some(2) => vec![a, b],
            _ => vec![a],
        };
        add(module, f, op, &args)
    }
}

/// Adds `op` if its operands fit it.
fn add(module: &Module, f: &mut Function, op: Op, args: &[NodeId]) -> Option<NodeId> {
    let ctx = kiln_ir::TypeContext { inputs: &f.inputs, params: &module.params };
    f.graph.add(&ctx, op, args).ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn printing_then_parsing_gives_the_same_module(seed in any::<u64>()) {
        let module = Gen::new(seed).module();
        verify_module(&module).expect("generated modules are valid");
        let text = module.to_string();
        let parsed = parse_module(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&parsed, &module, "{}", text);
        prop_assert_eq!(parsed.to_string(), text);
    }
}

#[test]
fn the_generator_reaches_every_op() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..400u64 {
        for f in Gen::new(seed).module().functions {
            for (_, node) in f.graph.nodes() {
                seen.insert(kiln_ir::mnemonic(&node.op));
            }
        }
    }
    for op in [
        "input",
        "param",
        "const",
        "dim",
        "iota",
        "random_bits",
        "select",
        "cast",
        "stop_gradient",
        "reduce_sum",
        "reduce_max",
        "reshape",
        "broadcast",
        "permute",
        "slice",
        "pad",
        "concat",
        "matmul",
        "conv",
        "reduce_window_sum",
        "reduce_window_max",
        "gather",
        "scatter_add",
        "eq",
        "add",
        "exp",
    ] {
        assert!(seen.contains(op), "the generator never produced `{op}`; it produced {seen:?}");
    }
}

#[test]
fn syntax_errors_give_line_and_column() {
    let e = parse_module("func f(x: f32[3]) -> (f32[3]) {\n  %0: f32[3] = input 0\n  return %0 %0\n}\n").unwrap_err();
    assert_eq!((e.line, e.column), (3, 13), "{e}");
    let e = parse_module("param w: f33[3] = zeros\n").unwrap_err();
    assert_eq!((e.line, e.column), (1, 10), "{e}");
    assert!(e.message.contains("dtype"), "{e}");
    let e = parse_module("func f() -> () {\n  return\n}\n").unwrap_err();
    assert!(e.message.contains("returns nothing"), "{e}");
}
