//! Plain types and rules, no I/O: phone normalisation, ticket checks, agent devices, the
//! resident register's values (kana, postal code, birth date, 宛名番号), inquiries, the call
//! outcome vocabulary, vaccine products and dose intervals ([`vaccine`]). Values are parsed
//! once at the edge (a form, a CSV row, a query string) into these types; handlers and queries take the types, never raw strings. Width and kana
//! folding happen in one place, [`text`]. Most unit tests live here.
//!
//! No I/O but the random bytes of [`random`]. `domain` imports nothing else of the crate (`src/layering.rs` checks it).

pub mod address;
pub mod assign;
pub mod birth;
pub mod call;
pub mod device;
pub mod dose;
pub mod forecast;
pub mod inquiry;
pub mod kana;
pub mod notice;
pub mod ocr;
pub mod phone;
pub mod random;
pub mod resident;
pub mod template;
pub mod text;
pub mod ticket;
pub mod vaccine;
pub mod vsys;
pub mod wareki;

pub use address::{AddressNo, PostalCode};
pub use birth::BirthDate;
pub use call::DialStatus;
pub use device::Extension;
pub use inquiry::{CallerKind, InquiryCategory, InquiryForm, NewInquiry};
pub use kana::Kana;
pub use phone::{PhoneKind, PhoneNumber};
pub use resident::{Intent, NewResident, Outcome, Role, Sex};
pub use ticket::{MunicipalityCode, TicketNo};
pub use vaccine::{dose2_window, BookingStatus, Dose2Window, DoseRuleError, Product};
pub use wareki::Era;

/// A submitted value refused, naming the field at fault (an HTTP 422, a CSV row's problem).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> FieldError {
        FieldError {
            field,
            reason: reason.into(),
        }
    }
}
