//! Namespaces: id maps, the user namespace husk works in, and the container fork sequence.
pub mod bridge;
pub mod caps;
pub mod channel;
pub mod exec;
pub mod forked;
pub mod holder;
pub mod idmap;
pub mod join;
pub mod masquerade;
pub mod mountpoints;
pub mod net;
pub mod netlink;
pub mod rootfs;
pub mod run;
pub mod seccomp;
pub mod tty;
pub mod userns;
