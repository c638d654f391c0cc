//! The strategy's parameters, from the config's `strategy_config` object.

use std::str::FromStr;
use std::time::Duration;

/// Parameters from `strategy_config`: strings as written, other JSON values as JSON text.
#[derive(Clone, Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Builds parameters from `(key, value)` pairs.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Params { pairs }
    }

    /// The raw value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key` parsed as `T`, `default` when absent, or an error naming the key.
    pub fn parse_or<T: FromStr>(&self, key: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e| format!("strategy_config.{key}: {e} (got {raw:?})")),
        }
    }

    /// The value of `key` as a duration like `"250ms"`, `"10s"` or `"1.5m"` (units `ns`, `us`,
    /// `ms`, `s`, `m`, `h`), `default` when absent, or an error naming the key.
    pub fn duration_or(&self, key: &str, default: Duration) -> Result<Duration, String> {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => parse_duration(raw).ok_or_else(|| {
                format!(
                    "strategy_config.{key}: {raw:?} is not a duration like \"250ms\" or \"10s\""
                )
            }),
        }
    }

    /// Refuses keys other than `known`, so a typo in the config is an error, not a silent default.
    pub fn allow_only(&self, known: &[&str]) -> Result<(), String> {
        match self
            .pairs
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            None => Ok(()),
            Some((k, _)) if known.is_empty() => Err(format!(
                "strategy_config.{k}: unknown parameter (this strategy takes none)"
            )),
            Some((k, _)) => Err(format!(
                "strategy_config.{k}: unknown parameter (expected one of: {})",
                known.join(", ")
            )),
        }
    }
}

/// `<number><unit>`, the number possibly fractional; `None` for anything else.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds_per_unit = match unit.trim() {
        "ns" => 1e-9,
        "us" | "\u{b5}s" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(number * seconds_per_unit).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn durations_parse_with_units_and_errors_name_the_key() {
        let p = params(&[("a", "10s"), ("b", "250ms"), ("c", "1.5m"), ("d", "10")]);
        let d = Duration::from_secs(7);
        assert_eq!(p.duration_or("a", d), Ok(Duration::from_secs(10)));
        assert_eq!(p.duration_or("b", d), Ok(Duration::from_millis(250)));
        assert_eq!(p.duration_or("c", d), Ok(Duration::from_secs(90)));
        assert_eq!(p.duration_or("absent", d), Ok(d));
        let err = p.duration_or("d", d).unwrap_err();
        assert!(err.starts_with("strategy_config.d: "), "{err}");
        for bad in ["", "s", "-1s", "1 fortnight", "1e3s", "1.2.3s"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        assert_eq!(parse_duration("20us"), Some(Duration::from_micros(20)));
    }
}
