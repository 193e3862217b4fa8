//! Getting images: reference parsing, the registry protocol, credentials, progress, pull.
pub mod auth;
pub mod config;
pub mod manifest;
pub mod parallel;
pub mod progress;
pub mod pull;
pub mod reference;
pub mod resolve;
pub mod registry;
