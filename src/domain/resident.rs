//! Closed vocabularies of the ledger: 接種意向, sex, staff roles, call outcomes; and the
//! resident as the register files it ([`NewResident`]), with the register's spellings of each
//! value. Each vocabulary is stored as its code; the database has a CHECK for the same set.

use super::text::{fold_trimmed, one_space};
use super::{AddressNo, BirthDate, Kana, MunicipalityCode, PhoneNumber, PostalCode, TicketNo};
use serde::{Deserialize, Serialize};

macro_rules! code_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $code:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $code)] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The stored codes, in declaration order.
            pub const CODES: &'static [&'static str] = &[$($code),+];
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
pub(crate) use code_enum;

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

impl Intent {
    /// 接種意向 as a register or survey writes it: the code, or the Japanese answer; empty is
    /// 未回答 (`none`).
    pub fn from_register(written: &str) -> Result<Intent, String> {
        let s = fold_trimmed(written);
        if let Some(i) = Intent::parse(&s.to_lowercase()) {
            return Ok(i);
        }
        match s.as_str() {
            "" | "未回答" => Ok(Intent::NoAnswer),
            "希望" | "希望する" => Ok(Intent::Wants),
            "希望しない" | "辞退" => Ok(Intent::Declines),
            "未定" => Ok(Intent::Undecided),
            "個別接種" | "個別" => Ok(Intent::Clinic),
            other => Err(format!(
                "must be wants, declines, undecided, none or clinic, got {other:?}"
            )),
        }
    }
}

impl Sex {
    /// 性別 as a register writes it: `M`/`F` (either case) or 男/女.
    pub fn from_register(written: &str) -> Result<Sex, String> {
        match fold_trimmed(written).as_str() {
            "M" | "m" | "男" => Ok(Sex::Male),
            "F" | "f" | "女" => Ok(Sex::Female),
            "" => Err("required (M or F)".into()),
            other => Err(format!("must be M or F (or 男/女), got {other:?}")),
        }
    }
}

/// 送迎要否 as a register writes it: `0`/`1` or 不要/要; empty is 0.
pub fn needs_transport_from_register(written: &str) -> Result<bool, String> {
    match fold_trimmed(written).as_str() {
        "" | "0" | "不要" => Ok(false),
        "1" | "要" => Ok(true),
        other => Err(format!("must be 0 or 1 (or 不要/要), got {other:?}")),
    }
}

/// 氏名 (kanji): required, at most 60 characters, surname and given name separated by one
/// ideographic space. Not width-folded: a name's 異体字 is part of it (see [`super::text`]).
pub fn person_name(written: &str) -> Result<String, String> {
    let s = one_space(written);
    if s.is_empty() {
        return Err("required".into());
    }
    if s.chars().count() > 60 {
        return Err("longer than 60 characters".into());
    }
    Ok(s)
}

/// Free text of the register (住所, 町名, 地区, 世帯番号): trimmed, at most `max` characters.
pub fn bounded_text(written: &str, max: usize) -> Result<String, String> {
    let s = written.trim();
    if s.chars().count() > max {
        return Err(format!("longer than {max} characters"));
    }
    Ok(s.to_string())
}

/// A resident to insert (import, demo, tests), built from parsed values only.
#[derive(Debug, Clone)]
pub struct NewResident {
    pub address_no: AddressNo,
    pub municipality_code: MunicipalityCode,
    pub ticket_no: TicketNo,
    /// 氏名, see [`person_name`].
    pub name: String,
    pub name_kana: Kana,
    pub birth_date: BirthDate,
    pub sex: Sex,
    pub postal_code: Option<PostalCode>,
    pub address: String,
    pub town: String,
    pub district: String,
    pub household_no: Option<String>,
    pub intent: Intent,
    pub needs_transport: bool,
    pub notes: String,
    /// (number, as written, kind: home / mobile / family / other)
    pub phones: Vec<(PhoneNumber, String, &'static str)>,
}

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
        assert_eq!(Intent::CODES[1], "declines");
    }

    #[test]
    fn register_spellings() {
        assert_eq!(Sex::from_register("男"), Ok(Sex::Male));
        assert_eq!(Sex::from_register("ｆ"), Ok(Sex::Female));
        assert!(Sex::from_register("").is_err());
        assert_eq!(Intent::from_register("希望"), Ok(Intent::Wants));
        assert_eq!(Intent::from_register("WANTS"), Ok(Intent::Wants));
        assert_eq!(Intent::from_register(""), Ok(Intent::NoAnswer));
        assert!(Intent::from_register("maybe").is_err());
        assert_eq!(needs_transport_from_register("１"), Ok(true));
        assert_eq!(needs_transport_from_register("不要"), Ok(false));
        assert!(needs_transport_from_register("2").is_err());
        assert_eq!(person_name(" 山田  太郎 ").unwrap(), "山田\u{3000}太郎");
        assert!(person_name(" ").is_err());
        assert!(bounded_text("abc", 2).is_err());
    }
}
