//! One module per subcommand.

pub mod contacts;
pub mod crew;
pub mod deadletters;
pub mod import;
pub mod process;
pub mod simulate;
pub mod token;
pub mod up;
pub mod validate;
pub mod worker;
