//! The stream's intake, the same for every sink: what the source sends goes into the spool
//! (memory, then a bounded file) and is counted as received; the sink takes it from there
//! as fast as its target allows. A live link is read at network speed (the source must
//! never wait for us); files only when what was read is used up.

use crate::config::SyncConfig;
use crate::source::Source;
use crate::spool::{spool_err, Spool};
use crate::status::SyncStatus;
use crate::SyncError;

/// Stream bytes kept in memory before the spool goes to disk.
const SPOOL_MEMORY: usize = 16 * 1024 * 1024;

pub struct Intake {
    pub spool: Spool,
    /// Stream offset of the end of what was received.
    received: i64,
}

impl Intake {
    /// Starts at stream offset `start`, with what the source already read.
    pub fn new(
        cfg: &SyncConfig,
        source: &mut Source,
        start: i64,
        status: &SyncStatus,
    ) -> Result<Intake, SyncError> {
        let mut intake = Intake {
            spool: Spool::new(cfg.spool_dir.clone(), SPOOL_MEMORY, cfg.spool_max_bytes),
            received: start,
        };
        intake.took(source, status)?;
        Ok(intake)
    }

    /// Whether to read the source now.
    pub fn wants_read(&self, source: &Source) -> bool {
        !self.spool.is_full() && (source.eager() || self.spool.is_empty()) && !source.at_end()
    }

    /// After a read: the bytes go to the spool.
    pub fn took(&mut self, source: &mut Source, status: &SyncStatus) -> Result<(), SyncError> {
        self.received += source.rbuf().len() as i64;
        status.set_received(self.received);
        self.spool
            .push(source.rbuf().split().freeze())
            .map_err(spool_err)
    }

    /// Whether a file source is used up: read to its end and spooled out.
    pub fn drained(&self, source: &Source) -> bool {
        source.at_end() && self.spool.is_empty()
    }

    /// The spool's size, for STATUS.
    pub fn report(&self, status: &SyncStatus) {
        status.spool_bytes.store(
            self.spool.file_bytes(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}
