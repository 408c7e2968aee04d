//! Why a plugin could not be loaded or did not complete a call.

use std::path::PathBuf;
use std::time::Duration;

/// Why a plugin could not be loaded or did not complete a call. Every case
/// names the plugin, so an operator can tell which one to fix.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// A directory of components could not be listed.
    #[error("reading components from {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file could not be read.
    #[error("plugin `{plugin}`: cannot read {path}: {source}")]
    Read {
        /// The plugin's name.
        plugin: String,
        /// The file that could not be read.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a WebAssembly component wasmtime accepts.
    #[error("plugin `{plugin}`: not a valid component: {reason}")]
    Invalid {
        /// The plugin's name.
        plugin: String,
        /// What the compiler said.
        reason: String,
    },
    /// The component lacks an export its world requires.
    #[error("plugin `{plugin}` does not implement the `{world}` world: missing export `{missing}`")]
    MissingExport {
        /// The plugin's name.
        plugin: String,
        /// The world it was loaded as.
        world: &'static str,
        /// The export that is missing, fully qualified.
        missing: String,
    },
    /// The component imports something its world does not grant.
    #[error("plugin `{plugin}` cannot be linked as a `{world}`: {reason}")]
    Link {
        /// The plugin's name.
        plugin: String,
        /// The world it was loaded as.
        world: &'static str,
        /// What could not be satisfied.
        reason: String,
    },
    /// The plugin trapped (a panic, an out-of-bounds access, `unreachable`).
    #[error("plugin `{plugin}` trapped: {message}")]
    Trap {
        /// The plugin's name.
        plugin: String,
        /// The trap and its backtrace, as wasmtime reports it.
        message: String,
    },
    /// The call ran past its deadline and was interrupted.
    #[error("plugin `{plugin}` exceeded its deadline of {deadline:?}")]
    DeadlineExceeded {
        /// The plugin's name.
        plugin: String,
        /// The deadline it was given.
        deadline: Duration,
    },
    /// The plugin tried to grow its memory past the limit.
    #[error("plugin `{plugin}` hit its memory limit of {limit} bytes")]
    MemoryLimit {
        /// The plugin's name.
        plugin: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// No instance could be created (the pool is exhausted, say).
    #[error("plugin `{plugin}` could not be instantiated: {reason}")]
    Instantiate {
        /// The plugin's name.
        plugin: String,
        /// Why.
        reason: String,
    },
}
