//! The media worker: runs in a child process (`evidenced media-worker ...`), never in the daemon,
//! so a hostile or broken file can only kill this process. (Being written.)

use std::path::PathBuf;
use std::process::ExitCode;

/// One media operation.
#[derive(Debug, clap::Subcommand)]
pub enum Op {
    /// Print probe results of INPUT as JSON.
    Probe {
        /// Local, seekable input file.
        input: PathBuf,
    },
}

/// Runs one operation; prints one JSON object on stdout.
pub fn run(op: Op) -> ExitCode {
    let _ = op;
    ExitCode::from(1)
}
