//! Reading decimal numbers fast. Data files, CSV uploads and events spell almost every value as
//! a short plain decimal ("2", "-1", "30.0", "50.6325934047"): those are read with integer
//! arithmetic and one division, exactly (Clinger's fast path: a mantissa below 2^53 divided by
//! a power of ten up to 10^22, both exact, is correctly rounded by IEEE division). Anything
//! else (exponents, more digits, "inf", a stray letter) goes to the standard library's parser,
//! so the result is always what `str::parse::<f64>` gives.

/// The exact powers of ten as `f64`.
const POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// `text.parse::<f64>()`, faster on plain decimals.
pub fn parse_f64(text: &str) -> Result<f64, std::num::ParseFloatError> {
    match plain_decimal(text.as_bytes()) {
        Some(v) => Ok(v),
        None => text.parse(),
    }
}

/// True when `v` is a whole number (`v.fract() == 0.0`, without the call to `trunc` that
/// `fract` costs on targets without SSE4.1).
#[inline]
pub fn is_whole(v: f64) -> bool {
    // Every float of magnitude 2^52 or more is whole; below that, the i64 round trip is exact.
    if v.abs() < 4_503_599_627_370_496.0 {
        (v as i64) as f64 == v
    } else {
        v.is_finite()
    }
}

/// `text.trim()`, without looking at characters when the first and last bytes are not
/// whitespace (the common case for data values).
#[inline]
pub fn trim(text: &str) -> &str {
    match (text.as_bytes().first(), text.as_bytes().last()) {
        (Some(&first), Some(&last)) if first.is_ascii_graphic() && last.is_ascii_graphic() => text,
        _ => text.trim(),
    }
}

/// The integer a plain whole decimal spells: an optional `-`, 1 to 15 digits, and optionally
/// a point followed only by zeros ("2", "-1", "2.0", "59350"); `None` for anything else, which
/// [`parse_f64`] then reads. Codes are spelled this way: reading them needs no float.
#[inline]
pub fn parse_whole(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let (negative, digits) = match bytes.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, bytes),
    };
    let (int, zeros) = match digits.iter().position(|&b| b == b'.') {
        Some(point) => (&digits[..point], &digits[point + 1..]),
        None => (digits, &[][..]),
    };
    if int.is_empty() || int.len() > 15 || zeros.iter().any(|&b| b != b'0') {
        return None;
    }
    let mut value = 0i64;
    for &b in int {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(b - b'0');
    }
    Some(if negative { -value } else { value })
}

/// An optional `-`, digits, at most one `.` among them (at least one digit in all), at most 19
/// digits whose value is below 2^53 and at most 22 of them after the point; `None` otherwise.
#[inline]
fn plain_decimal(bytes: &[u8]) -> Option<f64> {
    let (negative, digits) = match bytes.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, bytes),
    };
    let (mut mantissa, mut count, mut after_point) = (0u64, 0usize, None::<usize>);
    for &c in digits {
        match c {
            b'0'..=b'9' => {
                if count == 19 {
                    return None;
                }
                mantissa = mantissa * 10 + u64::from(c - b'0');
                count += 1;
            }
            b'.' if after_point.is_none() => after_point = Some(count),
            _ => return None,
        }
    }
    let fraction = count - after_point.unwrap_or(count);
    if count == 0 || mantissa >= 1 << 53 || fraction >= POWERS_OF_TEN.len() {
        return None;
    }
    let value = mantissa as f64 / POWERS_OF_TEN[fraction];
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn same(text: &str) {
        let ours = parse_f64(text);
        let std = text.parse::<f64>();
        match (ours, std) {
            (Ok(a), Ok(b)) => assert_eq!(a.to_bits(), b.to_bits(), "{text:?}"),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("{text:?}: {a:?} where the standard library gives {b:?}"),
        }
    }

    #[test]
    fn agrees_with_the_standard_library_on_every_spelling() {
        for text in [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "2",
            "2.0",
            "-1",
            "30.0",
            "59350",
            "50.6325934047",
            "3.0522062542",
            ".5",
            "5.",
            "-.5",
            "007",
            "0.1",
            "0.3",
            "1e5",
            "1E-3",
            "+1",
            "inf",
            "-inf",
            "NaN",
            "",
            "-",
            ".",
            "-.",
            "1.2.3",
            "1,5",
            " 1",
            "1 ",
            "2A",
            "0x10",
            "9007199254740991",
            "9007199254740992",
            "9007199254740993",
            "12345678901234567890",
            "1.0000000000000000000001",
            "0.0000000000000000000001",
            "123456789.123456789",
        ] {
            same(text);
        }
    }

    #[test]
    fn plain_decimals_take_the_fast_path() {
        assert_eq!(plain_decimal(b"30.0"), Some(30.0));
        assert_eq!(plain_decimal(b"-1"), Some(-1.0));
        assert_eq!(plain_decimal(b"50.6325934047"), Some(50.6325934047));
        // Outside the exact range: the standard library decides.
        assert_eq!(plain_decimal(b"9007199254740993"), None);
        assert_eq!(plain_decimal(b"1e5"), None);
    }

    #[test]
    fn whole_decimals_read_as_integers_where_the_float_is_whole() {
        assert_eq!(parse_whole("59350"), Some(59350));
        assert_eq!(parse_whole("-1"), Some(-1));
        assert_eq!(parse_whole("2.000"), Some(2));
        assert_eq!(parse_whole("2."), Some(2));
        assert_eq!(parse_whole("-0"), Some(0));
        for text in [
            "",
            "-",
            ".0",
            "2.5",
            "1e3",
            "+1",
            "2A",
            " 1",
            "1234567890123456",
            "0x1",
        ] {
            assert_eq!(parse_whole(text), None, "{text:?}");
        }
    }

    #[test]
    fn whole_numbers_are_told_apart_as_fract_does() {
        for v in [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            -0.5,
            2.0f64.powi(52),
            2.0f64.powi(52) + 0.5,
            2.0f64.powi(53),
            1e300,
            -1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            f64::MIN_POSITIVE,
            59350.0,
            (i64::MAX as f64),
            4_503_599_627_370_495.5,
        ] {
            assert_eq!(is_whole(v), v.fract() == 0.0, "{v}");
        }
    }

    #[test]
    fn trimming_matches_str_trim() {
        for text in [
            "", " ", "1", " 1", "1 ", "\t1\r", "a b", "\u{a0}1", "1\u{a0}", "é", "-",
        ] {
            assert_eq!(trim(text), text.trim(), "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn a_whole_decimal_is_the_float_the_standard_library_reads(
            text in "-?[0-9]{1,16}(\\.0{0,3})?|-?[0-9]{1,4}\\.[0-9]{1,3}",
        ) {
            if let Some(i) = parse_whole(&text) {
                prop_assert_eq!(i as f64, text.parse::<f64>().unwrap());
            } else {
                // Declined only for too many digits before the point or a non-zero after it.
                let (int, fraction) = text.split_once('.').unwrap_or((&text, ""));
                prop_assert!(
                    int.trim_start_matches('-').len() > 15 || fraction.bytes().any(|b| b != b'0'),
                    "{}", text
                );
            }
        }

        #[test]
        fn whole_agrees_with_fract(v in any::<f64>()) {
            prop_assert_eq!(is_whole(v), v.fract() == 0.0);
        }


        #[test]
        fn any_decimal_reads_as_the_standard_library_reads_it(
            negative in any::<bool>(),
            int in "[0-9]{0,12}",
            frac in proptest::option::of("[0-9]{0,12}"),
        ) {
            let text = format!(
                "{}{int}{}",
                if negative { "-" } else { "" },
                frac.map(|f| format!(".{f}")).unwrap_or_default()
            );
            same(&text);
        }

        #[test]
        fn any_float_printed_reads_back(v in any::<f64>()) {
            same(&v.to_string());
            same(&format!("{v:.3}"));
        }
    }
}
