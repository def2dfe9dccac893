//! The one integration test binary: real PostgreSQL, real S3 (Garage), real FFmpeg fixtures and
//! the real daemon binary. Modules: `catalog` and `store` are conformance suites run on every
//! backend; `daemon` drives `evidenced run` end to end; `cli` the one-shot commands; `systemd`
//! the unit and the notify protocol.

mod access;
mod bagit;
mod cases;
mod catalog;
mod cli;
mod cluster;
mod console;
mod custody;
mod daemon;
mod events;
mod faults;
mod harness;
mod media;
mod media_worker;
mod mutated_media;
mod nodes;
mod oidc;
mod openapi;
mod ops;
mod principals;
mod reports;
mod retention;
mod security;
mod store;
mod systemd;
mod tsa;
mod updates;
mod worm;
