//! Fault points for crash tests: with `CUTOVER_FAULT=<name>` in its environment the process
//! aborts when it reaches the point of that name, as a `kill -9` landing exactly there
//! would. Off unless the variable is set; checked only on the cutover's path, never on a
//! client's. The points: `after_gate`, `after_drain`, `after_fence`, `during_catchup`,
//! `after_commit`, `after_flip`, `after_release`, and `unconfirmed_commit` (the switch
//! record lands but its confirmation is treated as lost: the CUTOVER aborts, and the process
//! dies once a client's command was answered by the source; see [`crate::cutover`]).

use std::sync::OnceLock;

static ARMED: OnceLock<Option<String>> = OnceLock::new();

/// Whether the fault point `name` is armed.
pub fn armed(name: &str) -> bool {
    ARMED
        .get_or_init(|| std::env::var("CUTOVER_FAULT").ok())
        .as_deref()
        == Some(name)
}

/// Aborts the process here when `name` is armed.
pub fn point(name: &str) {
    if armed(name) {
        tracing::error!(
            point = name,
            "fault point reached (CUTOVER_FAULT): aborting"
        );
        std::process::abort();
    }
}
