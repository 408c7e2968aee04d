//! One module per subcommand.

pub mod deadletters;
pub mod process;
pub mod up;
pub mod validate;
