//! `evidenced-media-worker`: the isolated media process. The daemon runs one per media operation
//! (probe, proxy, poster, clip) under time, memory and CPU limits. It is a binary of its own so
//! that only it links FFmpeg (and its ~160 shared libraries): the daemon itself stays small.

use std::process::ExitCode;

use clap::Parser;

#[path = "../media/worker/mod.rs"]
mod worker;

/// One media operation on one local file; prints one JSON object on stdout.
#[derive(Debug, Parser)]
#[command(name = "evidenced-media-worker", version, about = "Isolated media operations for evidenced (run by the daemon)")]
struct Args {
    /// The operation.
    #[command(subcommand)]
    op: worker::Op,
}

fn main() -> ExitCode {
    worker::run(Args::parse().op)
}
