//! OMERO group permission strings (`rwr---`) and their `perm1` long (spec §6).

/// -1 with the nine role/right bits cleared.
const PERM1_BASE: i64 = -1912;

/// Bits per position of the six-character string: (read, write-implies-annotate, annotate).
const ROLE_BITS: [(i64, i64, i64); 3] = [
    (0x400, 0x200, 0x100), // user
    (0x40, 0x20, 0x10),    // group
    (0x4, 0x2, 0x1),       // world
];

/// The `perm1` value of a permission string, or `None` when the string is not of the form
/// `[r-][wa-]` three times.
pub fn perm1(permissions: &str) -> Option<i64> {
    let bytes = permissions.as_bytes();
    if bytes.len() != 6 {
        return None;
    }
    let mut value = PERM1_BASE;
    for (pair, (read, write, annotate)) in bytes.chunks(2).zip(ROLE_BITS) {
        match pair[0] {
            b'r' => value |= read,
            b'-' => {}
            _ => return None,
        }
        match pair[1] {
            b'w' => value |= write | annotate,
            b'a' => value |= annotate,
            b'-' => {}
            _ => return None,
        }
    }
    Some(value)
}

/// The permission string of a `perm1` value (the inverse of [`perm1`] on its values).
pub fn from_perm1(value: i64) -> String {
    let mut out = String::with_capacity(6);
    for (read, write, annotate) in ROLE_BITS {
        out.push(if value & read != 0 { 'r' } else { '-' });
        out.push(if value & write != 0 {
            'w'
        } else if value & annotate != 0 {
            'a'
        } else {
            '-'
        });
    }
    out
}

/// True when `permissions` is a well-formed string.
pub fn is_valid(permissions: &str) -> bool {
    perm1(permissions).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_values() {
        assert_eq!(perm1("rw----"), Some(-120));
        assert_eq!(perm1("rwr---"), Some(-56));
        assert_eq!(perm1("rwra--"), Some(-40));
        assert_eq!(perm1("rwrw--"), Some(-8));
        assert_eq!(perm1("rwr-r-"), Some(-52));
        assert_eq!(perm1("------"), Some(-1912));
        assert_eq!(perm1("rwrwrw"), Some(-1));
    }

    #[test]
    fn strings_survive_their_perm1() {
        for p in [
            "rw----", "rwr---", "rwra--", "rwrw--", "rwr-r-", "------", "rwrwrw",
        ] {
            assert_eq!(from_perm1(perm1(p).unwrap()), p);
        }
    }

    #[test]
    fn malformed_strings() {
        for bad in ["", "rw---", "rw-----", "wr----", "rx----", "RW----"] {
            assert_eq!(perm1(bad), None, "{bad}");
        }
    }
}
