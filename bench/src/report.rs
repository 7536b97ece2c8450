//! BENCHMARKS.md from the raw results.

use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Results files or folders of them (`*.jsonl`).
    #[arg(long, default_value = "bench/results")]
    pub results: Vec<PathBuf>,
}

pub fn run(_a: &ReportArgs) -> anyhow::Result<()> {
    Ok(())
}
