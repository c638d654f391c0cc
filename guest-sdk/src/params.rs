//! The strategy's parameters, from the config's `strategy_config` object.

use std::str::FromStr;

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
