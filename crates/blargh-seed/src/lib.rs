//! Seeding a server, as data: a [`plan::Plan`] of idempotent steps built by pure functions
//! ([`seed_plan`], the [`init`] adapters), run by an [`exec::Executor`] over SSH or locally.
//! Because plans are data, they are unit-tested without a network and `--dry-run` is free.

pub mod batch;
pub mod exec;
#[cfg(test)]
mod fake_host;
pub mod init;
pub mod plan;
pub mod seed_plan;
pub mod shell;
pub mod transfer;

pub use plan::{Plan, Step};
pub use seed_plan::{SeedSpec, seed_plan};
