//! The content-addressed store, safe layer extraction, image records and garbage collection.
pub mod author;
pub mod changes;
pub mod check;
pub mod diff;
pub mod extract;
pub mod gc;
pub mod gzip;
pub mod images;
pub mod ingest;
pub mod merge;
pub mod newlayer;
pub mod sources;
pub mod stack;
pub mod store;
pub mod tarwrite;

#[cfg(test)]
mod fuzz_regressions;
