//! husk: a daemonless, rootless container tool.
pub mod archive;
pub mod build;
pub mod cgroup;
pub mod cmd;
pub mod container;
pub mod fetch;
pub mod layers;
pub mod ns;
pub mod sys;
pub mod util;
