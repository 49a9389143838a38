//! CSV for Excel, the clerks' tool: UTF-8 with a BOM (so Excel reads it as UTF-8) or
//! Shift_JIS (for older Excel and the city's systems), CRLF line ends, and every cell that
//! Excel would take for a formula neutralised (CSV injection: a caller name or a note
//! beginning with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, which
//! Excel shows as text and hides).
//!
//! Shift_JIS cannot write every character (a 𠮷 in a name, an emoji in a note): such a
//! character becomes 〓 (the geta mark, the customary stand-in in Japanese print), and the
//! writer counts them so the command can say so.

use std::borrow::Cow;

/// The encoding of a file for Excel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Encoding {
    /// UTF-8 with a byte-order mark (Excel's "CSV UTF-8").
    #[default]
    #[value(name = "utf8")]
    Utf8Bom,
    /// Shift_JIS (Windows' "CSV").
    #[value(name = "sjis")]
    ShiftJis,
}

impl Encoding {
    /// `utf8` or `sjis` (also `utf-8`, `shift_jis`, `cp932`, `windows-31j`), as a query or a
    /// setting names it.
    pub fn parse(s: &str) -> Option<Encoding> {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace(['-', '_'], "")
            .as_str()
        {
            "utf8" | "utf8bom" => Some(Encoding::Utf8Bom),
            "sjis" | "shiftjis" | "cp932" | "windows31j" => Some(Encoding::ShiftJis),
            _ => None,
        }
    }

    /// The `Content-Type` of a CSV download in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Utf8Bom => "text/csv; charset=utf-8",
            Encoding::ShiftJis => "text/csv; charset=Shift_JIS",
        }
    }
}

/// A cell as Excel will read it: text that would start a formula gets a leading `'`.
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => Cow::Owned(format!("'{cell}")),
        _ => Cow::Borrowed(cell),
    }
}

/// Rows collected for one file.
pub struct ExcelCsv {
    writer: csv::Writer<Vec<u8>>,
    rows: usize,
}

/// A finished file.
#[derive(Debug)]
pub struct ExcelFile {
    pub bytes: Vec<u8>,
    /// Data rows (the header not counted).
    pub rows: usize,
    /// Characters Shift_JIS could not write, each replaced by 〓.
    pub replaced: usize,
}

impl ExcelCsv {
    pub fn new(header: &[&str]) -> ExcelCsv {
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(Vec::new());
        // writing to a Vec cannot fail
        let _ = writer.write_record(header);
        ExcelCsv { writer, rows: 0 }
    }

    /// One data row; every cell is neutralised.
    pub fn row<S: AsRef<str>>(&mut self, cells: &[S]) {
        let _ = self
            .writer
            .write_record(cells.iter().map(|c| neutralise(c.as_ref()).into_owned()));
        self.rows += 1;
    }

    pub fn finish(self, encoding: Encoding) -> ExcelFile {
        let rows = self.rows;
        let text = self
            .writer
            .into_inner()
            .map(|b| String::from_utf8(b).unwrap_or_default())
            .unwrap_or_default();
        match encoding {
            Encoding::Utf8Bom => {
                let mut bytes = b"\xEF\xBB\xBF".to_vec();
                bytes.extend_from_slice(text.as_bytes());
                ExcelFile {
                    bytes,
                    rows,
                    replaced: 0,
                }
            }
            Encoding::ShiftJis => {
                let (bytes, replaced) = shift_jis(&text);
                ExcelFile {
                    bytes,
                    rows,
                    replaced,
                }
            }
        }
    }
}

/// `text` in Shift_JIS, each character it cannot hold written as 〓; and how many there were.
pub fn shift_jis(text: &str) -> (Vec<u8>, usize) {
    let (bytes, _, lossy) = encoding_rs::SHIFT_JIS.encode(text);
    if !lossy {
        return (bytes.into_owned(), 0);
    }
    let mut out = Vec::with_capacity(text.len());
    let mut replaced = 0;
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let (b, _, bad) = encoding_rs::SHIFT_JIS.encode(c.encode_utf8(&mut buf));
        if bad {
            out.extend_from_slice(&encoding_rs::SHIFT_JIS.encode("〓").0);
            replaced += 1;
        } else {
            out.extend_from_slice(&b);
        }
    }
    (out, replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_the_rest_left_alone() {
        for (cell, shown) in [
            (
                "=HYPERLINK(\"http://evil\")",
                "'=HYPERLINK(\"http://evil\")",
            ),
            ("+81773620000", "'+81773620000"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("舞鶴 一郎", "舞鶴 一郎"),
            ("0773-62-0000", "0773-62-0000"),
            ("", ""),
        ] {
            assert_eq!(neutralise(cell), shown, "{cell:?}");
        }
    }

    #[test]
    fn utf8_has_a_bom_crlf_and_quotes_what_needs_them() {
        let mut f = ExcelCsv::new(&["name", "note"]);
        f.row(&["舞鶴, 一郎", "=1+1"]);
        f.row(&["\"引用\"", "二行\n目"]);
        let out = f.finish(Encoding::Utf8Bom);
        assert_eq!(out.rows, 2);
        let text = std::str::from_utf8(&out.bytes).unwrap();
        assert_eq!(
            text,
            "\u{feff}name,note\r\n\"舞鶴, 一郎\",'=1+1\r\n\"\"\"引用\"\"\",\"二行\n目\"\r\n"
        );
    }

    #[test]
    fn shift_jis_reads_back_and_counts_what_it_could_not_write() {
        let mut f = ExcelCsv::new(&["氏名"]);
        f.row(&["髙橋 𠮷子"]);
        f.row(&["舞鶴 花子"]);
        let out = f.finish(Encoding::ShiftJis);
        assert_eq!(out.replaced, 1, "𠮷 is not in Shift_JIS");
        let (back, _, bad) = encoding_rs::SHIFT_JIS.decode(&out.bytes);
        assert!(!bad);
        assert_eq!(back, "氏名\r\n髙橋 〓子\r\n舞鶴 花子\r\n");
    }
}
