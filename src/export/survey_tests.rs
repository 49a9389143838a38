//! The intent survey: answers land on the right residents, a bad row or an unknown resident
//! rejects the whole file and changes nothing, Shift_JIS and Japanese headers as Excel writes
//! them, and every change is audited.

use super::import::{import_residents, ImportError};
use super::survey::{import_survey, parse_survey};
use crate::domain::TicketNo;
use crate::store::testing::{engines, TempDir, TestDb};
use crate::store::Store;
use sqlx::Row;

const LEDGER: &str =
    "address_no,municipality_code,ticket_no,name,name_kana,birth_date,sex,intent,needs_transport\n\
0001000001,262021,0000000001,舞鶴　一郎,マイヅル　イチロウ,1940-01-01,M,none,0\n\
0001000002,262021,0000000002,舞鶴　二子,マイヅル　フタコ,1942-02-02,F,undecided,0\n\
0001000003,262021,0000000003,舞鶴　三郎,マイヅル　サブロウ,1950-03-03,M,wants,1\n";

/// (intent, needs_transport, pickup_pref) per ticket 1..=3.
async fn answers(store: &Store) -> Vec<(String, i64, String)> {
    let rows = sqlx::query(
        "SELECT intent, needs_transport, pickup_pref FROM residents ORDER BY ticket_no",
    )
    .fetch_all(&store.read)
    .await
    .unwrap();
    rows.iter()
        .map(|r| {
            (
                r.get::<String, _>("intent"),
                r.get::<i64, _>("needs_transport"),
                r.get::<String, _>("pickup_pref"),
            )
        })
        .collect()
}

async fn audited(store: &Store) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM audit_entries WHERE action = 'survey_import'")
        .fetch_one(&store.read)
        .await
        .unwrap()
        .get::<i64, _>("n")
}

async fn ledger(engine: &str, dir: &TempDir) -> TestDb {
    let db = TestDb::new(engine).await.unwrap();
    let path = dir.0.join("ledger.csv");
    std::fs::write(&path, LEDGER).unwrap();
    import_residents(&db.store, &path).await.unwrap();
    db
}

fn rows_of(err: &ImportError) -> Vec<(usize, &'static str)> {
    err.problems().iter().map(|p| (p.row, p.column)).collect()
}

#[tokio::test]
async fn answers_land_on_their_residents_all_or_nothing() {
    for engine in engines() {
        let dir = TempDir::new("survey").unwrap();
        let db = ledger(engine, &dir).await;
        let before = answers(&db.store).await;
        let path = dir.0.join("survey.csv");

        // Row 4 names a resident the ledger does not have: nothing is written.
        std::fs::write(
            &path,
            "address_no,intent,needs_transport,pickup\n\
             0001000001,wants,1,中舞鶴公民館\n\
             0001000002,declines,,\n\
             0009999999,wants,0,\n",
        )
        .unwrap();
        let err = import_survey(&db.store, &path).await.unwrap_err();
        assert_eq!(rows_of(&err), vec![(4, "")], "{engine}: {err}");
        assert!(err.to_string().contains("0009999999"), "{err}");
        assert_eq!(
            answers(&db.store).await,
            before,
            "{engine}: nothing changed"
        );
        assert_eq!(audited(&db.store).await, 0);

        // Without it, by 宛名番号 and by 券番号 mixed: blanks keep what the ledger had.
        std::fs::write(
            &path,
            "address_no,ticket_no,intent,needs_transport,pickup\n\
             0001000001,,wants,1,中舞鶴公民館\n\
             ,0000000002,declines,,\n\
             0001000003,,wants,,\n",
        )
        .unwrap();
        let report = import_survey(&db.store, &path).await.unwrap();
        assert_eq!(
            (report.answers, report.changed, report.wants),
            (3, 2, 2),
            "{engine}"
        );
        assert_eq!(
            answers(&db.store).await,
            vec![
                ("wants".into(), 1, "中舞鶴公民館".into()),
                ("declines".into(), 0, String::new()),
                ("wants".into(), 1, String::new()), // already so: unchanged, not audited
            ],
            "{engine}"
        );
        assert_eq!(audited(&db.store).await, 2, "{engine}");

        // The same file again changes nobody.
        let again = import_survey(&db.store, &path).await.unwrap();
        assert_eq!(again.changed, 0, "{engine}");
        assert_eq!(audited(&db.store).await, 2, "{engine}");
        let one = db
            .store
            .residents_by_ticket(&TicketNo::parse("0000000001").unwrap())
            .await
            .unwrap();
        assert!(one[0].needs_transport, "{engine}");
        db.cleanup().await;
    }
}

#[test]
fn every_bad_row_is_named_with_its_column() {
    let err = parse_survey(
        "宛名番号,接種意向,送迎,乗車希望場所\n\
         0001000001,希望,要,中舞鶴公民館\n\
         0001000002,maybe,0,\n\
         0001000003,wants,2,\n\
         ,wants,0,\n\
         0001000001,希望しない,0,\n\
         0001000005,wants,0,まるで長すぎる乗車場所の名前まるで長すぎる乗車場所の名前まるで長すぎる乗車場所の名前\n"
            .as_bytes(),
    )
    .unwrap_err();
    assert_eq!(
        rows_of(&err),
        vec![
            (3, "intent"),
            (4, "needs_transport"),
            (5, "address_no"),
            (6, ""),
            (7, "pickup")
        ],
        "{err}"
    );
    assert!(
        err.to_string().contains("already answered on row 2"),
        "{err}"
    );

    let err = parse_survey(b"name,needs_transport\nx,1\n").unwrap_err();
    assert_eq!(
        rows_of(&err),
        vec![(1, "intent"), (1, "address_no")],
        "{err}"
    );
}

#[test]
fn shift_jis_with_japanese_headers_reads_like_its_utf8_twin() {
    let text = "券番号,接種意向,送迎要否\r\n0000000002,未定,不要\r\n0000000003,個別接種,要\r\n";
    let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(text);
    let (a, enc_a) = parse_survey(text.as_bytes()).unwrap();
    let (b, enc_b) = parse_survey(&sjis).unwrap();
    assert_eq!((enc_a, enc_b), ("UTF-8", "Shift_JIS"));
    assert_eq!(a, b);
    assert_eq!(a.len(), 2);
    assert_eq!(a[1].intent.code(), "clinic");
    assert_eq!(a[1].needs_transport, Some(true));
}
