//! Dead-code elimination.
//!
//! Needs: a verified module. Guarantees: every node that remains is an output
//! or an operand of one, transitively; surviving nodes keep their relative
//! order (so the graph stays topologically ordered) and are renumbered from
//! %0; inputs and parameters declarations are untouched, so the function's
//! signature does not change. What the interpreter computes for the outputs
//! is unchanged.

use kiln_ir::{Function, Graph, Module, Node, NodeId};

/// Removes the nodes no output depends on, in every function.
pub fn eliminate_dead_code(module: &Module) -> Module {
    Module { params: module.params.clone(), functions: module.functions.iter().map(prune).collect() }
}

fn prune(f: &Function) -> Function {
    let n = f.graph.len();
    let mut live = vec![false; n];
    for o in &f.outputs {
        live[o.index()] = true;
    }
    for (id, node) in f.graph.nodes().collect::<Vec<_>>().into_iter().rev() {
        if live[id.index()] {
            for a in &node.args {
                live[a.index()] = true;
            }
        }
    }
    let mut renumber = vec![None; n];
    let mut graph = Graph::new();
    for (id, node) in f.graph.nodes() {
        if live[id.index()] {
            let args = node.args.iter().map(|a| renumber[a.index()].expect("operands come first")).collect();
            renumber[id.index()] =
                Some(graph.push_unchecked(Node { op: node.op.clone(), args, ty: node.ty.clone(), line: node.line }));
        }
    }
    let outputs: Vec<NodeId> = f.outputs.iter().map(|o| renumber[o.index()].expect("outputs are live")).collect();
    Function { name: f.name.clone(), inputs: f.inputs.clone(), graph, outputs }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_nodes_go_and_the_rest_are_renumbered() {
        let text = "func f(x: f32[3]) -> (f32[3]) {
  %0: f32[3] = input 0
  %1: f32[3] = exp %0
  %2: f32[3] = neg %0
  %3: f32[3] = add %2, %0
  return %3
}
";
        let module = kiln_ir::parse_module(text).unwrap();
        let pruned = eliminate_dead_code(&module);
        kiln_ir::verify_module(&pruned).unwrap();
        assert_eq!(
            pruned.to_string(),
            "func f(x: f32[3]) -> (f32[3]) {
  %0: f32[3] = input 0
  %1: f32[3] = neg %0
  %2: f32[3] = add %1, %0
  return %2
}
"
        );
    }
}
