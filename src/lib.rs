//! evidenced: an evidence archive daemon for law-enforcement audio/video recordings. It watches
//! docking stations, hashes and archives each recording in one pass into an object store, keeps a
//! hash-chained custody log in its catalog, releases dock copies only after verification, and
//! serves supervisors through an HTTP API. See DESIGN.md and CONTRACT.md for the whole picture.

pub mod api;
pub mod app;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod config;
pub mod custody;
pub mod ingest;
pub mod jobs;
pub mod media;
pub mod metrics;
pub mod ops;
pub mod retention;
pub mod server;
pub mod store;
pub mod watch;
