//! A rewrite rule: a name, the identity it uses, and a function that, given
//! an e-node, returns the term it equals (or nothing).
//!
//! Rules are plain Rust functions because most of kiln's ops carry payloads
//! (shapes, axes, permutations) that conditions inspect. [`Rule::rewrite`]
//! turns one into an `egg` rewrite whose searcher reports the classes where
//! the function applies and whose applier adds the term and unions it with
//! the class. The applier adds a term only if it types (through the IR's
//! typing rules) to exactly the matched class's type, so no rule can change
//! a value's dtype or shape.

use egg::{Id, Rewrite, SearchMatches, Subst, Symbol};
use kiln_ir::{Literal, Op, TensorType};

use super::analysis::{Fired, KGraph, Types};
use super::lang::ENode;

/// The right-hand side of a rule: existing classes and new ops over them.
#[derive(Clone, Debug, PartialEq)]
pub enum Term {
    Class(Id),
    Node(Op, Vec<Term>),
}

impl Term {
    pub fn op(op: Op, args: Vec<Term>) -> Term {
        Term::Node(op, args)
    }

    /// A splat constant of `ty`.
    pub fn constant(value: Literal, ty: &TensorType) -> Term {
        Term::Node(Op::Constant { value, dtype: ty.dtype, shape: ty.shape.clone() }, Vec::new())
    }

    /// The term's type, if every op in it types.
    pub fn type_in(&self, egraph: &KGraph) -> Option<TensorType> {
        match self {
            Term::Class(id) => Some(egraph[*id].data.ty.clone()),
            Term::Node(op, args) => {
                let types = args.iter().map(|a| a.type_in(egraph)).collect::<Option<Vec<_>>>()?;
                let refs: Vec<&TensorType> = types.iter().collect();
                egraph.analysis.infer(op, &refs)
            }
        }
    }

    /// Adds the term's nodes to the e-graph; returns its class.
    pub fn add_to(&self, egraph: &mut KGraph) -> Id {
        match self {
            Term::Class(id) => *id,
            Term::Node(op, args) => {
                let ids = args.iter().map(|a| a.add_to(egraph)).collect();
                egraph.add(ENode::new(op.clone(), ids))
            }
        }
    }
}

/// The function behind a rule: for an e-node of the e-graph, the term it
/// equals, if the rule applies to it.
pub type RewriteFn = fn(&KGraph, &ENode) -> Option<Term>;

/// A named rewrite rule.
#[derive(Clone, Copy)]
pub struct Rule {
    /// Unique, snake_case; `kiln emit opt --explain` prints it.
    pub name: &'static str,
    /// The identity, e.g. `x + 0 = x`.
    pub identity: &'static str,
    pub apply: RewriteFn,
}

impl Rule {
    /// The term this rule rewrites `node` (in a class of type `ty`) to, if it
    /// applies and the term keeps the type.
    pub fn rewrite_node(&self, egraph: &KGraph, node: &ENode, ty: &TensorType) -> Option<Term> {
        let term = (self.apply)(egraph, node)?;
        (term.type_in(egraph).as_ref() == Some(ty)).then_some(term)
    }

    /// This rule as an `egg` rewrite.
    pub fn to_egg(self) -> Rewrite<ENode, Types> {
        Rewrite::new(self.name, RuleSearcher(self), RuleApplier(self)).expect("a rule binds no pattern variables")
    }
}

struct RuleSearcher(Rule);
struct RuleApplier(Rule);

impl egg::Searcher<ENode, Types> for RuleSearcher {
    fn search_eclass_with_limit(&self, egraph: &KGraph, eclass: Id, limit: usize) -> Option<SearchMatches<'_, ENode>> {
        let class = &egraph[eclass];
        let found = limit > 0 && class.nodes.iter().any(|n| self.0.rewrite_node(egraph, n, &class.data.ty).is_some());
        found.then(|| SearchMatches { eclass, substs: vec![Subst::with_capacity(0)], ast: None })
    }

    fn vars(&self) -> Vec<egg::Var> {
        Vec::new()
    }
}

impl egg::Applier<ENode, Types> for RuleApplier {
    fn apply_one(
        &self,
        egraph: &mut KGraph,
        eclass: Id,
        _subst: &Subst,
        _ast: Option<&egg::PatternAst<ENode>>,
        _rule_name: Symbol,
    ) -> Vec<Id> {
        let ty = egraph[eclass].data.ty.clone();
        let nodes = egraph[eclass].nodes.clone();
        let terms: Vec<Term> = nodes.iter().filter_map(|n| self.0.rewrite_node(egraph, n, &ty)).collect();
        let mut changed = Vec::new();
        for term in terms {
            let id = term.add_to(egraph);
            // The e-node the rule made (none when it equates two classes).
            let made = match &term {
                Term::Class(_) => None,
                Term::Node(op, args) => Some(ENode::new(op.clone(), args.iter().map(|a| a.add_to(egraph)).collect())),
            };
            if egraph.union(eclass, id) {
                egraph.analysis.fired.push(Fired { class: id, rule: self.0.name, made });
                changed.push(id);
            }
        }
        changed
    }
}

/// The nodes of class `id` whose op satisfies `pred`.
pub fn nodes_where<'a>(egraph: &'a KGraph, id: Id, pred: impl Fn(&Op) -> bool + 'a) -> impl Iterator<Item = &'a ENode> {
    egraph[id].nodes.iter().filter(move |n| pred(&n.op))
}

/// The first node of class `id` whose op satisfies `pred`.
pub fn node_where(egraph: &KGraph, id: Id, pred: impl Fn(&Op) -> bool) -> Option<&ENode> {
    egraph[id].nodes.iter().find(|n| pred(&n.op))
}

/// The splat float value of class `id`, if it is a float constant.
pub fn splat_float(egraph: &KGraph, id: Id) -> Option<f64> {
    match egraph[id].data.splat {
        Some(Literal::Float(bits)) => Some(bits.get()),
        _ => None,
    }
}
