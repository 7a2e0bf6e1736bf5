//! STUB: being implemented.
use super::{Event, RdbError};
use std::io::Read;

/// Reads events from an RDB stream.
pub struct RdbReader<R: Read> {
    inner: R,
}

impl<R: Read> RdbReader<R> {
    pub fn new(inner: R) -> Self {
        RdbReader { inner }
    }
    /// The next event; `Ok(None)` after `Event::End`.
    pub fn next_event(&mut self) -> Result<Option<Event>, RdbError> {
        let _ = &mut self.inner;
        Ok(None)
    }
    /// Bytes consumed so far (for progress reporting).
    pub fn position(&self) -> u64 {
        0
    }
    /// RDB version from the header (0 before it is read).
    pub fn version(&self) -> u32 {
        0
    }
}
