//! `chatroom-bench`: chatroom's own benchmark.
//!
//! * `load`: the load generator, one run against one server (Engine.IO 4 or 3, open-loop, HDR
//!   latency histograms, its own CPU use and send lag).
//! * `suite`: the scenarios S1–S8, each against the Node peer and chatroom in turns (A-B-A), server
//!   and generator pinned to separate cores, runs where other processes took CPU repeated; raw
//!   results appended to `bench/results/*.jsonl`.
//! * `report`: `BENCHMARKS.md` and its charts, from those results only, so it can be re-run.
//! * `bcrypt`: the cost of one bcrypt hash on this core (the ceiling of sign-ups and sign-ins).
//! * `writer`: chatroom's message writer alone, on SQLite or PostgreSQL: messages committed per second.
//!
//! `scripts/bench` builds everything and runs `suite` then `report`.

mod frames;
mod load;
mod report;
mod suite;
mod svg;
mod sys;
mod writer;

use clap::{Parser, Subcommand};

/// The server's allocator (jemalloc, for Rust and C code alike), so `writer` measures the writer as
/// the server runs it.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "chatroom-bench",
    about = "chatroom's load generator and benchmark suite"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One generator run against one server; prints JSON lines (phases, then the summary).
    Load(load::LoadArgs),
    /// The scenarios, peer and chatroom side by side; appends raw results as JSONL.
    Suite(suite::SuiteArgs),
    /// Writes BENCHMARKS.md and its charts from the raw results.
    Report(report::ReportArgs),
    /// Measures chatroom's message writer alone; prints one JSON line.
    Writer(writer::WriterArgs),
    /// Times bcrypt hashes on this core.
    Bcrypt {
        #[arg(long, default_value_t = 10)]
        cost: u32,
        #[arg(long, default_value_t = 20)]
        rounds: u32,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Load(args) => load::run(args),
        Command::Suite(args) => suite::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Writer(args) => writer::run(&args),
        Command::Bcrypt { cost, rounds } => {
            println!("{}", load::bcrypt_ceiling(cost, rounds)?);
            Ok(())
        }
    }
}
