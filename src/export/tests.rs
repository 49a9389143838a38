//! The resident import, as a records clerk meets it: files from Excel and the 住基 system,
//! rejected whole with the row and field named, or imported whole.

use super::import::{import_residents, parse_residents, residents_csv, ImportError};
use crate::domain::{PhoneNumber, TicketNo};
use crate::store::residents::Resident;
use crate::store::testing::{engines, TempDir, TestDb};
use crate::store::Store;
use std::path::PathBuf;

const HEADER: &str = "address_no,municipality_code,ticket_no,name,name_kana,birth_date,sex,postal_code,address,town,district,phone1,phone2,intent,needs_transport";

/// One resident line; `n` makes the keys unique.
fn line(n: u32) -> String {
    format!(
        "{:010},262021,{:010},田中　和子{n},タナカ　カズコ,1944-05-{:02},F,625-0080,京都府舞鶴市字北吸{n}番地,北吸,東,0773-62-{:04},090-1111-{:04},wants,0",
        1_000_000 + n,
        n,
        1 + n % 28,
        1000 + n,
        2000 + n
    )
}

fn file(lines: &[String]) -> String {
    let mut s = String::from(HEADER);
    for l in lines {
        s.push('\n');
        s.push_str(l);
    }
    s.push('\n');
    s
}

fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.0.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn problems(err: &ImportError) -> Vec<(usize, &'static str)> {
    err.problems().iter().map(|p| (p.row, p.column)).collect()
}

/// What a screen shows of a resident: everything but the ledger id.
fn shown(r: &Resident) -> String {
    let mut r = r.clone();
    r.id = 0;
    format!("{r:?}")
}

async fn by_ticket(store: &Store, ticket: &str) -> Vec<Resident> {
    store
        .residents_by_ticket(&TicketNo::parse(ticket).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn one_bad_row_rejects_the_whole_file() {
    for engine in engines() {
        let db = TestDb::new(engine).await.unwrap();
        let dir = TempDir::new("import").unwrap();
        let mut lines: Vec<String> = (1..=5).map(line).collect();
        // Row 4 of the file (the header is row 1): 30 February.
        lines[2] = lines[2].replace("1944-05-04", "2021-02-30");
        let path = write(&dir, "residents.csv", file(&lines).as_bytes());
        assert_eq!(db.store.resident_count().await.unwrap(), 0);
        let err = import_residents(&db.store, &path).await.unwrap_err();
        assert_eq!(problems(&err), vec![(4, "birth_date")], "{engine}: {err}");
        let shown = err.to_string();
        let first = shown.lines().next().unwrap();
        assert!(first.contains(&path.display().to_string()), "{first}");
        assert!(first.contains("row 4, birth_date:"), "{first}");
        assert!(first.contains("2021-02-30"), "{first}");
        assert_eq!(db.store.resident_count().await.unwrap(), 0, "{engine}");

        // Fixed, the same file goes in whole.
        lines[2] = line(3);
        std::fs::write(&path, file(&lines)).unwrap();
        let report = import_residents(&db.store, &path).await.unwrap();
        assert_eq!(
            (report.residents, report.phones, report.encoding),
            (5, 10, "UTF-8")
        );
        assert_eq!(db.store.resident_count().await.unwrap(), 5);
        db.cleanup().await;
    }
}

#[test]
fn every_bad_row_is_listed_with_its_field() {
    let mut lines: Vec<String> = (1..=12).map(line).collect();
    lines[0] = lines[0].replace(",0000000001,", ",12345,"); // row 2: Excel ate the zeros
    lines[1] = lines[1].replace(",262021,", ",262022,"); // row 3: check digit
    lines[2] = lines[2].replace("1944-05-04", "2021-02-30"); // row 4
    lines[3] = lines[3].replace(",wants,", ",maybe,"); // row 5
    lines[4] = lines[4].replace(",F,", ",X,"); // row 6
    lines[5] = lines[5].replace("0773-62-1006", "0773-62-abcd"); // row 7
    lines[6] = lines[6].replace("0001000007", "0001000001"); // row 8: same 宛名番号 as row 2
    lines[7] = lines[7].replace(",0000000008,", ",0000000010,"); // row 9: ticket of row 11
    lines[8] = lines[8].replace("タナカ　カズコ", "Tanaka Kazuko"); // row 10
                                                                    // row 11 is fine but for the ticket row 9 took; row 12 is fine.
    lines[11].pop();
    lines[11].push('2'); // row 13: needs_transport 2
    let err = parse_residents(file(&lines).as_bytes()).unwrap_err();
    assert_eq!(
        problems(&err),
        vec![
            (2, "ticket_no"),
            (3, "municipality_code"),
            (4, "birth_date"),
            (5, "intent"),
            (6, "sex"),
            (7, "phone1"),
            (8, "address_no"),
            (10, "name_kana"),
            (11, "ticket_no"),
            (13, "needs_transport"),
        ],
        "{err}"
    );
    let shown = err.to_string();
    let mut out = shown.lines();
    let first = out.next().unwrap();
    assert!(
        first.starts_with("<input>: row 2, ticket_no: must be 10 digits"),
        "{first}"
    );
    assert!(first.contains("leading zeros"), "{first}");
    assert!(first.contains("10 problems in all"), "{first}");
    assert_eq!(out.count(), 10);
    assert!(
        shown.contains("row 3, municipality_code: municipality code 262022 fails its check digit")
    );
    assert!(
        shown.contains("row 8, address_no: 0001000001 is also on row 2"),
        "{shown}"
    );
    assert!(
        shown.contains("row 11, ticket_no: ticket 0000000010 is also on row 9"),
        "{shown}"
    );
}

#[test]
fn header_problems_name_the_column() {
    let missing = "address_no,municipality_code,ticket_no,name,sex\n";
    let err = parse_residents(missing.as_bytes()).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.starts_with("<input>: row 1, name_kana: required column is missing"),
        "{shown}"
    );
    assert!(
        shown.contains("row 1, birth_date: required column is missing"),
        "{shown}"
    );

    let unknown = format!("{HEADER},phone 3\n");
    let err = parse_residents(unknown.as_bytes()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("<input>: row 1, phone 3: unknown column"),
        "{err}"
    );

    let twice = format!("{HEADER},氏名\n");
    let err = parse_residents(twice.as_bytes()).unwrap_err();
    assert!(
        err.to_string()
            .contains("row 1, 氏名: names the same column as \"name\""),
        "{err}"
    );

    // Problems name the column as the file's header spells it.
    let japanese = "宛名番号,市区町村コード,券番号,氏名,氏名カナ,生年月日,性別\n1,262021,0000000001,山田　花子,ヤマダ　ハナコ,1950-13-01,女\n";
    let err = parse_residents(japanese.as_bytes()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("<input>: row 2, 生年月日: no such date 1950-13-01"),
        "{err}"
    );
    assert_eq!(err.problems()[0].column, "birth_date");

    let err = parse_residents(b"").unwrap_err();
    assert!(
        err.to_string().contains("row 1: the file is empty"),
        "{err}"
    );

    // A row with a field too few is named, not misread.
    let short = file(&[line(1), line(2).rsplit_once(',').unwrap().0.to_string()]);
    let err = parse_residents(short.as_bytes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "<input>: row 3: has 14 fields, the header has 15 (nothing was imported)"
    );
}

#[test]
fn blank_lines_count_and_empty_rows_are_skipped() {
    let text = format!(
        "{HEADER}\n{}\n\n,,,,,,,,,,,,,,\n{}\n",
        line(1),
        line(2).replace(",F,", ",Q,")
    );
    let err = parse_residents(text.as_bytes()).unwrap_err();
    assert_eq!(problems(&err), vec![(5, "sex")], "{err}");
    let text = format!(
        "{HEADER}\r\n{}\r\n\r\n,,,,,,,,,,,,,,\r\n{}\r\n",
        line(1),
        line(2)
    );
    assert_eq!(parse_residents(text.as_bytes()).unwrap().len(), 2);
}

#[test]
fn neither_utf8_nor_shift_jis_names_the_row() {
    let mut bytes = file(&[line(1)]).into_bytes();
    bytes.extend_from_slice(b"0000000009,262021,0000000009,\xFD\xFD,");
    let err = parse_residents(&bytes).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.starts_with("<input>: row 3: the file is neither UTF-8 nor Shift_JIS"),
        "{shown}"
    );
    let err = parse_residents(b"\xFF\xFEa\0d\0").unwrap_err();
    assert!(err.to_string().contains("UTF-16"), "{err}");
}

#[tokio::test]
async fn shift_jis_imports_the_same_residents_as_its_utf8_twin() {
    let utf8 = file(&[
        line(1),
        "0000900001,262021,0000900001,佐々木　髙子,ササキ　タカコ,1938-11-03,F,624-0853,京都府舞鶴市字南田辺47番地の2,南田辺,西,(0773)75-1234,,undecided,1".into(),
        "0000900002,262021,0000900002,渡辺　勇,ワタナベ　イサム,1941-01-15,M,6240853,\"京都府舞鶴市字南田辺47番地の2\",南田辺,西,0773-75-1234,080-9999-0001,clinic,0".into(),
    ]);
    let (sjis, _, unmappable) = encoding_rs::SHIFT_JIS.encode(&utf8);
    assert!(!unmappable);
    assert!(
        std::str::from_utf8(&sjis).is_err(),
        "the twin must really be Shift_JIS"
    );
    for engine in engines() {
        let dir = TempDir::new("import").unwrap();
        let a = TestDb::new(engine).await.unwrap();
        let b = TestDb::new(engine).await.unwrap();
        let from_sjis = import_residents(&a.store, &write(&dir, "sjis.csv", &sjis))
            .await
            .unwrap();
        let from_utf8 = import_residents(&b.store, &write(&dir, "utf8.csv", utf8.as_bytes()))
            .await
            .unwrap();
        assert_eq!(from_sjis.encoding, "Shift_JIS");
        assert_eq!(from_utf8.encoding, "UTF-8");
        assert_eq!((from_sjis.residents, from_sjis.households), (3, 3));
        for ticket in ["0000000001", "0000900001", "0000900002"] {
            let x = by_ticket(&a.store, ticket).await;
            let y = by_ticket(&b.store, ticket).await;
            assert_eq!(x.len(), 1, "{engine} {ticket}");
            assert_eq!(shown(&x[0]), shown(&y[0]), "{engine}");
        }
        let r = &by_ticket(&a.store, "0000900001").await[0];
        assert_eq!(
            (r.name.as_str(), r.name_kana.as_str()),
            ("佐々木　髙子", "ササキ　タカコ")
        );
        assert_eq!(
            (r.postal_code.as_str(), r.intent.as_str(), r.needs_transport),
            ("624-0853", "undecided", true)
        );
        assert_eq!(
            by_ticket(&a.store, "0000900002").await[0].postal_code,
            "624-0853"
        );
        a.cleanup().await;
        b.cleanup().await;
    }
}

#[tokio::test]
async fn bom_and_japanese_headers_as_excel_writes_them() {
    // Excel's "CSV UTF-8": a BOM, Japanese headers, 男/女, 要/不要, dates with slashes,
    // full-width digits in a header, half-width kana from an old 住基 export.
    let text = "\u{FEFF}宛名番号,自治体コード,接種券番号,氏名,フリガナ,生年月日,性別,郵便番号,住所,町名,地区,電話番号１,電話番号2,接種意向,送迎要否,世帯番号\r\n\
        0100000001,262021,0012345678,山本 清,ﾔﾏﾓﾄ ｷﾖｼ,1936/4/1,男,〒625-0036,京都府舞鶴市字浜1番地,浜,東,０７７３－６４－１１１１,,希望,要,H1\r\n\
        0100000002,262021,0012345679,山本　和子,やまもと　かずこ,1939/12/24,女,625-0036,京都府舞鶴市字浜1番地,浜,東,0773-64-1111,070-1234-5678,未定,不要,H1\r\n\
        0100000003,262021,0012345680,松本　ジョージ,マツモト　ジョージ,2001-07-04,M,,,,,,,,,\r\n";
    for engine in engines() {
        let db = TestDb::new(engine).await.unwrap();
        let dir = TempDir::new("import").unwrap();
        let report = import_residents(&db.store, &write(&dir, "台帳.csv", text.as_bytes()))
            .await
            .unwrap();
        assert_eq!(
            (report.residents, report.households, report.encoding),
            (3, 2, "UTF-8 (BOM)")
        );
        let r = &by_ticket(&db.store, "0012345678").await[0];
        assert_eq!(r.address_no, "0100000001");
        assert_eq!(
            (r.name.as_str(), r.name_kana.as_str()),
            ("山本　清", "ヤマモト　キヨシ")
        );
        assert_eq!((r.birth_date.as_str(), r.sex.as_str()), ("1936-04-01", "M"));
        assert_eq!(
            (r.postal_code.as_str(), r.intent.as_str(), r.needs_transport),
            ("625-0036", "wants", true)
        );
        assert_eq!(r.household_no.as_deref(), Some("H1"));
        assert_eq!(r.phones.len(), 1);
        assert_eq!(
            (r.phones[0].e164.as_str(), r.phones[0].kind.as_str()),
            ("+81773641111", "home")
        );
        let w = &by_ticket(&db.store, "0012345679").await[0];
        assert_eq!(
            (w.name_kana.as_str(), w.sex.as_str(), w.intent.as_str()),
            ("ヤマモト　カズコ", "F", "undecided")
        );
        assert_eq!(w.phones[1].kind, "mobile");
        let g = &by_ticket(&db.store, "0012345680").await[0];
        assert_eq!(
            (g.intent.as_str(), g.household_no.as_deref(), g.phones.len()),
            ("none", None, 0)
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn a_shared_landline_finds_the_whole_household() {
    let mut lines: Vec<String> = (1..=3).map(line).collect();
    lines[0] = lines[0].replace("0773-62-1001", "0773-62-5555");
    lines[1] = lines[1].replace("0773-62-1002", "(0773)62-5555");
    lines[2] = lines[2].replace("0773-62-1003", "０７７３６２５５５５");
    for engine in engines() {
        let db = TestDb::new(engine).await.unwrap();
        let dir = TempDir::new("import").unwrap();
        import_residents(
            &db.store,
            &write(&dir, "household.csv", file(&lines).as_bytes()),
        )
        .await
        .unwrap();
        let found = db
            .store
            .residents_by_phone(&PhoneNumber::parse("+81773625555").unwrap())
            .await
            .unwrap();
        assert_eq!(found.len(), 3, "{engine}");
        let written: Vec<&str> = found
            .iter()
            .flat_map(|r| r.phones.iter())
            .filter(|p| p.e164 == "+81773625555")
            .map(|p| p.written.as_str())
            .collect();
        assert!(
            written.contains(&"(0773)62-5555"),
            "the number is also kept as written: {written:?}"
        );
        let mobile = db
            .store
            .residents_by_phone(&PhoneNumber::parse("09011112002").unwrap())
            .await
            .unwrap();
        assert_eq!(mobile.len(), 1);
        db.cleanup().await;
    }
}

#[tokio::test]
async fn residents_already_in_the_ledger_are_refused() {
    for engine in engines() {
        let db = TestDb::new(engine).await.unwrap();
        let dir = TempDir::new("import").unwrap();
        let first = write(
            &dir,
            "a.csv",
            file(&(1..=3).map(line).collect::<Vec<_>>()).as_bytes(),
        );
        import_residents(&db.store, &first).await.unwrap();
        let mut second: Vec<String> = (4..=7).map(line).collect();
        second[1] = second[1].replace("0001000005", "0001000002"); // row 3: 宛名番号 of an earlier import
        second[3] = second[3].replace(",0000000007,", ",0000000003,"); // row 5: its ticket too
        let path = write(&dir, "b.csv", file(&second).as_bytes());
        let err = import_residents(&db.store, &path).await.unwrap_err();
        assert_eq!(
            problems(&err),
            vec![(3, "address_no"), (5, "ticket_no")],
            "{engine}: {err}"
        );
        assert!(err
            .to_string()
            .contains("row 3, address_no: 0001000002 is already in the ledger"));
        assert_eq!(db.store.resident_count().await.unwrap(), 3, "{engine}");
        db.cleanup().await;
    }
}

#[test]
fn a_missing_file_is_a_read_error() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let db = TestDb::new("sqlite").await.unwrap();
        let err = import_residents(&db.store, std::path::Path::new("/nonexistent/x.csv"))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/x.csv: cannot read the file"),
            "{err}"
        );
        db.cleanup().await;
    });
}

#[test]
fn sample_residents_round_trip_through_the_csv() {
    let people = crate::store::testing::sample_residents(400);
    let back = parse_residents(residents_csv(&people).unwrap().as_bytes()).unwrap();
    for (a, b) in people.iter().zip(&back) {
        let phones = |r: &crate::domain::NewResident| {
            r.phones.iter().map(|p| p.0.clone()).collect::<Vec<_>>()
        };
        assert_eq!(
            (
                &a.address_no,
                &a.ticket_no,
                &a.name,
                &a.name_kana,
                a.birth_date,
                a.sex,
                &a.postal_code
            ),
            (
                &b.address_no,
                &b.ticket_no,
                &b.name,
                &b.name_kana,
                b.birth_date,
                b.sex,
                &b.postal_code
            )
        );
        assert_eq!(
            (&a.address, &a.town, &a.district, &a.household_no),
            (&b.address, &b.town, &b.district, &b.household_no)
        );
        assert_eq!(
            (a.intent, a.needs_transport, phones(a)),
            (b.intent, b.needs_transport, phones(b))
        );
    }
}
