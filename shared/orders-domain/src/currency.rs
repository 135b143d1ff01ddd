//! ISO 4217 currency codes in circulation (the list maintained by SIX, as of 2026).

const CODES: &str = "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BHD BIF BMD BND BOB BOV BRL BSD BTN BWP \
BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP \
GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD \
KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK \
NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN \
SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XCD \
XCG XOF XPF YER ZAR ZMW ZWG";

/// Codes whose minor unit is not the hundredth (ISO 4217's "minor unit" column, as of 2026).
const NO_DECIMALS: &str = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF";
const THREE_DECIMALS: &str = "BHD IQD JOD KWD LYD OMR TND";
const FOUR_DECIMALS: &str = "CLF UYW";

/// Whether `code` is an active ISO 4217 code (upper case, three letters).
pub fn is_iso4217(code: &str) -> bool {
    code.len() == 3
        && code.bytes().all(|b| b.is_ascii_uppercase())
        && CODES.split(' ').any(|c| c == code)
}

/// How many decimals `code`'s minor unit has (ISO 4217): 0 for JPY, 2 for EUR, 3 for KWD.
/// Every `*_cents` amount of the API is a count of minor units: cents of a euro, yen, fils.
/// `None` for a code that is not ISO 4217.
pub fn minor_unit(code: &str) -> Option<u32> {
    if !is_iso4217(code) {
        return None;
    }
    let has = |list: &str| list.split(' ').any(|c| c == code);
    Some(if has(NO_DECIMALS) {
        0
    } else if has(THREE_DECIMALS) {
        3
    } else if has(FOUR_DECIMALS) {
        4
    } else {
        2
    })
}

/// `amount` minor units of `code` as people write it: `12.50 EUR`, `1250 JPY`, `1.250 KWD`,
/// `-0.05 EUR`. An unknown code is shown with two decimals.
pub fn format(amount: i64, code: &str) -> String {
    let decimals = minor_unit(code).unwrap_or(2);
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    if decimals == 0 {
        return format!("{sign}{abs} {code}");
    }
    let unit = 10u64.pow(decimals);
    format!(
        "{sign}{}.{:0width$} {code}",
        abs / unit,
        abs % unit,
        width = decimals as usize
    )
}

/// A price written in `code`'s major unit (`12`, `12.5`, `12.50` for EUR; `1250` for JPY) as
/// minor units; `None` when it is not a plain non-negative number with at most as many decimals
/// as the currency has, or does not fit.
pub fn parse(text: &str, code: &str) -> Option<i64> {
    let decimals = minor_unit(code)?;
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || frac.len() > decimals as usize
        || (text.contains('.') && frac.is_empty())
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let unit = 10i64.pow(decimals);
    let frac: i64 = if decimals == 0 {
        0
    } else {
        format!("{frac:0<width$}", width = decimals as usize)
            .parse()
            .ok()?
    };
    whole
        .parse::<i64>()
        .ok()?
        .checked_mul(unit)?
        .checked_add(frac)
}

/// An example price for `code`, for help texts: `12.50`, `1250`, `12.500`.
pub fn example(code: &str) -> String {
    match minor_unit(code).unwrap_or(2) {
        0 => "1250".to_owned(),
        d => format!("12.{:0<width$}", 5, width = d as usize),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_and_unknown() {
        assert!(super::is_iso4217("EUR"));
        assert!(super::is_iso4217("JPY"));
        assert!(!super::is_iso4217("eur"));
        assert!(!super::is_iso4217("XYZ"));
        assert!(!super::is_iso4217("EURO"));
    }

    #[test]
    fn minor_units_decide_the_decimals() {
        use super::{example, format, minor_unit, parse};
        assert_eq!(minor_unit("EUR"), Some(2));
        assert_eq!(minor_unit("JPY"), Some(0));
        assert_eq!(minor_unit("KWD"), Some(3));
        assert_eq!(minor_unit("CLF"), Some(4));
        assert_eq!(minor_unit("XYZ"), None);
        assert_eq!(format(1250, "EUR"), "12.50 EUR");
        assert_eq!(format(1250, "JPY"), "1250 JPY");
        assert_eq!(format(1250, "KWD"), "1.250 KWD");
        assert_eq!(format(7, "USD"), "0.07 USD");
        assert_eq!(format(-5, "EUR"), "-0.05 EUR");
        assert_eq!(parse("12", "EUR"), Some(1200));
        assert_eq!(parse("12.5", "EUR"), Some(1250));
        assert_eq!(parse("0.07", "EUR"), Some(7));
        assert_eq!(parse("1250", "JPY"), Some(1250));
        assert_eq!(parse("12.50", "JPY"), None, "yen have no decimals");
        assert_eq!(parse("1.25", "KWD"), Some(1250));
        assert_eq!(parse("1.250", "KWD"), Some(1250));
        for bad in [
            "",
            ".5",
            "1.",
            "1.234",
            "-1",
            "1e3",
            "abc",
            "99999999999999999999",
        ] {
            assert_eq!(parse(bad, "EUR"), None, "{bad}");
        }
        assert_eq!(parse("12", "XYZ"), None);
        assert_eq!(
            (example("EUR"), example("JPY"), example("KWD")),
            ("12.50".to_owned(), "1250".to_owned(), "12.500".to_owned())
        );
        // Every example parses back in its own currency.
        for code in ["EUR", "JPY", "KWD", "CLF"] {
            assert!(parse(&example(code), code).is_some(), "{code}");
        }
    }
}
