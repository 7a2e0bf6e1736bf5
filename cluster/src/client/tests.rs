//! Unit tests of reply merging.
use super::*;
