//! The opaque keyset cursor of the back-office list: the last row's (created_at, id), with a
//! checksum so a tampered or truncated cursor is a 400, not a silently different page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tern::Problem;

/// Where the next page starts (exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The last row's creation time.
    pub created_at: DateTime<Utc>,
    /// The last row's id.
    pub id: String,
}

impl Cursor {
    /// The opaque text form.
    pub fn encode(&self) -> String {
        let body = format!("{}|{}", self.created_at.timestamp_micros(), self.id);
        let sum = &Sha256::digest(body.as_bytes())[..6];
        B64.encode(format!("{body}|{}", hex::encode(sum)))
    }

    /// Parses the opaque form; anything else is a 400 problem.
    pub fn decode(s: &str) -> Result<Self, Problem> {
        let bad = || {
            Problem::malformed("The cursor is not one this API returned; start again without it.")
        };
        let raw = B64.decode(s.as_bytes()).map_err(|_| bad())?;
        let text = String::from_utf8(raw).map_err(|_| bad())?;
        let (body, sum) = text.rsplit_once('|').ok_or_else(bad)?;
        if hex::encode(&Sha256::digest(body.as_bytes())[..6]) != sum {
            return Err(bad());
        }
        let (micros, id) = body.split_once('|').ok_or_else(bad)?;
        let micros: i64 = micros.parse().map_err(|_| bad())?;
        let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
        Ok(Self {
            created_at,
            id: id.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tampering() {
        let c = Cursor {
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: "ord_x".into(),
        };
        let s = c.encode();
        assert_eq!(Cursor::decode(&s).unwrap(), c);
        let mut tampered = s.into_bytes();
        tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
        let p = Cursor::decode(std::str::from_utf8(&tampered).unwrap()).unwrap_err();
        assert_eq!(p.status(), 400);
        assert_eq!(Cursor::decode("!!").unwrap_err().status(), 400);
    }
}
