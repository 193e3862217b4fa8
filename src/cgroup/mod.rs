//! cgroup v2 delegation, limits and freezer (later issues).
