/// Size limits of what one contact may hold. Chosen so that a contact stays a
/// few kilobytes and one row read serves any request (see README "Limits").
pub struct Limits;

impl Limits {
    /// Values in each array property (emails, phones, ..., tags).
    pub const VALUES_PER_ARRAY: usize = 50;
    /// Names, company, value tags, address parts, contact tags.
    pub const SHORT_TEXT: usize = 200;
    /// Custom field values.
    pub const MEDIUM_TEXT: usize = 2_000;
    /// URLs, pictures.
    pub const URL: usize = 2_048;
    /// Note contents.
    pub const NOTE: usize = 10_000;
    /// Emails (RFC 5321 path limit).
    pub const EMAIL: usize = 254;
    /// Phones as written by people.
    pub const PHONE: usize = 64;
}

/// Why a value was refused, worded to follow the field's name
/// ("contact.emails\[0\].email: is not a valid email address").
pub type Invalid = String;

/// Trims `value` and checks it fits in `max` characters and can be stored
/// (PostgreSQL text cannot hold NUL).
pub fn parse_text(value: &str, max: usize) -> Result<String, Invalid> {
    let value = value.trim();
    if value.contains('\0') {
        return Err("must not contain NUL characters".into());
    }
    // Counting characters only matters when the bytes could exceed the limit.
    if value.len() > max {
        let len = value.chars().count();
        if len > max {
            return Err(format!("is {len} characters long; the limit is {max}"));
        }
    }
    Ok(value.to_owned())
}

/// Case-insensitive equality, cheap for the common ASCII case.
pub(crate) fn same_text(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.to_lowercase() == b.to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_bounded_in_characters_not_bytes() {
        assert_eq!(parse_text("  Dana ", 10).unwrap(), "Dana");
        assert!(parse_text("ééééé", 5).is_ok());
        assert!(parse_text("abcdef", 5).unwrap_err().contains("limit is 5"));
        assert!(parse_text("a\0b", 5).is_err());
    }

    #[test]
    fn same_text_ignores_case_also_beyond_ascii() {
        assert!(same_text("Dana", "dANA"));
        assert!(same_text("Ünal", "ünal"));
        assert!(!same_text("Dana", "Dina"));
    }
}
