//! What may appear in logs: session UUIDs are bearer credentials (whoever has one joins the
//! session), so logs at INFO and above show only their first 8 characters.

/// `text` with every UUID-shaped part cut to its first 8 characters and an ellipsis, e.g.
/// `c9a0e1f2…/IAdmin` for `c9a0e1f2-…-…/IAdmin`.
pub fn short_uuids(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i + UUID_LEN <= bytes.len() {
        if is_uuid(&bytes[i..i + UUID_LEN]) {
            // Both ends are ASCII, so the slices fall on character boundaries.
            out.push_str(&text[copied..i + 8]);
            out.push('…');
            i += UUID_LEN;
            copied = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

const UUID_LEN: usize = 36;

fn is_uuid(b: &[u8]) -> bool {
    b.iter().enumerate().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => *c == b'-',
        _ => c.is_ascii_hexdigit(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    #[test]
    fn uuids_are_cut_wherever_they_appear() {
        assert_eq!(short_uuids(U), "0f8fad5b…");
        assert_eq!(
            short_uuids(&format!("{U}/client-{U}omero.api.IAdmin")),
            "0f8fad5b…/client-0f8fad5b…omero.api.IAdmin"
        );
        assert_eq!(
            short_uuids("OMERO.Glacier2/router"),
            "OMERO.Glacier2/router"
        );
        assert_eq!(short_uuids("é-ü"), "é-ü");
    }
}
