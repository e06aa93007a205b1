//! # keystead-server
//!
//! The Encryption Service behind the `keystead` binary: a stateless, multi-tenant service
//! that wraps and unwraps DEKs with each tenant's own master key (shared/API.md is the
//! contract). `main.rs` only calls [`cli::main`].
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod directory;
pub mod error;
pub mod http;
pub mod kms;
pub mod lease;
pub mod metrics;
pub mod service;
pub mod store;
pub mod tls;
pub mod util;
