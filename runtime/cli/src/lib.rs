//! The `dripline` command's library: how a deployment is put together
//! ([`deployment`]), shared by the binary's subcommands and the end-to-end
//! tests, so both run exactly what `dripline up` runs.

pub mod deployment;

pub use deployment::{Deployment, Parts};
