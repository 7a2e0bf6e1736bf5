//! RESP, the Redis wire protocol, as cutover needs it on its hot paths.
//!
//! - [`request`]: a resumable, zero-copy scanner for client requests (multibulk and inline).
//! - [`reply`]: a resumable boundary scanner for replies (RESP2 and RESP3, iterative nesting).
//! - [`command`]: the command table (key positions and flags) used for routing and gating.
//! - [`encode`]: writing the replies the proxy answers itself.
//! - [`value`]: replies decoded into values, for the replies cutover reads itself.
//!
//! Client traffic is never decoded into values: replies are forwarded as the raw bytes the
//! server sent; the scanners only find where one frame ends.

pub mod command;
pub mod encode;
pub mod error;
pub mod reply;
pub mod request;
pub mod value;

pub use error::{ProtocolError, ReplyError};
pub use reply::ReplyScanner;
pub use request::{Frame, FrameKind, Limits, RequestParser};
pub use value::Value;
