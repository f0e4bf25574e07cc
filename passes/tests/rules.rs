//! Every rewrite rule, both sides evaluated by the interpreter in f64 on
//! random tensors: each case is a function whose output is the rule's
//! left-hand side; the test applies the rule to it, builds the right-hand
//! side into a second function, and compares their outputs. A rule without
//! a case fails `every_rule_has_a_case`.

use egg::Id;
use kiln_ir::interp::{EvalOptions, Params, Precision, Tensor, evaluate};
use kiln_ir::{DType, Function, Module, NodeId};
use kiln_passes::simplify::rule::{Rule, Term};
use kiln_passes::simplify::{load, rules};
use ndarray::{ArrayD, IxDyn};

/// A rule name, a function whose output the rule rewrites, and the range
/// of the random inputs.
struct Case {
    rule: &'static str,
    ir: &'static str,
    range: (f64, f64),
}

const ANY: (f64, f64) = (-3.0, 3.0);
const POSITIVE: (f64, f64) = (0.25, 3.0);

const CASES: &[Case] = &[
    Case {
        rule: "add_zero",
        ir: "func f(x: f64[4, 3]) -> (f64[4, 3]) {
  %0: f64[4, 3] = input 0
  %1: f64[4, 3] = const 0.0
  %2: f64[4, 3] = add %1, %0
  return %2
}",
        range: ANY,
    },
    Case {
        rule: "sub_zero",
        ir: "func f(x: f64[5]) -> (f64[5]) {
  %0: f64[5] = input 0
  %1: f64[5] = const 0.0
  %2: f64[5] = sub %0, %1
  return %2
}",
        range: ANY,
    },
    Case {
        rule: "mul_one",
        ir: "func f(x: f64[2, 3]) -> (f64[2, 3]) {
  %0: f64[2, 3] = input 0
  %1: f64[2, 3] = const 1.0
  %2: f64[2, 3] = mul %0, %1
  return %2
}",
        range: ANY,
    },
    Case {
        rule: "div_one",
        ir: "func f(x: f64[6]) -> (f64[6]) {
  %0: f64[6] = input 0
  %1: f64[6] = const 1.0
  %2: f64[6] = div %0, %1
  return %2
}",
        range: ANY,
    },
    Case {
        rule: "div_by_constant",
        ir: "func f(x: f64[6]) -> (f64[6]) {
  %0: f64[6] = input 0
  %1: f64[6] = const 0.8
  %2: f64[6] = div %0, %1
  return %2
}",
        range: ANY,
    },
    Case {
        rule: "mul_reciprocal",
        ir: "func f(x: f64[5], y: f64[5]) -> (f64[5]) {
  %0: f64[5] = input 0
  %1: f64[5] = input 1
  %2: f64[5] = const 1.0
  %3: f64[5] = div %2, %1
  %4: f64[5] = mul %0, %3
  return %4
}",
        range: ANY,
    },
    Case {
        rule: "mul_reciprocal",
        ir: "func f(x: f64[2, 3], y: f64[2, 3]) -> (f64[2, 3]) {
  %0: f64[2, 3] = input 0
  %1: f64[2, 3] = input 1
  %2: f64[2, 3] = recip %1
  %3: f64[2, 3] = mul %0, %2
  return %3
}",
        range: ANY,
    },
    Case {
        rule: "neg_neg",
        ir: "func f(x: f64[3, 2]) -> (f64[3, 2]) {
  %0: f64[3, 2] = input 0
  %1: f64[3, 2] = neg %0
  %2: f64[3, 2] = neg %1
  return %2
}",
        range: ANY,
    },
    Case {
        rule: "add_neg",
        ir: "func f(x: f64[4], y: f64[4]) -> (f64[4]) {
  %0: f64[4] = input 0
  %1: f64[4] = input 1
  %2: f64[4] = neg %1
  %3: f64[4] = add %0, %2
  return %3
}",
        range: ANY,
    },
    Case {
        rule: "sub_neg",
        ir: "func f(x: f64[4], y: f64[4]) -> (f64[4]) {
  %0: f64[4] = input 0
  %1: f64[4] = input 1
  %2: f64[4] = neg %1
  %3: f64[4] = sub %0, %2
  return %3
}",
        range: ANY,
    },
    Case {
        rule: "add_commute",
        ir: "func f(x: f64[4], y: f64[4]) -> (f64[4]) {
  %0: f64[4] = input 0
  %1: f64[4] = input 1
  %2: f64[4] = add %0, %1
  return %2
}",
        range: ANY,
    },
    Case {
        rule: "mul_commute",
        ir: "func f(x: f64[4], y: f64[4]) -> (f64[4]) {
  %0: f64[4] = input 0
  %1: f64[4] = input 1
  %2: f64[4] = mul %0, %1
  return %2
}",
        range: ANY,
    },
    Case {
        rule: "factor_mul",
        ir: "func f(a: f64[3, 4], b: f64[3, 4], c: f64[3, 4]) -> (f64[3, 4]) {
  %0: f64[3, 4] = input 0
  %1: f64[3, 4] = input 1
  %2: f64[3, 4] = input 2
  %3: f64[3, 4] = mul %0, %1
  %4: f64[3, 4] = mul %0, %2
  %5: f64[3, 4] = add %3, %4
  return %5
}",
        range: ANY,
    },
    Case {
        rule: "select_same",
        ir: "func f(x: f64[4], y: f64[4]) -> (f64[4]) {
  %0: f64[4] = input 0
  %1: f64[4] = input 1
  %2: bool[4] = lt %0, %1
  %3: f64[4] = exp %1
  %4: f64[4] = select %2, %3, %3
  return %4
}",
        range: ANY,
    },
    Case {
        rule: "stop_gradient_identity",
        ir: "func f(x: f64[2, 2]) -> (f64[2, 2]) {
  %0: f64[2, 2] = input 0
  %1: f64[2, 2] = stop_gradient %0
  return %1
}",
        range: ANY,
    },
    Case {
        rule: "broadcast_identity",
        ir: "func f(x: f64[2, 3]) -> (f64[2, 3]) {
  %0: f64[2, 3] = input 0
  %1: f64[2, 3] = broadcast %0
  return %1
}",
        range: ANY,
    },
    Case {
        rule: "broadcast_broadcast",
        ir: "func f(x: f64[3]) -> (f64[4, 2, 3]) {
  %0: f64[3] = input 0
  %1: f64[2, 3] = broadcast %0
  %2: f64[4, 2, 3] = broadcast %1
  return %2
}",
        range: ANY,
    },
    Case {
        rule: "reshape_identity",
        ir: "func f(x: f64[2, 3]) -> (f64[2, 3]) {
  %0: f64[2, 3] = input 0
  %1: f64[2, 3] = reshape %0
  return %1
}",
        range: ANY,
    },
    Case {
        rule: "reshape_reshape",
        ir: "func f(x: f64[2, 6]) -> (f64[4, 3]) {
  %0: f64[2, 6] = input 0
  %1: f64[12] = reshape %0
  %2: f64[4, 3] = reshape %1
  return %2
}",
        range: ANY,
    },
    Case {
        rule: "permute_identity",
        ir: "func f(x: f64[2, 3]) -> (f64[2, 3]) {
  %0: f64[2, 3] = input 0
  %1: f64[2, 3] = permute %0 perm=[0, 1]
  return %1
}",
        range: ANY,
    },
    Case {
        rule: "permute_permute",
        ir: "func f(x: f64[2, 3, 4]) -> (f64[4, 2, 3]) {
  %0: f64[2, 3, 4] = input 0
  %1: f64[3, 4, 2] = permute %0 perm=[1, 2, 0]
  %2: f64[4, 2, 3] = permute %1 perm=[1, 2, 0]
  return %2
}",
        range: ANY,
    },
    Case {
        rule: "unary_before_broadcast",
        ir: "func f(x: f64[3]) -> (f64[2, 3]) {
  %0: f64[3] = input 0
  %1: f64[2, 3] = broadcast %0
  %2: f64[2, 3] = exp %1
  return %2
}",
        range: ANY,
    },
    Case {
        rule: "unary_before_reshape",
        ir: "func f(x: f64[2, 6]) -> (f64[3, 4]) {
  %0: f64[2, 6] = input 0
  %1: f64[3, 4] = reshape %0
  %2: f64[3, 4] = sin %1
  return %2
}",
        range: ANY,
    },
    Case {
        rule: "binary_before_broadcast",
        ir: "func f(x: f64[3], y: f64[3]) -> (f64[4, 3]) {
  %0: f64[3] = input 0
  %1: f64[3] = input 1
  %2: f64[4, 3] = broadcast %0
  %3: f64[4, 3] = broadcast %1
  %4: f64[4, 3] = div %2, %3
  return %4
}",
        range: POSITIVE,
    },
    Case {
        rule: "reshape_of_broadcast_scalar",
        ir: "func f(x: f64[1]) -> (f64[5, 1]) {
  %0: f64[1] = input 0
  %1: f64[5] = broadcast %0
  %2: f64[5, 1] = reshape %1
  return %2
}",
        range: ANY,
    },
    Case {
        rule: "reduce_no_axes",
        ir: "func f(x: f64[2, 3]) -> (f64[2, 3]) {
  %0: f64[2, 3] = input 0
  %1: f64[2, 3] = reduce_sum %0 axes=[] keepdims=false
  return %1
}",
        range: ANY,
    },
    Case {
        rule: "reduce_reduce",
        ir: "func f(x: f64[2, 3, 4]) -> (f64[3]) {
  %0: f64[2, 3, 4] = input 0
  %1: f64[3, 4] = reduce_max %0 axes=[0] keepdims=false
  %2: f64[3] = reduce_max %1 axes=[1] keepdims=false
  return %2
}",
        range: ANY,
    },
    Case {
        rule: "keepdims_then_reshape",
        ir: "func f(x: f64[2, 3, 4]) -> (f64[2, 4]) {
  %0: f64[2, 3, 4] = input 0
  %1: f64[2, 1, 4] = reduce_sum %0 axes=[1] keepdims=true
  %2: f64[2, 4] = reshape %1
  return %2
}",
        range: ANY,
    },
    Case {
        rule: "sum_of_neg",
        ir: "func f(x: f64[3, 4]) -> (f64[4]) {
  %0: f64[3, 4] = input 0
  %1: f64[3, 4] = neg %0
  %2: f64[4] = reduce_sum %1 axes=[0] keepdims=false
  return %2
}",
        range: ANY,
    },
    Case {
        rule: "sum_of_scalar_multiple",
        ir: "func f(x: f64[3, 4], c: f64[]) -> (f64[3, 1]) {
  %0: f64[3, 4] = input 0
  %1: f64[] = input 1
  %2: f64[3, 4] = broadcast %1
  %3: f64[3, 4] = mul %2, %0
  %4: f64[3, 1] = reduce_sum %3 axes=[1] keepdims=true
  return %4
}",
        range: ANY,
    },
    Case {
        rule: "matmul_neg",
        ir: "func f(a: f64[3, 4], b: f64[4, 2]) -> (f64[3, 2]) {
  %0: f64[3, 4] = input 0
  %1: f64[4, 2] = input 1
  %2: f64[4, 2] = neg %1
  %3: f64[3, 2] = matmul %0, %2
  return %3
}",
        range: ANY,
    },
    Case {
        rule: "matmul_scalar_multiple",
        ir: "func f(a: f64[2, 3, 4], b: f64[2, 4, 5], c: f64[]) -> (f64[2, 3, 5]) {
  %0: f64[2, 3, 4] = input 0
  %1: f64[2, 4, 5] = input 1
  %2: f64[] = input 2
  %3: f64[2, 3, 4] = broadcast %2
  %4: f64[2, 3, 4] = mul %0, %3
  %5: f64[2, 3, 5] = matmul %4, %1
  return %5
}",
        range: ANY,
    },
    Case {
        rule: "matmul_reassociate_left",
        ir: "func f(a: f64[3, 4], b: f64[4, 5], c: f64[5, 2]) -> (f64[3, 2]) {
  %0: f64[3, 4] = input 0
  %1: f64[4, 5] = input 1
  %2: f64[5, 2] = input 2
  %3: f64[3, 5] = matmul %0, %1
  %4: f64[3, 2] = matmul %3, %2
  return %4
}",
        range: ANY,
    },
    Case {
        rule: "matmul_reassociate_right",
        ir: "func f(a: f64[3, 4], b: f64[4, 5], c: f64[5, 2]) -> (f64[3, 2]) {
  %0: f64[3, 4] = input 0
  %1: f64[4, 5] = input 1
  %2: f64[5, 2] = input 2
  %3: f64[4, 2] = matmul %1, %2
  %4: f64[3, 2] = matmul %0, %3
  return %4
}",
        range: ANY,
    },
    Case {
        rule: "fold_unary",
        ir: "func f(x: f64[3]) -> (f64[3]) {
  %0: f64[3] = const 0.7
  %1: f64[3] = tanh %0
  return %1
}",
        range: ANY,
    },
    Case {
        rule: "fold_binary",
        ir: "func f(x: f64[3]) -> (f64[3]) {
  %0: f64[3] = const 0.1
  %1: f64[3] = const 0.0001
  %2: f64[3] = mul %0, %1
  return %2
}",
        range: ANY,
    },
    Case {
        rule: "fold_cast",
        ir: "func f(x: f64[3]) -> (f64[2]) {
  %0: i64[2] = const 7
  %1: f64[2] = cast %0
  return %1
}",
        range: ANY,
    },
    Case {
        rule: "fold_layout",
        ir: "func f(x: f64[3]) -> (f64[4, 2]) {
  %0: f64[2] = const 2.5
  %1: f64[4, 2] = broadcast %0
  return %1
}",
        range: ANY,
    },
];

fn rule(name: &str) -> Rule {
    rules::all().into_iter().find(|r| r.name == name).unwrap_or_else(|| panic!("no rule named {name}"))
}

/// Appends `term` to `f`'s graph; `class_of` maps `f`'s nodes to classes.
fn add_term(
    module: &Module,
    f: &mut Function,
    term: &Term,
    egraph: &kiln_passes::simplify::analysis::KGraph,
    class_of: &[Id],
) -> NodeId {
    match term {
        Term::Class(id) => {
            let i =
                class_of.iter().position(|&c| egraph.find(c) == egraph.find(*id)).expect("a class of the input graph");
            NodeId(i as u32)
        }
        Term::Node(op, args) => {
            let args: Vec<NodeId> = args.iter().map(|a| add_term(module, f, a, egraph, class_of)).collect();
            let inputs = f.inputs.clone();
            let ctx = kiln_ir::TypeContext { inputs: &inputs, params: &module.params };
            f.graph.add(&ctx, op.clone(), &args).expect("the right-hand side types")
        }
    }
}

fn random_inputs(f: &Function, seed: u64, (low, high): (f64, f64)) -> Vec<Tensor> {
    f.inputs
        .iter()
        .enumerate()
        .map(|(k, decl)| {
            let dims: Vec<usize> =
                decl.ty.shape.0.iter().map(|d| d.to_string().parse().expect("constant shapes")).collect();
            let n: usize = dims.iter().product();
            let data = (0..n)
                .map(|i| low + (high - low) * kiln_ir::random::uniform(seed * 31 + k as u64, 0, i as u64))
                .collect();
            assert_eq!(decl.ty.dtype, DType::F64, "cases use f64 inputs");
            Tensor::float(DType::F64, ArrayD::from_shape_vec(IxDyn(&dims), data).unwrap())
        })
        .collect()
}

#[test]
fn every_rule_has_a_case() {
    let all = rules::all();
    for r in &all {
        assert!(
            CASES.iter().any(|c| c.rule == r.name),
            "rule `{}` ({}) has no case in passes/tests/rules.rs",
            r.name,
            r.identity
        );
        assert_eq!(all.iter().filter(|s| s.name == r.name).count(), 1, "two rules are named `{}`", r.name);
    }
}

#[test]
fn every_rule_is_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/optimization.md")).unwrap();
    for r in rules::all() {
        assert!(doc.contains(&format!("| `{}` |", r.name)), "docs/optimization.md does not list rule `{}`", r.name);
    }
}

#[test]
fn every_rule_preserves_values() {
    for case in CASES {
        let module = kiln_ir::parse_module(case.ir).unwrap_or_else(|e| panic!("{}: {e:?}", case.rule));
        kiln_ir::verify_module(&module).unwrap_or_else(|e| panic!("{}: {e:?}", case.rule));
        let f = &module.functions[0];
        let (egraph, class_of) = load(&module, f);
        let root = egraph.find(class_of[f.outputs[0].index()]);
        let r = rule(case.rule);
        let term = egraph[root]
            .nodes
            .iter()
            .find_map(|n| r.rewrite_node(&egraph, n, &egraph[root].data.ty))
            .unwrap_or_else(|| panic!("rule `{}` does not apply to its case", case.rule));
        let mut rhs_module = module.clone();
        let rhs = &mut rhs_module.functions[0];
        let out = add_term(&module, rhs, &term, &egraph, &class_of);
        assert_ne!(out, f.outputs[0], "rule `{}` rewrote its case to itself", case.rule);
        rhs.outputs = vec![out];
        kiln_ir::verify_module(&rhs_module).unwrap_or_else(|e| panic!("{}: {e:?}", case.rule));
        let options = EvalOptions { precision: Precision::F64 };
        for seed in 0..8 {
            let inputs = random_inputs(f, seed, case.range);
            let before = evaluate(&module, "f", &inputs, &Params::new(), options).unwrap();
            let after = evaluate(&rhs_module, "f", &inputs, &Params::new(), options).unwrap();
            let error = after[0].max_relative_error(&before[0]).expect("same type");
            assert!(error <= 1e-12, "rule `{}` ({}): relative error {error} on seed {seed}", case.rule, r.identity);
        }
    }
}

/// The runner stops at each limit and says which; what it extracts then is
/// still equivalent to the input.
#[test]
fn limits_stop_the_runner_and_are_reported() {
    let text = "func f(x: f64[4, 3], y: f64[4, 3]) -> (f64[4, 3]) {
  %0: f64[4, 3] = input 0
  %1: f64[4, 3] = input 1
  %2: f64[4, 3] = neg %0
  %3: f64[4, 3] = neg %2
  %4: f64[4, 3] = mul %3, %1
  %5: f64[4, 3] = mul %0, %1
  %6: f64[4, 3] = add %4, %5
  %7: f64[4, 3] = const 0.8
  %8: f64[4, 3] = div %6, %7
  return %8
}";
    let module = kiln_ir::parse_module(text).unwrap();
    let f = &module.functions[0];
    let machine = kiln_passes::cost::Machine::default();
    let cases = [
        (
            kiln_passes::Limits { nodes: 20_000, iterations: 1, time: std::time::Duration::from_secs(5) },
            "iteration limit (1)",
        ),
        (kiln_passes::Limits { nodes: 12, iterations: 50, time: std::time::Duration::from_secs(5) }, "node limit ("),
        (kiln_passes::Limits { nodes: 20_000, iterations: 50, time: std::time::Duration::ZERO }, "time limit"),
        (kiln_passes::Limits::default(), "saturated"),
    ];
    let inputs = random_inputs(f, 3, ANY);
    let options = EvalOptions { precision: Precision::F64 };
    let expected = evaluate(&module, "f", &inputs, &Params::new(), options).unwrap();
    for (limits, reason) in cases {
        let (g, report) = kiln_passes::simplify_function(&module, f, &limits, &machine);
        assert!(report.stop_reason.starts_with(reason), "{limits:?}: stopped by {}", report.stop_reason);
        let simplified = Module { params: Vec::new(), functions: vec![g] };
        kiln_ir::verify_module(&simplified).unwrap();
        let got = evaluate(&simplified, "f", &inputs, &Params::new(), options).unwrap();
        assert!(got[0].max_relative_error(&expected[0]).unwrap() <= 1e-12, "{limits:?}");
    }
    // Saturated, the double negation is gone and the sum is factored.
    let (g, _) = kiln_passes::simplify_function(&module, f, &kiln_passes::Limits::default(), &machine);
    let printed = kiln_ir::print_function(&g);
    assert!(!printed.contains("neg"), "{printed}");
    assert_eq!(printed.matches(" mul ").count(), 2, "x*y + x*y is (x + x) * y, times 1.25:\n{printed}");
}
