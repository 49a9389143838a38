//! フリガナ: a name's reading, in full-width katakana.
//!
//! Registers and callers write it three ways: katakana, hiragana (typed on a phone), half-width
//! ｶﾅ (legacy Shift_JIS exports). One form is stored and searched, so a kana search finds the
//! resident whichever way the register wrote it.

use super::text::{fold_width, one_space};
use serde::{Deserialize, Serialize};
use std::fmt;

/// At most this many characters (with the separating space).
pub const MAX_KANA: usize = 60;

/// A reading in full-width katakana, surname and given name separated by one ideographic space.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Kana(String);

impl Kana {
    /// Parses a reading as written: widths folded (NFKC), hiragana read as katakana, runs of
    /// spaces made one ideographic space.
    pub fn parse(written: &str) -> Result<Kana, String> {
        let folded = fold_width(written);
        let mut out = String::with_capacity(folded.len());
        for c in folded.chars() {
            let k = match c {
                // ぁ..ゖ and ゝゞ sit 0x60 below their katakana.
                'ぁ'..='ゖ' | 'ゝ' | 'ゞ' => char::from_u32(c as u32 + 0x60).unwrap_or(c),
                c if c.is_whitespace() => ' ',
                c => c,
            };
            if !matches!(k, 'ァ'..='ヺ' | 'ー' | 'ヽ' | 'ヾ' | ' ' | '・') {
                return Err(format!("must be katakana (フリガナ), found {c:?}"));
            }
            out.push(k);
        }
        let out = one_space(&out);
        if out.is_empty() {
            return Err("required".into());
        }
        if out.chars().count() > MAX_KANA {
            return Err(format!("longer than {MAX_KANA} characters"));
        }
        Ok(Kana(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The reading without spaces: the search key, since callers rarely say where the surname
    /// ends.
    pub fn without_spaces(&self) -> String {
        self.0.chars().filter(|c| !c.is_whitespace()).collect()
    }
}

impl TryFrom<String> for Kana {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Kana::parse(&s)
    }
}

impl From<Kana> for String {
    fn from(k: Kana) -> String {
        k.0
    }
}

impl fmt::Display for Kana {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> String {
        Kana::parse(s).unwrap().as_str().to_string()
    }

    #[test]
    fn every_spelling_is_one_reading() {
        assert_eq!(k("ヤマダ タロウ"), "ヤマダ\u{3000}タロウ");
        assert_eq!(k("やまだ　たろう"), "ヤマダ\u{3000}タロウ");
        assert_eq!(k("ﾔﾏﾀﾞ ﾀﾛｳ"), "ヤマダ\u{3000}タロウ");
        assert_eq!(k("ﾊﾟﾋﾟﾌﾟ"), "パピプ");
        assert_eq!(k("ｳﾞｨｰ"), "ヴィー");
        assert_eq!(k("  ヤマダ   タロウ "), "ヤマダ\u{3000}タロウ");
        assert_eq!(k("ゝゞ・"), "ヽヾ・");
    }

    #[test]
    fn anything_else_is_refused() {
        assert!(Kana::parse("山田").is_err());
        assert!(Kana::parse("Yamada").is_err());
        assert!(Kana::parse("").is_err());
        assert!(Kana::parse("　").is_err());
        assert!(Kana::parse(&"ア".repeat(61)).is_err());
    }

    #[test]
    fn search_key_drops_spaces() {
        assert_eq!(
            Kana::parse("やまだ たろう").unwrap().without_spaces(),
            "ヤマダタロウ"
        );
    }
}
