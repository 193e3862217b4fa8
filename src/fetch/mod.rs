//! Getting and sending images: reference parsing, the registry protocol, credentials,
//! progress, pull and push.
pub mod auth;
pub mod config;
pub mod manifest;
pub mod parallel;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;
pub mod resolve;
pub mod retry;
pub mod upload;
