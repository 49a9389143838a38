//! The command line as a clerk and IT staff use it: exit codes, one-line reasons, no partial
//! imports.

use madoguchi::store::testing::TempDir;
use std::process::Command;

fn madoguchi(db: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_madoguchi"))
        .args(args)
        .env("MADOGUCHI_DATABASE_URL", db)
        .env("MADOGUCHI_LOG", "warn")
        .output()
        .expect("run madoguchi");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

const HEADER: &str = "address_no,municipality_code,ticket_no,name,name_kana,birth_date,sex,postal_code,address,town,district,phone1,phone2,intent,needs_transport\n";

#[test]
fn user_add_and_import_from_the_command_line() {
    let dir = TempDir::new("cli").unwrap();
    let db = format!("sqlite://{}/m.db", dir.0.display());

    let (ok, out, err) = madoguchi(
        &db,
        &[
            "user",
            "add",
            "--username",
            "sato",
            "--password",
            "pw1234",
            "--role",
            "agent",
            "--extension",
            "201",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("sato"));
    let (ok, _, err) = madoguchi(
        &db,
        &[
            "user",
            "add",
            "--username",
            "x",
            "--password",
            "pw1234",
            "--role",
            "boss",
        ],
    );
    assert!(!ok);
    assert!(err.contains("--role"), "{err}");

    let good = format!(
        "{HEADER}0000000001,262021,0000000101,舞鶴 花子,マイヅル ハナコ,1941-03-02,F,6250036,京都府舞鶴市字浜1番地,浜,東,0773-62-1111,,wants,1\n\
         0000000002,262021,0000000102,舞鶴 太郎,マイヅル タロウ,1939-11-20,M,6250036,京都府舞鶴市字浜1番地,浜,東,0773-62-1111,,wants,0\n"
    );
    let bad = good.replace("1939-11-20", "1939-02-30");
    let bad_path = dir.0.join("bad.csv");
    std::fs::write(&bad_path, &bad).unwrap();
    let (ok, _, err) = madoguchi(&db, &["import", "residents", bad_path.to_str().unwrap()]);
    assert!(!ok, "a bad row fails the command");
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.contains("bad.csv") && first.contains("row 3") && first.contains("birth_date"),
        "{err}"
    );

    let good_path = dir.0.join("good.csv");
    std::fs::write(&good_path, &good).unwrap();
    let (ok, out, err) = madoguchi(&db, &["import", "residents", good_path.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains('2'), "reports the count: {out}");
    // The same file again: duplicates of what the ledger holds are refused, nothing changes.
    let (ok, _, err) = madoguchi(&db, &["import", "residents", good_path.to_str().unwrap()]);
    assert!(!ok, "re-importing the same residents is refused: {err}");

    let (ok, _, err) = madoguchi("mysql://nope", &["serve"]);
    assert!(!ok);
    assert!(err.contains("sqlite:") && err.lines().count() <= 2, "{err}");
}

/// `madoguchi demo` end to end: a fresh database, the simulator placing calls, and an agent's
/// screen receiving pops from it.
#[tokio::test]
async fn demo_serves_pops_from_the_simulator() {
    use std::io::{BufRead, BufReader};
    let dir = TempDir::new("demo").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_madoguchi"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--residents",
            "2000",
            "--call-rate",
            "120",
        ])
        .arg("--data-dir")
        .arg(&dir.0)
        .env("MADOGUCHI_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the demo");
    let stdout = child.stdout.take().expect("stdout");
    // Read every line (a closed pipe would fail the demo's later prints) and pass on the URL.
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(u) = line.trim().strip_prefix("agent screen") {
                let _ = url_tx.send(u.trim().trim_end_matches('/').to_string());
            }
        }
    });
    let url = tokio::task::spawn_blocking(move || {
        url_rx.recv_timeout(std::time::Duration::from_secs(120))
    })
    .await
    .unwrap()
    .expect("the demo prints its URL");
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{url}/api/session"))
        .json(&serde_json::json!({"username": "agent1", "password": "agent1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the printed login works");
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let agent = crate::common::Client {
        http,
        cookie,
        base: url.clone(),
    };
    let mut ws = agent.ws().await;
    let mut popped = None;
    while let Some(m) = ws.next_json(std::time::Duration::from_secs(20)).await {
        if m["type"] == "screen_pop" {
            popped = Some(m);
            break;
        }
    }
    let pop = popped.expect("a simulated call pops on agent1's screen");
    assert!(pop["call"]["id"].as_str().unwrap().starts_with("ami:"));
    assert!(pop["candidates"].is_array());
    let (s, ready) = agent.get("/readyz").await;
    assert_eq!(s, 200, "{ready}");
    assert!(dir.0.join("madoguchi.db").exists());
    let _ = child.kill();
    let _ = child.wait();
}

/// A command that fails before it needs the database says why once, on one line, and leaves
/// no database file behind; a bad database folder is named as the operator wrote it.
#[test]
fn failures_are_said_once_and_create_nothing() {
    let dir = TempDir::new("cli-fail").unwrap();
    let db_file = dir.0.join("m.db");
    let db = format!("sqlite://{}", db_file.display());
    let (ok, _, err) = madoguchi(&db, &["import", "residents", "no-such-file.csv"]);
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("no-such-file.csv"), "{err}");
    assert_eq!(err.matches("No such file").count(), 1, "said once: {err}");
    assert!(
        !db_file.exists(),
        "no database created by a command that failed before it"
    );
    let (ok, _, err) = madoguchi(
        "sqlite:///no-such-folder/at/all/m.db",
        &["import", "residents", "Cargo.toml"],
    );
    assert!(!ok);
    assert!(
        err.contains("sqlite:///no-such-folder/at/all/m.db"),
        "{err}"
    );
    assert!(!err.contains("mode=rwc"), "the URL as written: {err}");
    assert_eq!(
        err.matches("unable to open database file").count(),
        1,
        "{err}"
    );
    // No colour codes when the log is not a terminal (here it is a pipe).
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

/// Asterisk's Master.csv fills in the calls madoguchi missed, once: a second import adds
/// nothing, a call already logged keeps what madoguchi wrote, and a bad file changes nothing.
#[tokio::test]
async fn cdr_import_fills_in_missed_calls_once() {
    let dir = TempDir::new("cdr").unwrap();
    let db = format!("sqlite://{}/m.db", dir.0.display());
    let store = madoguchi::store::Store::open(&db).await.unwrap();
    // One call madoguchi did see, ended; the file has it too.
    store
        .upsert_call(&madoguchi::store::calls::CallRow {
            id: "ami:1620605100.4".into(),
            direction: "inbound".into(),
            caller_number: "09011112222".into(),
            started_at: "2021-05-10T00:05:00.123Z".into(),
            ended_at: Some("2021-05-10T00:05:39.456Z".into()),
            outcome: Some("abandoned".into()),
            queue: Some("vaccine".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let master = dir.0.join("Master.csv");
    std::fs::write(
        &master,
        r#""","0773621111","0773689225","from-trunk","""舞鶴"" <0773621111>","PJSIP/trunk-00000001","PJSIP/201-00000002","Queue","vaccine,t","2021-05-10 09:00:00","2021-05-10 09:00:12","2021-05-10 09:03:00",180,168,"ANSWERED","DOCUMENTATION","1620604800.1",""
"","09011112222","0773689225","from-trunk","","PJSIP/trunk-00000004","","Queue","vaccine,t","2021-05-10 09:05:00","","2021-05-10 09:05:40",40,0,"NO ANSWER","DOCUMENTATION","1620605100.4",""
"#,
    )
    .unwrap();
    let path = master.to_string_lossy().to_string();
    let (ok, out, err) = madoguchi(&db, &["import", "cdr", &path]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("1 added") && out.contains("1 already logged"),
        "{out}"
    );
    let (ok, out, _) = madoguchi(&db, &["import", "cdr", &path]);
    assert!(ok);
    assert!(
        out.contains("0 added") && out.contains("2 already logged"),
        "imported once: {out}"
    );
    let calls = store.calls_between(None, None, 10).await.unwrap();
    assert_eq!(calls.len(), 2);
    let seen = calls.iter().find(|c| c.id == "ami:1620605100.4").unwrap();
    assert_eq!(
        seen.started_at, "2021-05-10T00:05:00.123Z",
        "what madoguchi logged stays"
    );
    let missed = calls.iter().find(|c| c.id == "ami:1620604800.1").unwrap();
    assert_eq!(missed.answered_by.as_deref(), Some("201"));
    assert_eq!(missed.outcome.as_deref(), Some("answered"));
    // A bad record: one line naming the row and field, and nothing written.
    std::fs::write(&master, "\"\",\"1\",\"2\"\n").unwrap();
    let (ok, _, err) = madoguchi(&db, &["import", "cdr", &path]);
    assert!(!ok);
    assert!(err.contains("row 1, uniqueid"), "{err}");
    assert_eq!(store.call_count().await.unwrap(), 2);
    store.close().await;
}

/// `madoguchi export calls` and `export inquiries`: Japan's days, CRLF, UTF-8 with BOM or
/// Shift_JIS, and a caller name or note that Excel would run as a formula is made text.
#[tokio::test]
async fn call_and_inquiry_logs_export_for_excel() {
    use madoguchi::domain::{InquiryForm, NewInquiry, Role};
    use madoguchi::store::calls::CallRow;
    let dir = TempDir::new("export").unwrap();
    let db = format!("sqlite://{}/m.db", dir.0.display());
    let store = madoguchi::store::Store::open(&db).await.unwrap();
    let user = store
        .upsert_user("sato", "佐藤", "x", Role::Agent, None)
        .await
        .unwrap();
    // In Japan's time: ami:1 at 23:50 on the 7th, ami:2 at 08:10 on the 8th (still the 7th in
    // UTC), ami:3 at 00:30 on the 9th. The day asked for is Japan's.
    for (key, started, name) in [
        ("ami:1", "2021-06-07T14:50:00.000Z", "=cmd|' /C calc'!A0"),
        ("ami:2", "2021-06-07T23:10:00.000Z", "舞鶴 花子"),
        ("ami:3", "2021-06-08T15:30:00.000Z", "翌日"),
    ] {
        store
            .upsert_call(&CallRow {
                id: key.into(),
                direction: "inbound".into(),
                caller_number: "0773620000".into(),
                caller_name: name.into(),
                started_at: started.into(),
                answered_at: Some(started.replace(":00.000Z", ":20.000Z")),
                ended_at: Some(started.replace("00:00.000Z", "05:00.000Z")),
                answered_by: Some("201".into()),
                outcome: Some("answered".into()),
                ..CallRow::default()
            })
            .await
            .unwrap();
    }
    let form: InquiryForm = serde_json::from_value(serde_json::json!({
        "call_id": "ami:2", "category": "appointment_change", "note": "+81 の番号に折り返し希望"
    }))
    .unwrap();
    store
        .insert_inquiry(
            user,
            &NewInquiry::parse(form).unwrap(),
            "2021-06-07T23:12:00.000Z",
        )
        .await
        .unwrap();
    store.close().await;

    let out = dir.0.join("calls.csv");
    let (ok, _, err) = madoguchi(
        &db,
        &[
            "export",
            "calls",
            "--from",
            "2021-06-08",
            "--encoding",
            "sjis",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    assert!(err.contains("1 calls written"), "{err}");
    let bytes = std::fs::read(&out).unwrap();
    let (text, _, bad) = encoding_rs::SHIFT_JIS.decode(&bytes);
    assert!(!bad && !text.starts_with('\u{feff}'));
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert!(
        lines[0].starts_with("通話ID,着信日時,発信者番号,発信者名"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("ami:2,2021-06-08 08:10:00,0773620000,舞鶴 花子"),
        "{text}"
    );
    assert_eq!(lines.len(), 3, "header, one call, the final CRLF: {text}");

    let (ok, stdout, err) = madoguchi(
        &db,
        &[
            "export",
            "calls",
            "--from",
            "2021-06-07",
            "--to",
            "2021-06-08",
        ],
    );
    assert!(ok, "{err}");
    assert!(stdout.starts_with('\u{feff}'), "UTF-8 with BOM");
    assert!(
        stdout.contains(",'=cmd|' /C calc'!A0,"),
        "the formula is text: {stdout}"
    );
    assert_eq!(stdout.matches("\r\n").count(), 3, "{stdout}");

    let (ok, stdout, err) = madoguchi(&db, &["export", "inquiries", "--from", "2021-06-08"]);
    assert!(ok, "{err}");
    assert!(
        stdout.contains(",ami:2,佐藤,appointment_change,'+81 の番号に折り返し希望,"),
        "{stdout}"
    );

    let (ok, _, err) = madoguchi(
        &db,
        &[
            "export",
            "calls",
            "--from",
            "2021-06-09",
            "--to",
            "2021-06-08",
        ],
    );
    assert!(!ok && err.contains("after"), "{err}");
}
