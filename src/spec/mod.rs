//! TODO: owned by its issue.
