//! Order ids: `ord_` and 26 base32 characters from 128 random bits. Unguessable, so the id
//! itself is the customer's tracking link; there is no public list to find it from.

use rand::RngCore;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A new random order id.
pub fn new_order_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let mut out = String::with_capacity(30);
    out.push_str("ord_");
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Whether `s` has the shape of an order id (checked before touching the database).
pub fn is_order_id(s: &str) -> bool {
    s.len() == 30 && s.starts_with("ord_") && s[4..].bytes().all(|b| ALPHABET.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_well_formed_and_distinct() {
        let a = new_order_id();
        let b = new_order_id();
        assert!(is_order_id(&a), "{a}");
        assert_ne!(a, b);
        assert!(!is_order_id("ord_short"));
        assert!(!is_order_id("ord_ABCDEFGHIJKLMNOPQRSTUVWXYZ"));
    }
}
