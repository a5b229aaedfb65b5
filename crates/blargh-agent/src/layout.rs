//! Where the agent keeps things under the app's root: [`blargh_proto::paths::Layout`],
//! re-exported so callers keep their paths.

pub use blargh_proto::paths::Layout;
