/// What the caller can do about an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Busy or locked: try again.
    Retry,
    /// Corrupt, newer schema, read-only, missing: stop and tell the user.
    Stop,
    /// A refused transition or an impossible state: a bug in the caller.
    Bug,
}

/// Ledger errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not implemented")]
    Unimplemented,
    /// A compare-and-set transition found the image in another status.
    #[error("image {sha256}: cannot go from {from} to {to}")]
    IllegalTransition { sha256: String, from: String, to: String },
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Unimplemented => ErrorKind::Bug,
            Self::IllegalTransition { .. } => ErrorKind::Bug,
        }
    }
}
