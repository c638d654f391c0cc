//! A strategy whose `configure` always refuses, with a message as large as its memory allows
//! (`strategy_config.bytes`, default 12.5 MB) that starts with control characters trying to
//! forge a log line: for the tests that guest text is bounded wherever lbhost shows it.

use lbhost_sdk::{Backends, Params, Request, Strategy};

/// The message's opening: a line break, a forged log line, and a terminal escape.
pub const FORGED: &str =
    "refused on purpose\n2026-01-01T00:00:00.000000Z ERROR lbhost: FORGED LINE\x1b[2J";

/// Never configured: see the crate docs.
pub struct LoudRefusal;

impl Strategy for LoudRefusal {
    fn configure(params: &Params) -> Result<Self, String> {
        let bytes: usize = params.parse_or("bytes", 12_500_000)?;
        let mut message = String::with_capacity(bytes.max(FORGED.len() + 2));
        message.push_str(FORGED);
        // Then two-byte characters up to `bytes`, doubling the run with `memory.copy` (a push
        // per character would spend the hook's fuel).
        let start = message.len();
        message.push('é');
        while message.len() + 2 <= bytes {
            let run = message.len() - start;
            let room = (bytes - message.len()) / 2 * 2;
            message.extend_from_within(start..start + run.min(room));
        }
        Err(message)
    }

    fn select(&mut self, backends: &Backends<'_>, _request: &Request<'_>) -> Option<usize> {
        backends.rotate(backends.sequence())
    }
}

lbhost_sdk::export_strategy!(LoudRefusal);
