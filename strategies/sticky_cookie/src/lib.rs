//! Sticky cookie: pins a client to a backend with a cookie set on its first response.

use std::time::Duration;

use lbhost_sdk::hash::{combine, fnv1a64};
use lbhost_sdk::{
    BackendSet, Backends, LeastRequest, Needs, Params, Request, SmoothWeighted, Strategy,
};

/// A request without a usable pin goes to the fallback (round-robin, smooth weighted when the
/// weights differ, or least request), and the response carries `Set-Cookie: lbsticky=<pin>`;
/// a request with the pin of a backend that can take it goes there, with no new cookie. When the
/// pinned backend is gone (removed, down, drained, or already tried for this request) the
/// client is pinned anew to the backend that takes the request.
///
/// The pin is 16 hex digits: the backend's stable key (the same on every node) hashed with
/// `salt`, so it names no address, and every node with the same backends and salt reads it the
/// same. Without a salt anyone who guesses the backends' addresses can compute their pins; with
/// one they cannot tell which address a pin stands for (the hash is not a cryptographic MAC).
///
/// Parameters: `cookie` (default `lbsticky`), `max_age` (seconds or a duration like `"1h"`;
/// default none: the cookie lasts the browser session), `secure` (default false), `http_only`
/// (default true), `same_site` (`Lax` default, `Strict` or `None`, which needs `secure`),
/// `path` (default `/`), `salt` (default none), `fallback` (`round_robin` default or
/// `least_request`).
pub struct StickyCookie {
    cookie: String,
    /// `; Path=/; Max-Age=…; …`: everything after the value in `Set-Cookie`.
    attributes: String,
    salt: u64,
    /// `(pin, backend index)` of every backend, sorted by pin.
    pins: Vec<(u64, usize)>,
    /// Pins by backend index.
    pin_of: Vec<u64>,
    fallback: Fallback,
}

/// Where a request without a usable pin goes.
enum Fallback {
    RoundRobin(SmoothWeighted),
    LeastRequest(LeastRequest),
}

const PARAMS: [&str; 8] = [
    "cookie",
    "max_age",
    "secure",
    "http_only",
    "same_site",
    "path",
    "salt",
    "fallback",
];

impl Strategy for StickyCookie {
    fn configure(params: &Params) -> Result<Self, String> {
        params.allow_only(&PARAMS)?;
        let cookie = params.get("cookie").unwrap_or("lbsticky").to_string();
        if cookie.is_empty() || cookie.len() > 64 || !cookie.bytes().all(is_token) {
            return Err(format!(
                "strategy_config.cookie: {cookie:?} is not a cookie name (1 to 64 letters, digits or !#$%&'*+-.^_`|~)"
            ));
        }
        let path = params.get("path").unwrap_or("/");
        if !path.starts_with('/') || path.len() > 256 || !path.bytes().all(is_path_byte) {
            return Err(format!(
                "strategy_config.path: {path:?} is not a cookie path (starts with /, no ; or control characters)"
            ));
        }
        let secure: bool = params.parse_or("secure", false)?;
        let http_only: bool = params.parse_or("http_only", true)?;
        let same_site = match params.get("same_site").map(str::to_ascii_lowercase).as_deref() {
            None | Some("lax") => "Lax",
            Some("strict") => "Strict",
            Some("none") if secure => "None",
            Some("none") => {
                return Err(
                    "strategy_config.same_site: None needs \"secure\": true (browsers refuse it otherwise)"
                        .into(),
                )
            }
            Some(other) => {
                return Err(format!(
                    "strategy_config.same_site: expected Lax, Strict or None (got {other:?})"
                ))
            }
        };
        let mut attributes = format!("; Path={path}");
        if let Some(max_age) = max_age(params)? {
            attributes.push_str(&format!("; Max-Age={}", max_age.as_secs()));
        }
        if secure {
            attributes.push_str("; Secure");
        }
        if http_only {
            attributes.push_str("; HttpOnly");
        }
        attributes.push_str("; SameSite=");
        attributes.push_str(same_site);
        let fallback = match params.get("fallback").unwrap_or("round_robin") {
            "round_robin" => Fallback::RoundRobin(SmoothWeighted::default()),
            "least_request" => {
                Fallback::LeastRequest(LeastRequest::new(LeastRequest::DEFAULT_BIAS)?)
            }
            other => {
                return Err(format!(
                "strategy_config.fallback: expected round_robin or least_request (got {other:?})"
            ))
            }
        };
        Ok(StickyCookie {
            cookie,
            attributes,
            salt: params.get("salt").map_or(0, |s| fnv1a64(s.as_bytes())),
            pins: Vec::new(),
            pin_of: Vec::new(),
            fallback,
        })
    }

    fn needs(&self) -> Needs {
        Needs {
            in_flight: matches!(self.fallback, Fallback::LeastRequest(_)),
            response_headers: true,
            ..Needs::default()
        }
    }

    fn backends_changed(&mut self, backends: &BackendSet) {
        self.pin_of = backends
            .all()
            .iter()
            .map(|b| combine(self.salt, b.key))
            .collect();
        self.pins = self.pin_of.iter().copied().zip(0..).collect();
        self.pins.sort_unstable();
        match &mut self.fallback {
            Fallback::RoundRobin(order) => *order = SmoothWeighted::new(backends),
            Fallback::LeastRequest(balancer) => balancer.backends_changed(backends),
        }
    }

    fn select(&mut self, backends: &Backends<'_>, request: &Request<'_>) -> Option<usize> {
        if let Some(pinned) = request
            .cookie(&self.cookie)
            .and_then(|value| self.backend_of(&value))
            .filter(|&i| backends.is_candidate(i))
        {
            return Some(pinned);
        }
        let chosen = match &mut self.fallback {
            Fallback::RoundRobin(order) => {
                let order = order.order();
                if order.is_empty() {
                    None
                } else {
                    let start = (backends.sequence() % order.len() as u64) as usize;
                    backends.first_candidate_from(order, start)
                }
            }
            Fallback::LeastRequest(balancer) => balancer.select(backends),
        }?;
        let pin = self.pin_of.get(chosen)?;
        request.add_response_header(
            "set-cookie",
            &format!("{}={pin:016x}{}", self.cookie, self.attributes),
        );
        Some(chosen)
    }
}

impl StickyCookie {
    /// The backend a cookie value pins, if it is the pin of one.
    fn backend_of(&self, value: &str) -> Option<usize> {
        if value.len() != 16 {
            return None;
        }
        let pin = u64::from_str_radix(value, 16).ok()?;
        let at = self.pins.partition_point(|&(p, _)| p < pin);
        self.pins
            .get(at)
            .filter(|&&(p, _)| p == pin)
            .map(|&(_, i)| i)
    }
}

/// `max_age` as whole seconds (`3600`) or a duration (`"1h"`); none when absent.
fn max_age(params: &Params) -> Result<Option<Duration>, String> {
    let Some(raw) = params.get("max_age") else {
        return Ok(None);
    };
    let age = match raw.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => params.duration_or("max_age", Duration::ZERO)?,
    };
    if age < Duration::from_secs(1) || age > Duration::from_secs(400 * 24 * 3600) {
        return Err(format!(
            "strategy_config.max_age: must be between 1s and 400 days (got {raw:?})"
        ));
    }
    Ok(Some(age))
}

/// A byte of an RFC 9110 token (what a cookie name is).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A byte a cookie's `Path` may hold.
fn is_path_byte(b: u8) -> bool {
    (b' '..=b'~').contains(&b) && b != b';'
}

lbhost_sdk::export_strategy!(StickyCookie);

#[cfg(test)]
mod tests;
