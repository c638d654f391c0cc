//! A misbehaving strategy for the sandbox tests, written with the SDK like any other.
//! `strategy_config.mode` picks the misbehaviour (default: `infinite_loop`).

use lbhost_sdk::{Backends, Needs, Params, Request, Strategy};

/// What the strategy does wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `select` never returns.
    InfiniteLoop,
    /// `select` allocates until the memory limit stops it.
    MemoryHog,
    /// Every `n`th `select` panics.
    PanicEveryNth,
    /// Every answer is out of range.
    OutOfRange,
    /// Every answer points at an ineligible backend, when there is one.
    Ineligible,
    /// Legal, but each `select` burns `micros` of CPU (set it under the deadline).
    Slow,
    /// `select` copies 2 MiB back and forth with `memory.copy` forever: one instruction that
    /// does a lot of work (wasmtime charges its fuel per byte).
    BulkCopy,
    /// `select` asks the host for a header forever (the host caps calls per `select`).
    HostCallFlood,
    /// Every `n`th `select` puts a framing field on the response (`content-length: 0`), which
    /// only the host may write; the others put a harmless `x-strategy: ok`.
    BadResponseHeader,
}

/// See [`Mode`].
pub struct Hostile {
    mode: Mode,
    n: u64,
    micros: u64,
    calls: u64,
}

impl Strategy for Hostile {
    fn configure(params: &Params) -> Result<Self, String> {
        params.allow_only(&["mode", "n", "micros"])?;
        let mode = match params.get("mode").unwrap_or("infinite_loop") {
            "infinite_loop" => Mode::InfiniteLoop,
            "memory_hog" => Mode::MemoryHog,
            "panic_every_nth" => Mode::PanicEveryNth,
            "out_of_range" => Mode::OutOfRange,
            "ineligible" => Mode::Ineligible,
            "slow" => Mode::Slow,
            "bulk_copy" => Mode::BulkCopy,
            "host_call_flood" => Mode::HostCallFlood,
            "bad_response_header" => Mode::BadResponseHeader,
            other => return Err(format!("strategy_config.mode: unknown mode {other:?}")),
        };
        Ok(Hostile {
            mode,
            n: params.parse_or("n", 10)?.max(1),
            micros: params.parse_or("micros", 500)?,
            calls: 0,
        })
    }

    fn needs(&self) -> Needs {
        Needs {
            response_headers: self.mode == Mode::BadResponseHeader,
            ..Needs::default()
        }
    }

    fn select(&mut self, backends: &Backends<'_>, request: &Request<'_>) -> Option<usize> {
        self.calls += 1;
        match self.mode {
            Mode::InfiniteLoop => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            Mode::MemoryHog => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Mode::PanicEveryNth if self.calls.is_multiple_of(self.n) => {
                panic!("call {} panics on purpose", self.calls)
            }
            Mode::OutOfRange => Some(backends.set().len() + 7),
            Mode::Ineligible => (0..backends.set().len())
                .find(|&i| !backends.is_candidate(i))
                .or(Some(usize::MAX)),
            Mode::Slow => {
                // No clock in the sandbox: spin a calibrated number of rounds (~1 ns each).
                let mut x = backends.sequence();
                for _ in 0..self.micros * 1000 {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
                backends.rotate(backends.sequence())
            }
            Mode::BulkCopy => {
                let mut buffer = vec![1u8; 4 << 20];
                let half = buffer.len() / 2;
                loop {
                    // memory.copy: wasm32 targets enable bulk memory by default.
                    buffer.copy_within(..half, half);
                    buffer.copy_within(half.., 0);
                    std::hint::black_box(&buffer);
                }
            }
            Mode::HostCallFlood => loop {
                std::hint::black_box(request.header("user-agent"));
            },
            Mode::PanicEveryNth => backends.rotate(backends.sequence()),
            Mode::BadResponseHeader => {
                if self.calls.is_multiple_of(self.n) {
                    request.add_response_header("content-length", "0");
                } else {
                    request.add_response_header("x-strategy", "ok");
                }
                backends.rotate(backends.sequence())
            }
        }
    }
}

lbhost_sdk::export_strategy!(Hostile);
