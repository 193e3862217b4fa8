//! husk: a daemonless, rootless container tool.
pub mod cmd;
pub mod container;
pub mod fetch;
pub mod layers;
pub mod ns;
pub mod cgroup;
pub mod sys;
pub mod util;
