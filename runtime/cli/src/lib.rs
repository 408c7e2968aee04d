//! The `dripline` command's library: how a deployment is put together
//! ([`deployment`]), shared by the binary's subcommands and the end-to-end
//! tests, so both run exactly what `dripline up` runs, and who owns a data
//! directory ([`owner`]), and how a journey is tried on a virtual clock
//! ([`simulate`]).

pub mod deployment;
pub mod owner;
pub mod simulate;
pub mod store_url;

pub use deployment::{Deployment, Parts};
pub use store_url::{OpenStore, StoreUrl};
