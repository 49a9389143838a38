//! 通話・問い合わせ履歴: the last 60 days of a vaccination call center, so the demo's screen
//! pops and resident pages show the history an agent would really find: who called, who
//! answered, what was asked (本人 or a 続柄 on their behalf), what needs a call back.
//!
//! Calls fall on weekdays 9:00–17:00 JST (the real line's hours), busiest when the line opens;
//! most are answered, some callers give up in the queue (abandoned), some ring out
//! (no_answer). The old call more and often through family; a quarter of calls are repeat
//! callers, so some residents have several entries.

use super::synth::{age_on, Rng, CALL_CENTER_NUMBER, DEMO_QUEUE};
use crate::domain::{InquiryForm, NewInquiry, NewResident, Sex};
use crate::store::calls::CallRow;
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use std::collections::HashMap;

/// What [`generate`] produced, ready for the bulk inserts.
pub struct History {
    pub calls: Vec<CallRow>,
    /// (user id of the agent who wrote it, the inquiry, created_at)
    pub inquiries: Vec<(i64, NewInquiry, String)>,
}

/// Indices into `residents` of `count` callers: the old weigh more, residents without a phone
/// cannot call, and a quarter are repeat callers.
pub fn pick_callers(
    residents: &[NewResident],
    count: usize,
    today: NaiveDate,
    rng: &mut Rng,
) -> Vec<usize> {
    let mut picks: Vec<usize> = Vec::with_capacity(count);
    if residents.is_empty() {
        return picks;
    }
    let mut tries = 0usize;
    while picks.len() < count && tries < count.saturating_mul(200) {
        tries += 1;
        if !picks.is_empty() && rng.chance(0.25) {
            let again = picks[rng.below(picks.len() as u64) as usize];
            picks.push(again);
            continue;
        }
        let i = rng.below(residents.len() as u64) as usize;
        let r = &residents[i];
        if r.phones.is_empty() {
            continue;
        }
        let weight = match age_on(r.birth_date.date(), today) {
            75.. => 1.0,
            65..=74 => 0.8,
            12..=64 => 0.3,
            _ => 0.15,
        };
        if rng.chance(weight) {
            picks.push(i);
        }
    }
    picks
}

/// 舞鶴 venues of 2021 (VACCINATION.md §5.1).
const VENUES: &[&str] = &["舞鶴文化公園体育館", "舞鶴市総合文化会館", "舞鶴東体育館"];
const TIMES: &[&str] = &[
    "午前9時30分",
    "午前10時",
    "午前10時30分",
    "午前11時",
    "午後1時30分",
    "午後2時",
    "午後2時30分",
    "午後3時",
];

/// (category, note template, needs a call back). `{date}`, `{time}`, `{venue}` and `{town}` are
/// filled per inquiry.
const NOTES: &[(&str, &str, bool)] = &[
    ("appointment_change", "指定日（{date}）は通院日と重なるため変更希望。{date2}{time}、{venue}に変更。2回目も連動して移動したことを説明。", false),
    ("appointment_change", "仕事の都合で平日午前は不可とのこと。{date2}{time}に変更し、変更後の通知はがきを再送。", false),
    ("appointment_change", "送迎してくれる家族の都合で日時変更希望。{venue}の{date2}{time}で了承いただいた。", false),
    ("appointment_change", "夫婦で同じ日に受けたいとのこと。同じコマ（{date2}{time}）にそろえて変更。", false),
    ("appointment_change", "変更希望日の{date2}は満枠。空きのある日を確認のうえ折り返し連絡する。", true),
    ("appointment_cancel", "入院予定のためキャンセル希望。退院後に改めて連絡するよう案内。", false),
    ("appointment_cancel", "かかりつけ医で個別接種を受けるため、集団接種の予約を取り消し。", false),
    ("appointment_cancel", "体調不良のため{date}の予約を取り消し。回復後に再予約の連絡をもらうことに。", false),
    ("transport", "送迎バスの乗車場所を確認したいとのこと。{town}の乗車場所と出発時刻（{time}）を案内。", false),
    ("transport", "足が悪く乗車場所まで歩けないとのこと。福祉タクシーの利用について担当課に確認のうえ折り返し。", true),
    ("transport", "送迎バスを新たに希望。{date}の便に追加、乗車場所は{town}。", false),
    ("transport", "家族が車で送れるようになったので送迎は不要とのこと。送迎を取り消し。", false),
    ("ticket", "接種券を紛失。本人確認のうえ再発行を受付、1週間程度で郵送と案内。", false),
    ("ticket", "接種券が届かないとの問い合わせ。発送済みであることを説明し住所を確認。再送手続き中。", true),
    ("ticket", "転入したばかりで接種券がない。転入前の市町村での接種歴を確認のうえ発行手続きを案内。", true),
    ("ticket", "接種券の同封書類の見方がわからないとのこと。予診票の記入方法を一緒に確認。", false),
    ("side_effects", "1回目接種の翌日に37.8度の発熱と腕の痛み。解熱剤の使用について説明し、続く場合はかかりつけ医を受診するよう案内。", false),
    ("side_effects", "接種後からだるさが続く。経過観察を案内し、京都府の副反応相談窓口の番号を伝えた。", false),
    ("side_effects", "接種部位の腫れが大きいとの相談。保健師に確認のうえ折り返し。", true),
    ("eligibility", "卵アレルギーがあるが接種できるか。かかりつけ医に相談し、予診の際に医師に申し出るよう案内。", false),
    ("eligibility", "過去にアナフィラキシーあり。かかりつけ医での個別接種を勧めた。", false),
    ("eligibility", "血液をさらさらにする薬を服用中。接種は可能だが予診票に記入し医師に伝えるよう案内。", false),
    ("eligibility", "施設入所中の母の接種について。施設での個別接種になることを説明。", false),
    ("general", "持ち物の確認。接種券、記入済みの予診票、本人確認書類、お薬手帳を案内。", false),
    ("general", "{venue}の駐車場について。台数に限りがあるため乗り合わせを案内。", false),
    ("general", "会場での付き添いは可能かとの問い合わせ。1名まで可と案内。", false),
    ("general", "2回目の日程の確認。{date2}{time}、{venue}であることを伝えた。", false),
    ("complaint", "電話がつながりにくいとの苦情。混雑する時間帯を説明しお詫び。", false),
    ("complaint", "指定された日時が一方的だとのご意見。変更できることを説明し了承いただいた。", false),
];

/// Share of inquiries per category, in [`NOTES`]' category order of first appearance.
const CATEGORY_WEIGHTS: &[(&str, f64)] = &[
    ("appointment_change", 28.0),
    ("appointment_cancel", 7.0),
    ("transport", 12.0),
    ("ticket", 15.0),
    ("side_effects", 12.0),
    ("eligibility", 10.0),
    ("general", 14.0),
    ("complaint", 2.0),
];

/// `6月8日（火）`: how an agent reads a date back to a caller.
pub fn japanese_date(d: NaiveDate) -> String {
    let wd =
        ["月", "火", "水", "木", "金", "土", "日"][d.weekday().num_days_from_monday() as usize];
    format!("{}月{}日（{wd}）", d.month(), d.day())
}

fn next_weekday(mut d: NaiveDate) -> NaiveDate {
    while matches!(d.weekday(), Weekday::Sat | Weekday::Sun) {
        d = d.succ_opt().unwrap_or(d);
    }
    d
}

fn note_for(rng: &mut Rng, call_day: NaiveDate, town: &str) -> (&'static str, String, bool) {
    let weights: Vec<f64> = CATEGORY_WEIGHTS.iter().map(|(_, w)| *w).collect();
    let category = CATEGORY_WEIGHTS[rng.weighted(&weights)].0;
    let choices: Vec<&(&str, &str, bool)> = NOTES.iter().filter(|(c, ..)| *c == category).collect();
    let Some((_, template, follow_up)) = rng.pick(&choices).copied() else {
        return ("general", String::new(), false);
    };
    let date = next_weekday(call_day + Duration::days(i64::from(rng.range(5, 20))));
    let date2 = next_weekday(date + Duration::days(i64::from(rng.range(3, 14))));
    let note = template
        .replace("{date2}", &japanese_date(date2))
        .replace("{date}", &japanese_date(date))
        .replace("{time}", rng.pick(TIMES).copied().unwrap_or("午前10時"))
        .replace("{venue}", rng.pick(VENUES).copied().unwrap_or(VENUES[0]))
        .replace("{town}", &format!("{town}公民館前"));
    (category, note, *follow_up)
}

/// Who called: 本人, or a 続柄 on the resident's behalf.
fn caller(
    rng: &mut Rng,
    r: &NewResident,
    age: u32,
    has_spouse: bool,
) -> (&'static str, &'static str) {
    let spouse = match r.sex {
        Sex::Male => "妻",
        Sex::Female => "夫",
    };
    let proxy_chance = match age {
        0..=15 => 1.0,
        16..=64 => 0.05,
        65..=74 => 0.15,
        _ => 0.45,
    };
    if !rng.chance(proxy_chance) {
        return ("self", "");
    }
    let relationship = match age {
        0..=15 => {
            if rng.chance(0.7) {
                "母"
            } else {
                "父"
            }
        }
        16..=64 => {
            if has_spouse {
                spouse
            } else {
                "家族"
            }
        }
        _ => {
            let options: [(&str, f64); 9] = [
                (spouse, if has_spouse { 4.0 } else { 0.0 }),
                ("長男", 5.0),
                ("長女", 5.0),
                ("次男", 1.5),
                ("次女", 1.5),
                ("嫁", 3.0),
                ("孫", 1.0),
                ("ケアマネジャー", 1.0),
                ("民生委員", 0.5),
            ];
            let weights: Vec<f64> = options.iter().map(|(_, w)| *w).collect();
            options[rng.weighted(&weights)].0
        }
    };
    ("proxy", relationship)
}

/// A moment in the call center's hours on one of the last 60 weekdays, busiest at opening.
fn call_time(rng: &mut Rng, now: DateTime<Utc>) -> DateTime<Utc> {
    let Some(jst) = chrono::FixedOffset::east_opt(9 * 3600) else {
        return now;
    };
    let today = now.with_timezone(&jst).date_naive();
    let mut day = today - Duration::days(i64::from(rng.range(1, 60)));
    for _ in 0..8 {
        if !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
            break;
        }
        day = today - Duration::days(i64::from(rng.range(1, 60)));
    }
    const HOURS: [f64; 8] = [3.0, 2.0, 1.5, 0.8, 1.5, 1.3, 1.1, 0.9]; // 9時 … 16時
    let hour = 9 + rng.weighted(&HOURS) as u32;
    let local = day
        .and_hms_opt(hour, rng.range(0, 59), rng.range(0, 59))
        .unwrap_or_default();
    jst.from_local_datetime(&local)
        .single()
        .map_or(now, |t| t.with_timezone(&Utc))
        .min(now)
}

fn ts(t: DateTime<Utc>) -> String {
    crate::store::ts(t)
}

/// The calls and inquiries of the picked callers. `ids` maps 宛名番号 to ledger ids, `agents`
/// extension to user id (201…208).
pub fn generate(
    residents: &[NewResident],
    picks: &[usize],
    ids: &HashMap<String, i64>,
    agents: &HashMap<String, i64>,
    now: DateTime<Utc>,
    rng: &mut Rng,
) -> History {
    let mut on_number: HashMap<&str, i64> = HashMap::new();
    let mut households: HashMap<&str, Vec<&NewResident>> = HashMap::new();
    for r in residents {
        for p in &r.phones {
            *on_number.entry(p.0.as_str()).or_default() += 1;
        }
        if let Some(h) = &r.household_no {
            households.entry(h.as_str()).or_default().push(r);
        }
    }
    // A spouse is a household member of the other sex, adult, within ten years of age.
    let spouse_of = |r: &NewResident| {
        let members = r.household_no.as_deref().and_then(|h| households.get(h));
        members.is_some_and(|m| {
            m.iter().any(|o| {
                o.sex != r.sex
                    && (o.birth_date.date() - r.birth_date.date()).num_days().abs() <= 3653
                    && age_on(o.birth_date.date(), now.date_naive()) >= 20
            })
        })
    };
    let mut extensions: Vec<&String> = agents.keys().collect();
    extensions.sort();
    let today = (now + Duration::hours(9)).date_naive();

    // Draw each call's time first, then number the calls in time order: hist:1 is the oldest.
    let mut timed: Vec<(DateTime<Utc>, usize)> =
        picks.iter().map(|i| (call_time(rng, now), *i)).collect();
    timed.sort();

    let mut calls = Vec::with_capacity(timed.len());
    let mut inquiries = Vec::with_capacity(timed.len());
    for (n, (started, i)) in timed.into_iter().enumerate() {
        let r = &residents[i];
        let Some(resident_id) = ids.get(r.address_no.as_str()).copied() else {
            continue;
        };
        let Some(phone) = rng.pick(&r.phones) else {
            continue;
        };
        let age = age_on(r.birth_date.date(), today);
        let candidates = on_number.get(phone.0.as_str()).copied().unwrap_or(1);
        let outcome = ["answered", "abandoned", "no_answer"][rng.weighted(&[85.0, 11.0, 4.0])];
        let queued = started + Duration::seconds(i64::from(rng.range(8, 20))); // the IVR greeting
        let wait = match outcome {
            "answered" => (-45.0 * (1.0 - rng.unit()).ln()).min(600.0) as i64 + 3,
            "abandoned" => i64::from(rng.range(15, 240)),
            _ => i64::from(rng.range(60, 180)),
        };
        let offered_count = match outcome {
            "answered" | "no_answer" => rng.range(1, 3) as usize,
            _ => rng.range(0, 2) as usize,
        };
        let mut offered: Vec<String> = Vec::new();
        while offered.len() < offered_count.min(extensions.len()) {
            if let Some(ext) = rng.pick(&extensions) {
                if !offered.contains(ext) {
                    offered.push((*ext).clone());
                }
            }
        }
        let picked_up = queued + Duration::seconds(wait);
        let rang = (!offered.is_empty())
            .then(|| picked_up - Duration::seconds(i64::from(rng.range(3, 15))));
        let answered = outcome == "answered" && !offered.is_empty();
        let answered_by = if answered {
            offered.last().cloned()
        } else {
            None
        };
        let answered_user_id = answered_by.as_ref().and_then(|e| agents.get(e).copied());
        let talk = if answered {
            let base = 60.0 + 840.0 * rng.unit().powi(2);
            (base * if age >= 75 { 1.3 } else { 1.0 }) as i64
        } else {
            0
        };
        let ended = (picked_up + Duration::seconds(talk)).min(now);
        let key = format!("hist:{}", n + 1);
        let linked = answered || candidates == 1;
        calls.push(CallRow {
            id: key.clone(),
            direction: "inbound".into(),
            caller_number: phone.0.national(),
            caller_e164: Some(phone.0.as_str().to_string()),
            caller_name: String::new(),
            dialled: CALL_CENTER_NUMBER.replace('-', ""),
            queue: Some(DEMO_QUEUE.to_string()),
            agents_offered: offered,
            answered_by,
            answered_user_id,
            resident_id: linked.then_some(resident_id),
            candidates,
            started_at: ts(started),
            queued_at: Some(ts(queued)),
            rang_at: rang.map(ts),
            answered_at: answered.then(|| ts(picked_up)),
            ended_at: Some(ts(ended)),
            hold_s: Some(wait),
            outcome: Some(if answered { "answered" } else { outcome }.to_string()),
            ..CallRow::default()
        });
        let Some(user_id) = answered_user_id else {
            continue;
        };
        if !rng.chance(0.93) {
            continue; // a wrong number, a caller who hung up mid-sentence: no note
        }
        let (caller_kind, relationship) = caller(rng, r, age, spouse_of(r));
        let (category, note, follow_up) = note_for(rng, started.date_naive(), &r.town);
        let form = InquiryForm {
            resident_id: Some(resident_id),
            call_id: Some(key),
            category: category.to_string(),
            note,
            follow_up: follow_up || rng.chance(0.03),
            caller_kind: caller_kind.to_string(),
            relationship: relationship.to_string(),
        };
        // The notes are ours, so a refusal is a bug in this file: skip rather than stop a demo.
        if let Ok(inquiry) = NewInquiry::parse(form) {
            inquiries.push((user_id, inquiry, ts(ended)));
        }
    }

    // 来庁・郵送・FAX: inquiries with no call, written by whoever was at the desk.
    let walk_ins = picks.len() / 15;
    for _ in 0..walk_ins {
        let Some(i) = rng.pick(picks).copied() else {
            break;
        };
        let r = &residents[i];
        let Some(resident_id) = ids.get(r.address_no.as_str()).copied() else {
            continue;
        };
        let Some(ext) = rng.pick(&extensions) else {
            break;
        };
        let Some(user_id) = agents.get(*ext).copied() else {
            continue;
        };
        let at = call_time(rng, now);
        let how = ["【来庁】", "【郵送】", "【FAX】"][rng.weighted(&[6.0, 3.0, 1.0])];
        let (category, note, follow_up) = note_for(rng, at.date_naive(), &r.town);
        let form = InquiryForm {
            resident_id: Some(resident_id),
            call_id: None,
            category: category.to_string(),
            note: format!("{how}{note}"),
            follow_up,
            caller_kind: "self".into(),
            relationship: String::new(),
        };
        if let Ok(inquiry) = NewInquiry::parse(form) {
            inquiries.push((user_id, inquiry, ts(at)));
        }
    }
    History { calls, inquiries }
}
