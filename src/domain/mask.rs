//! Field masks: which fields of a contact a caller wants back.

use crate::error::FieldViolation;

/// A field a read mask can select (`id` and `etag` always come back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Field {
    NamePrefix,
    NameFirst,
    NameMiddle,
    NameLast,
    NameSuffix,
    CompanyName,
    CompanyRole,
    Picture,
    Emails,
    Phones,
    Addresses,
    Urls,
    Dates,
    Notes,
    CustomFields,
    Tags,
    CreateTime,
    UpdateTime,
}

use Field::*;

/// Every accepted path and the fields it selects.
const PATHS: &[(&str, &[Field])] = &[
    ("id", &[]),
    ("etag", &[]),
    (
        "name",
        &[NamePrefix, NameFirst, NameMiddle, NameLast, NameSuffix],
    ),
    ("name.prefix", &[NamePrefix]),
    ("name.first", &[NameFirst]),
    ("name.middle", &[NameMiddle]),
    ("name.last", &[NameLast]),
    ("name.suffix", &[NameSuffix]),
    ("company", &[CompanyName, CompanyRole]),
    ("company.name", &[CompanyName]),
    ("company.role", &[CompanyRole]),
    ("picture", &[Picture]),
    ("emails", &[Emails]),
    ("phones", &[Phones]),
    ("addresses", &[Addresses]),
    ("urls", &[Urls]),
    ("dates", &[Dates]),
    ("notes", &[Notes]),
    ("custom_fields", &[CustomFields]),
    ("tags", &[Tags]),
    ("create_time", &[CreateTime]),
    ("update_time", &[UpdateTime]),
];

/// A set of [`Field`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadMask(u32);

impl ReadMask {
    pub const ALL: ReadMask = ReadMask((1 << (UpdateTime as u32 + 1)) - 1);

    /// Parses the paths of a `google.protobuf.FieldMask`; `field` is the mask's
    /// name in the request (e.g. `read_mask`). No paths, or `*`, selects all.
    pub fn parse(field: &str, paths: &[String]) -> Result<Self, Vec<FieldViolation>> {
        if paths.is_empty() {
            return Ok(Self::ALL);
        }
        let mut mask = ReadMask(0);
        let mut violations = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            if path == "*" {
                mask = Self::ALL;
            } else if let Some((_, fields)) = PATHS.iter().find(|(p, _)| p == path) {
                mask.0 |= fields.iter().fold(0, |bits, f| bits | 1 << *f as u32);
            } else {
                violations.push(FieldViolation::new(
                    format!("{field}.paths[{i}]"),
                    format!(
                        "unknown field {path:?}; known fields: {}",
                        Self::known_paths()
                    ),
                ));
            }
        }
        if violations.is_empty() {
            Ok(mask)
        } else {
            Err(violations)
        }
    }

    pub fn contains(self, field: Field) -> bool {
        self.0 & (1 << field as u32) != 0
    }

    fn known_paths() -> String {
        PATHS.iter().map(|(p, _)| *p).collect::<Vec<_>>().join(", ")
    }
}

impl Default for ReadMask {
    fn default() -> Self {
        Self::ALL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn empty_and_star_masks_select_everything() {
        assert_eq!(ReadMask::parse("m", &[]).unwrap(), ReadMask::ALL);
        assert_eq!(ReadMask::parse("m", &paths(&["*"])).unwrap(), ReadMask::ALL);
        assert!(ReadMask::ALL.contains(UpdateTime));
    }

    #[test]
    fn nested_paths_select_single_leaves_and_groups_select_all_their_leaves() {
        let mask = ReadMask::parse("m", &paths(&["name.first", "company", "emails"])).unwrap();
        assert!(mask.contains(NameFirst) && !mask.contains(NameLast));
        assert!(mask.contains(CompanyName) && mask.contains(CompanyRole));
        assert!(mask.contains(Emails) && !mask.contains(Phones));
    }

    #[test]
    fn unknown_paths_are_named_by_their_index() {
        let err = ReadMask::parse("read_mask", &paths(&["name", "nickname"])).unwrap_err();
        assert_eq!(err[0].field, "read_mask.paths[1]");
    }
}
