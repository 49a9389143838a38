//! 全角・半角: the one place where the widths of typed and filed text are folded.
//!
//! Japanese input arrives in two widths: full-width digits and letters from an IME (`０７７３`,
//! `ＡＢ`), half-width katakana from legacy Shift_JIS systems (`ｶﾅ`), the ideographic space
//! (`U+3000`) between surname and given name. Every parser in `domain/` that reads digits,
//! codes or kana folds through [`fold_width`] (Unicode NFKC, through the `unicode-normalization`
//! crate) so that one spelling is stored and one spelling is searched.
//!
//! Not folded: kanji names and free text. NFKC maps the CJK compatibility ideographs to their
//! unified twins, and a person's 異体字 is part of their name.

use unicode_normalization::UnicodeNormalization;

/// Unicode NFKC: full-width ASCII → ASCII, half-width katakana → full-width (voiced marks
/// composed: `ｶﾞ` → `ガ`), the ideographic space → a space.
pub fn fold_width(s: &str) -> String {
    s.nfkc().collect()
}

/// Trims and folds: what a field typed in a form or a spreadsheet cell means.
pub fn fold_trimmed(s: &str) -> String {
    fold_width(s.trim()).trim().to_string()
}

/// Internal runs of whitespace become one ideographic space, the register's separator between
/// surname and given name; the ends are trimmed.
pub fn one_space(s: &str) -> String {
    s.split(char::is_whitespace)
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\u{3000}")
}

/// The conversions every checked text newtype (`AddressNo`, `TicketNo`…) shares: parsed from a
/// `String` through its `parse` (so serde checks it too), back into one, and shown as itself.
macro_rules! text_newtype {
    ($t:ident, $err:ty) => {
        impl TryFrom<String> for $t {
            type Error = $err;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                $t::parse(&s)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
pub(crate) use text_newtype;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_fold_once() {
        assert_eq!(fold_width("０７７３－６２"), "0773-62");
        assert_eq!(fold_width("ＡＢｃ"), "ABc");
        assert_eq!(fold_width("ｶﾞｲｺｸ ﾊﾟﾝ"), "ガイコク パン");
        assert_eq!(fold_width("ｳﾞｧ"), "ヴァ");
        assert_eq!(fold_width("\u{3000}"), " ");
        // Kana stays kana, kanji stays kanji.
        assert_eq!(fold_width("まいづる舞鶴"), "まいづる舞鶴");
        assert_eq!(fold_trimmed("　１２３　"), "123");
    }

    #[test]
    fn spaces_become_one_ideographic_space() {
        assert_eq!(one_space("  山田   太郎 "), "山田\u{3000}太郎");
        assert_eq!(one_space("山田\u{3000}\u{3000}太郎"), "山田\u{3000}太郎");
    }
}
