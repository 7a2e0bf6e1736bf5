//! STUB: decoding serialized values into their logical contents (for targets older than
//! the source, where RESTORE payloads can't be used).
