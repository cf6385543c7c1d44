//! Validated domain types. A value of these types is valid by construction: the
//! wire layer parses requests into them once, and nothing downstream re-checks.

mod contact;
mod edit;
mod email;
mod mask;
mod phone;
mod text;
mod values;

pub use contact::{
    ChangeKind, Company, Contact, ContactData, ContactId, MergeOutcome, Name, Rejected,
    SCALAR_PATHS, etag_of,
};
pub use edit::{AddOutcome, NewValue, Replacement};
pub use email::Email;
pub use mask::{Field, ReadMask};
pub use phone::{Phone, Region};
pub use text::{Invalid, Limits, parse_text};
pub use values::{
    AddressValue, ArrayValue, CustomFieldValue, DateValue, EmailStatus, EmailValue, NoteValue,
    PhoneValue, UrlValue, WebUrl, parse_date,
};
