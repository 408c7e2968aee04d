//! Why an input could not be processed, classified once so the two cases are
//! never confused: a store failure leaves the input where it is, to be tried
//! again; an input that cannot be processed as it is is set aside (an inbox
//! event is dead-lettered, a timer is dropped with a metric) so the rest keeps
//! flowing.

use dripline_engine::EngineError;
use dripline_store::StoreError;

/// Why the runner stopped a pass. An input that cannot be processed is not one
/// of these: it is set aside, and the pass goes on.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The store failed; what was being processed stays to be retried.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What went wrong with one input.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InputError {
    /// The store failed: retry the input later, never set it aside for this.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The input cannot be processed as it is (it does not parse, names a
    /// journey version that is not loaded, or the engine refuses it); trying
    /// again cannot help.
    #[error("{0}")]
    Bad(String),
}

impl From<EngineError> for InputError {
    fn from(error: EngineError) -> Self {
        InputError::Bad(error.to_string())
    }
}

impl InputError {
    /// An input problem described in words.
    pub(crate) fn bad(problem: impl Into<String>) -> Self {
        InputError::Bad(problem.into())
    }
}
