//! A response head or trailer section from the fields HPACK decoded, checked as RFC 9113 §8.1.1
//! and §8.3.2 ask: `:status` alone among pseudo-fields and before the rest, names in lower case,
//! no connection-specific field, the whole within [`MAX_HEADER_LIST`].

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;

use super::MAX_HEADER_LIST;

/// Collects one header section's fields.
#[derive(Debug)]
pub(super) struct Section {
    /// Trailers: no pseudo-field at all.
    trailers: bool,
    status: Option<StatusCode>,
    headers: HeaderMap,
    /// What RFC 7541 §4.1 counts: name + value + 32 a field.
    size: usize,
    regular_seen: bool,
    error: Option<&'static str>,
}

impl Section {
    pub(super) fn new(trailers: bool) -> Self {
        Section {
            trailers,
            status: None,
            headers: HeaderMap::new(),
            size: 0,
            regular_seen: false,
            error: None,
        }
    }

    /// Takes one field; the first fault is kept and the rest ignored.
    pub(super) fn field(&mut self, name: &[u8], value: &[u8]) {
        if self.error.is_some() {
            return;
        }
        self.size += name.len() + value.len() + 32;
        if self.size > MAX_HEADER_LIST as usize {
            self.error = Some("head larger than 16 KiB");
            return;
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            self.error = if self.trailers {
                Some("pseudo-field in trailers")
            } else if self.regular_seen {
                Some("pseudo-field after a regular field")
            } else if pseudo != b"status" {
                Some("pseudo-field other than :status")
            } else if self.status.is_some() {
                Some("two :status fields")
            } else {
                match parse_status(value) {
                    Some(status) => {
                        self.status = Some(status);
                        None
                    }
                    None => Some("invalid :status"),
                }
            };
            return;
        }
        self.regular_seen = true;
        if name.iter().any(u8::is_ascii_uppercase) {
            self.error = Some("field name in upper case");
            return;
        }
        let Ok(name) = HeaderName::from_bytes(name) else {
            self.error = Some("invalid field name");
            return;
        };
        if crate::http2::is_connection_specific(&name)
            && !(name == http::header::TE && value == b"trailers")
        {
            self.error = Some("connection-specific field");
            return;
        }
        match HeaderValue::from_bytes(value) {
            Ok(value) => {
                self.headers.append(name, value);
            }
            Err(_) => self.error = Some("invalid field value"),
        }
    }

    /// The head's status and fields.
    pub(super) fn into_head(self) -> Result<(StatusCode, HeaderMap), &'static str> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let status = self.status.ok_or("no :status")?;
        Ok((status, self.headers))
    }

    /// The trailer section's fields.
    pub(super) fn into_trailers(self) -> Result<HeaderMap, &'static str> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.headers),
        }
    }
}

/// A three-digit status code.
fn parse_status(value: &[u8]) -> Option<StatusCode> {
    if value.len() != 3 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    StatusCode::from_bytes(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(fields: &[(&str, &str)]) -> Result<(StatusCode, HeaderMap), &'static str> {
        let mut section = Section::new(false);
        for (n, v) in fields {
            section.field(n.as_bytes(), v.as_bytes());
        }
        section.into_head()
    }

    #[test]
    fn a_head_has_one_status_first_and_lower_case_names() {
        let (status, headers) = head(&[(":status", "200"), ("server", "x")]).unwrap();
        assert_eq!(status, 200);
        assert_eq!(headers["server"], "x");
        assert!(head(&[("server", "x")]).is_err());
        assert!(head(&[("server", "x"), (":status", "200")]).is_err());
        assert!(head(&[(":status", "200"), (":status", "200")]).is_err());
        assert!(head(&[(":status", "20")]).is_err());
        assert!(head(&[(":status", "200"), (":path", "/")]).is_err());
        assert!(head(&[(":status", "200"), ("Server", "x")]).is_err());
        assert!(head(&[(":status", "200"), ("connection", "close")]).is_err());
        assert!(head(&[(":status", "200"), ("x", "a\nb")]).is_err());
        let big = "v".repeat(17 * 1024);
        assert!(head(&[(":status", "200"), ("x", &big)]).is_err());
    }

    #[test]
    fn trailers_have_no_pseudo_field() {
        let mut section = Section::new(true);
        section.field(b"grpc-status", b"0");
        assert_eq!(section.into_trailers().unwrap()["grpc-status"], "0");
        let mut section = Section::new(true);
        section.field(b":status", b"200");
        assert!(section.into_trailers().is_err());
    }
}
