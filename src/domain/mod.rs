//! Plain types and rules, no I/O: phone normalisation, ticket checks, agent devices, the call
//! outcome vocabulary. Most unit tests live here.

pub mod call;
pub mod device;
pub mod phone;
pub mod resident;
pub mod ticket;

pub use call::DialStatus;
pub use device::Extension;
pub use phone::PhoneNumber;
pub use resident::{Intent, Outcome, Role, Sex};
pub use ticket::{MunicipalityCode, TicketNo};
