//! 問い合わせ: what a caller asked and what the agent answered, checked once at the edge.

use super::resident::code_enum;
use super::FieldError;
use serde::{Deserialize, Serialize};

code_enum!(
    /// The categories an agent picks from; the screen shows them in Japanese:
    /// 日時・会場の変更, キャンセル, 送迎バス, 接種券, 副反応, 接種対象・医療相談, その他, 苦情.
    InquiryCategory {
        AppointmentChange = "appointment_change",
        AppointmentCancel = "appointment_cancel",
        Transport = "transport",
        Ticket = "ticket",
        SideEffects = "side_effects",
        Eligibility = "eligibility",
        General = "general",
        Complaint = "complaint",
    }
);

code_enum!(
    /// Who called: 本人 (`self`) or someone on their behalf (`proxy`, with a 続柄).
    CallerKind { Resident = "self", Proxy = "proxy" }
);

/// At most this many characters of note.
pub const MAX_NOTE: usize = 4000;
/// At most this many characters of 続柄.
pub const MAX_RELATIONSHIP: usize = 40;

/// An inquiry as a browser (or the demo) submits it: raw text, parsed by [`NewInquiry::parse`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InquiryForm {
    pub resident_id: Option<i64>,
    pub call_id: Option<String>,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub note: String,
    #[serde(default)]
    pub follow_up: bool,
    #[serde(default)]
    pub caller_kind: String,
    #[serde(default)]
    pub relationship: String,
}

/// A checked inquiry: a known category, a proxy always with a 続柄, tied to a resident or a
/// call. Only [`NewInquiry::parse`] makes one, so the store never sees an unchecked one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewInquiry {
    resident_id: Option<i64>,
    call_id: Option<String>,
    category: InquiryCategory,
    note: String,
    follow_up: bool,
    caller_kind: CallerKind,
    relationship: String,
}

impl NewInquiry {
    /// Checks a form; the error names the field at fault. An empty `caller_kind` is 本人.
    pub fn parse(form: InquiryForm) -> Result<NewInquiry, FieldError> {
        let category = InquiryCategory::parse(&form.category).ok_or_else(|| {
            FieldError::new("category", format!("unknown category {:?}", form.category))
        })?;
        if form.note.chars().count() > MAX_NOTE {
            return Err(FieldError::new(
                "note",
                format!("at most {MAX_NOTE} characters"),
            ));
        }
        let caller_kind = match form.caller_kind.trim() {
            "" => CallerKind::Resident,
            other => CallerKind::parse(other).ok_or_else(|| {
                FieldError::new(
                    "caller_kind",
                    format!("must be self or proxy, got {other:?}"),
                )
            })?,
        };
        let relationship = form.relationship.trim().to_string();
        if caller_kind == CallerKind::Proxy && relationship.is_empty() {
            return Err(FieldError::new(
                "relationship",
                "a proxy caller needs a relationship (続柄)",
            ));
        }
        if relationship.chars().count() > MAX_RELATIONSHIP {
            return Err(FieldError::new(
                "relationship",
                format!("at most {MAX_RELATIONSHIP} characters"),
            ));
        }
        if form.resident_id.is_none() && form.call_id.is_none() {
            return Err(FieldError::new(
                "resident_id",
                "an inquiry needs a resident or a call",
            ));
        }
        Ok(NewInquiry {
            resident_id: form.resident_id,
            call_id: form.call_id,
            category,
            note: form.note,
            follow_up: form.follow_up,
            caller_kind,
            relationship,
        })
    }

    pub fn resident_id(&self) -> Option<i64> {
        self.resident_id
    }
    pub fn call_id(&self) -> Option<&str> {
        self.call_id.as_deref()
    }
    pub fn category(&self) -> InquiryCategory {
        self.category
    }
    pub fn note(&self) -> &str {
        &self.note
    }
    pub fn follow_up(&self) -> bool {
        self.follow_up
    }
    pub fn caller_kind(&self) -> CallerKind {
        self.caller_kind
    }
    /// 続柄, trimmed; empty when the resident called.
    pub fn relationship(&self) -> &str {
        &self.relationship
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> InquiryForm {
        InquiryForm {
            resident_id: Some(1),
            category: "transport".into(),
            ..InquiryForm::default()
        }
    }

    fn field(f: InquiryForm) -> &'static str {
        NewInquiry::parse(f).unwrap_err().field
    }

    #[test]
    fn a_plain_inquiry_is_from_the_resident() {
        let n = NewInquiry::parse(form()).unwrap();
        assert_eq!(n.caller_kind(), CallerKind::Resident);
        assert_eq!(n.category(), InquiryCategory::Transport);
        assert_eq!(InquiryCategory::CODES.len(), 8);
    }

    #[test]
    fn each_fault_names_its_field() {
        assert_eq!(
            field(InquiryForm {
                category: "gossip".into(),
                ..form()
            }),
            "category"
        );
        assert_eq!(
            field(InquiryForm {
                note: "あ".repeat(MAX_NOTE + 1),
                ..form()
            }),
            "note"
        );
        assert_eq!(
            field(InquiryForm {
                caller_kind: "neighbour".into(),
                ..form()
            }),
            "caller_kind"
        );
        assert_eq!(
            field(InquiryForm {
                caller_kind: "proxy".into(),
                relationship: "  ".into(),
                ..form()
            }),
            "relationship"
        );
        assert_eq!(
            field(InquiryForm {
                resident_id: None,
                ..form()
            }),
            "resident_id"
        );
        let proxy = NewInquiry::parse(InquiryForm {
            caller_kind: "proxy".into(),
            relationship: " 長男 ".into(),
            ..form()
        })
        .unwrap();
        assert_eq!(proxy.relationship(), "長男");
    }
}
