//! The command stream between a source and a sink, the same for every source and every
//! sink: [`intake`] takes what the source sends into the spool, [`front`] says what each
//! command means.

pub mod front;
pub mod intake;

pub use front::{Front, Step};
pub use intake::Intake;
