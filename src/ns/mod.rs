//! Namespaces: id maps, the user namespace husk works in, and (later) the container fork sequence.
pub mod channel;
pub mod idmap;
pub mod userns;
