//! Closed vocabularies of the ledger: 接種意向, sex, staff roles, call outcomes.
//! Each is stored as its lowercase code; the database has a CHECK for the same set.

use serde::{Deserialize, Serialize};

macro_rules! code_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $code:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $code)] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn code(self) -> &'static str {
                match self { $($name::$variant => $code),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s.trim() { $($code => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.code())
            }
        }
    };
}

code_enum!(
    /// 接種意向: what the intent survey recorded.
    Intent { Wants = "wants", Declines = "declines", Undecided = "undecided", NoAnswer = "none", Clinic = "clinic" }
);

code_enum!(
    /// 性別 as the resident register holds it.
    Sex { Male = "M", Female = "F" }
);

code_enum!(
    /// 職員の役割: what a login may do.
    Role { Agent = "agent", Supervisor = "supervisor", Planner = "planner", Venue = "venue", Admin = "admin" }
);

code_enum!(
    /// How a call ended, as the call log records it.
    Outcome { Answered = "answered", Abandoned = "abandoned", Timeout = "timeout", NoAnswer = "no_answer", Busy = "busy", Failed = "failed", Unknown = "unknown" }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for i in Intent::ALL {
            assert_eq!(Intent::parse(i.code()), Some(*i));
        }
        assert_eq!(Intent::parse("maybe"), None);
        assert_eq!(Outcome::parse("no_answer"), Some(Outcome::NoAnswer));
        assert_eq!(
            serde_json::to_string(&Role::Supervisor).unwrap(),
            "\"supervisor\""
        );
    }
}
