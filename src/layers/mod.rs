//! The content-addressed store, safe layer extraction, image records and garbage collection.
pub mod extract;
pub mod gc;
pub mod gzip;
pub mod images;
pub mod ingest;
pub mod merge;
pub mod sources;
pub mod store;
