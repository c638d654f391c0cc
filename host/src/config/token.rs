//! The admin API's bearer token, read from `admin_token_file` when the config is checked and
//! on each mutating request (so a rotated file applies at once).

use std::io::Read as _;
use std::path::Path;

/// A token file longer than this is refused.
const MAX_TOKEN_BYTES: u64 = 4096;

/// The token in `path`: its contents without surrounding whitespace, at most 4 KiB, never empty.
pub(crate) fn read_token(path: &Path) -> Result<String, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_TOKEN_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_TOKEN_BYTES {
        return Err(format!(
            "{} is longer than {MAX_TOKEN_BYTES} bytes",
            path.display()
        ));
    }
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_huge_token_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("lbhost-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let path = dir.join("token");
        std::fs::write(&path, " \n").expect("writing");
        assert!(read_token(&path).is_err_and(|e| e.ends_with("is empty")));
        std::fs::write(&path, "x".repeat(5000)).expect("writing");
        assert!(read_token(&path).is_err_and(|e| e.contains("longer than")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
