//! The command stream between a source and a sink: [`front`] says what each command means
//! (the same for every source and every sink).

pub mod front;

pub use front::{Front, Step};
