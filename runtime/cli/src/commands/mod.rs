//! One module per subcommand.

pub mod process;
pub mod up;
pub mod validate;
