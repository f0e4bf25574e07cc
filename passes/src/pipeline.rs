//! The pass pipeline: a named list of stages, each timed and followed by the
//! verifier, with the IR after any stage available for `kiln emit`.

use std::time::{Duration, Instant};

use kiln_ir::{Module, VerifyError};

/// A stage: a name and the pass it runs.
pub struct Stage {
    pub name: &'static str,
    pub run: fn(&Module) -> Module,
}

/// What a stage did.
#[derive(Clone, Debug)]
pub struct StageReport {
    pub name: &'static str,
    pub time: Duration,
    pub nodes_before: usize,
    pub nodes_after: usize,
}

/// A pass broke an invariant: which stage, and the verifier's finding.
#[derive(Debug, thiserror::Error)]
#[error("IR after stage `{stage}` does not verify: {error}\n{rendered}")]
pub struct PassError {
    pub stage: &'static str,
    pub error: VerifyError,
    pub rendered: String,
}

/// An ordered list of stages.
pub struct Pipeline {
    stages: Vec<Stage>,
}

impl Pipeline {
    /// The stages `kiln emit ir` runs after lowering.
    pub fn cleanup() -> Pipeline {
        Pipeline { stages: vec![Stage { name: "eliminate_dead_code", run: crate::eliminate_dead_code }] }
    }

    pub fn stage_names(&self) -> Vec<&'static str> {
        self.stages.iter().map(|s| s.name).collect()
    }

    /// Runs every stage, verifying after each.
    pub fn run(&self, module: &Module) -> Result<(Module, Vec<StageReport>), PassError> {
        let mut current = module.clone();
        let mut reports = Vec::new();
        for stage in &self.stages {
            let start = Instant::now();
            let next = (stage.run)(&current);
            let time = start.elapsed();
            kiln_ir::verify_module(&next).map_err(|error| PassError {
                stage: stage.name,
                rendered: kiln_ir::render_error(&next, &error),
                error,
            })?;
            reports.push(StageReport {
                name: stage.name,
                time,
                nodes_before: count(&current),
                nodes_after: count(&next),
            });
            current = next;
        }
        Ok((current, reports))
    }
}

fn count(m: &Module) -> usize {
    m.functions.iter().map(|f| f.graph.len()).sum()
}
