//! The screen pop's hot path: everyone on a number, with phones and full history, as the JSON
//! the agent's screen receives, in one round trip.
//!
//! The general path ([`Store::resident_record`]) takes a query per table per resident; while a
//! phone rings that is too slow (about a millisecond on SQLite). Here the database builds the
//! JSON itself. JSON functions are one of the few places the dialects differ, so this file
//! holds one query per engine; `tests` checks that both produce exactly what serde produces
//! from the general path, so the two cannot drift apart.
//!
//! On SQLite the query runs in place on the calling thread, on a direct read-only connection
//! ([`Store::reads`]). Through the pool, sqlx hands every query to the connection's worker
//! thread and back; on this machine's virtual CPUs each of those wake-ups costs about a
//! tenth of a millisecond, which tripled the lookup (0.12 ms alone, 0.45 ms in the benchmark).

use super::native::Via;
use super::residents::HISTORY_LIMIT;
use super::{Engine, Store};
use crate::domain::PhoneNumber;
use futures_util::FutureExt;
use sqlx::Row;

const SQLITE: &str = r#"
SELECT r.id, json_object(
  'id', r.id, 'address_no', r.address_no, 'municipality_code', r.municipality_code,
  'ticket_no', r.ticket_no, 'name', r.name, 'name_kana', r.name_kana, 'birth_date', r.birth_date,
  'sex', r.sex, 'postal_code', r.postal_code, 'address', r.address, 'town', r.town,
  'district', r.district, 'household_no', r.household_no, 'intent', r.intent,
  'needs_transport', CASE WHEN r.needs_transport <> 0 THEN json('true') ELSE json('false') END,
  'notes', r.notes,
  'phones', (SELECT json_group_array(json_object('e164', p.e164, 'written', p.written, 'kind', p.kind))
             FROM (SELECT e164, written, kind FROM phones WHERE resident_id = r.id ORDER BY id) p),
  'bookings', (SELECT json_group_array(json_object(
                 'id', b.id, 'dose', b.dose, 'slot_id', b.slot_id, 'venue_id', b.venue_id,
                 'venue_name', b.venue_name, 'starts_at', b.starts_at, 'product', b.product,
                 'status', b.status,
                 'ride', json((SELECT json_object('run_id', x.run_id, 'stop_name', st.name,
                                                  'pickup_at', rs.pickup_at)
                               FROM rides x JOIN stops st ON st.id = x.stop_id
                               LEFT JOIN run_stops rs ON rs.run_id = x.run_id AND rs.stop_id = x.stop_id
                               WHERE x.booking_id = b.id AND x.status = 'booked'))))
               FROM (SELECT b.id, b.dose, b.slot_id, s.venue_id, v.name AS venue_name, s.starts_at,
                            s.product, b.status
                     FROM bookings b JOIN slots s ON s.id = b.slot_id JOIN venues v ON v.id = s.venue_id
                     WHERE b.resident_id = r.id ORDER BY b.dose, b.id) b),
  'vaccinations', (SELECT json_group_array(json_object(
                 'id', x.id, 'resident_id', x.resident_id, 'dose', x.dose, 'product', x.product,
                 'lot', x.lot, 'vial_id', x.vial_id, 'venue_id', x.venue_id,
                 'venue_name', x.venue_name, 'vaccinator', x.vaccinator,
                 'injection_site', x.injection_site, 'given_at', x.given_at,
                 'given_on', x.given_on, 'municipality_code', x.municipality_code,
                 'ticket_no', x.ticket_no, 'recorded_at', x.recorded_at,
                 'recorded_by', x.recorded_by, 'corrects_id', x.corrects_id,
                 'correction_reason', x.correction_reason, 'superseded_at', x.superseded_at,
                 'export_batch_id', x.export_batch_id))
               FROM (SELECT x.*, v.name AS venue_name FROM vaccinations x JOIN venues v ON v.id = x.venue_id
                     WHERE x.resident_id = r.id ORDER BY x.dose, x.id) x),
  'inquiries', (SELECT json_group_array(json_object(
                  'id', i.id, 'resident_id', i.resident_id, 'call_id', i.call_key, 'user_id', i.user_id,
                  'username', i.username, 'user_name', i.user_name, 'category', i.category, 'note', i.note,
                  'follow_up', CASE WHEN i.follow_up <> 0 THEN json('true') ELSE json('false') END,
                  'caller_kind', i.caller_kind, 'relationship', i.relationship, 'created_at', i.created_at))
                FROM (SELECT i.*, COALESCE(u.username, '') AS username,
                             COALESCE(NULLIF(u.display_name, ''), u.username, '') AS user_name FROM inquiries i
                      LEFT JOIN users u ON u.id = i.user_id WHERE i.resident_id = r.id
                      ORDER BY i.created_at DESC, i.id DESC LIMIT $2) i),
  'calls', (SELECT json_group_array(json_object(
              'id', c.call_key, 'direction', c.direction, 'caller_number', c.caller_number,
              'caller_e164', c.caller_e164, 'caller_name', c.caller_name, 'dialled', c.dialled,
              'queue', c.queue,
              'agents_offered', json(CASE WHEN c.agents_offered = '' THEN '[]'
                                     ELSE '["' || replace(c.agents_offered, ',', '","') || '"]' END),
              'answered_by', c.answered_by, 'answered_user_id', c.answered_user_id,
              'answered_by_name', (SELECT COALESCE(NULLIF(u.display_name, ''), u.username) FROM users u WHERE u.id = c.answered_user_id),
              'resident_id', c.resident_id, 'candidates', c.candidates, 'started_at', c.started_at,
              'queued_at', c.queued_at, 'rang_at', c.rang_at, 'answered_at', c.answered_at,
              'ended_at', c.ended_at, 'hold_s', c.hold_s, 'outcome', c.outcome))
            FROM (SELECT * FROM calls WHERE resident_id = r.id
                  ORDER BY started_at DESC, id DESC LIMIT $2) c)
) AS record
FROM residents r
WHERE r.id IN (SELECT resident_id FROM phones WHERE e164 = $1)
ORDER BY r.birth_date, r.id
LIMIT 50
"#;

const POSTGRES: &str = r#"
SELECT r.id, json_build_object(
  'id', r.id, 'address_no', r.address_no, 'municipality_code', r.municipality_code,
  'ticket_no', r.ticket_no, 'name', r.name, 'name_kana', r.name_kana, 'birth_date', r.birth_date,
  'sex', r.sex, 'postal_code', r.postal_code, 'address', r.address, 'town', r.town,
  'district', r.district, 'household_no', r.household_no, 'intent', r.intent,
  'needs_transport', r.needs_transport <> 0,
  'notes', r.notes,
  'phones', COALESCE((SELECT json_agg(json_build_object('e164', p.e164, 'written', p.written, 'kind', p.kind) ORDER BY p.id)
                      FROM phones p WHERE p.resident_id = r.id), '[]'::json),
  'bookings', COALESCE((SELECT json_agg(json_build_object(
                 'id', b.id, 'dose', b.dose, 'slot_id', b.slot_id, 'venue_id', s.venue_id,
                 'venue_name', v.name, 'starts_at', s.starts_at, 'product', s.product,
                 'status', b.status,
                 'ride', (SELECT json_build_object('run_id', x.run_id, 'stop_name', st.name,
                                                   'pickup_at', rs.pickup_at)
                          FROM rides x JOIN stops st ON st.id = x.stop_id
                          LEFT JOIN run_stops rs ON rs.run_id = x.run_id AND rs.stop_id = x.stop_id
                          WHERE x.booking_id = b.id AND x.status = 'booked')) ORDER BY b.dose, b.id)
               FROM bookings b JOIN slots s ON s.id = b.slot_id JOIN venues v ON v.id = s.venue_id
               WHERE b.resident_id = r.id), '[]'::json),
  'vaccinations', COALESCE((SELECT json_agg(json_build_object(
                 'id', x.id, 'resident_id', x.resident_id, 'dose', x.dose, 'product', x.product,
                 'lot', x.lot, 'vial_id', x.vial_id, 'venue_id', x.venue_id, 'venue_name', v.name,
                 'vaccinator', x.vaccinator, 'injection_site', x.injection_site,
                 'given_at', x.given_at, 'given_on', x.given_on,
                 'municipality_code', x.municipality_code, 'ticket_no', x.ticket_no,
                 'recorded_at', x.recorded_at, 'recorded_by', x.recorded_by,
                 'corrects_id', x.corrects_id, 'correction_reason', x.correction_reason,
                 'superseded_at', x.superseded_at, 'export_batch_id', x.export_batch_id) ORDER BY x.dose, x.id)
               FROM vaccinations x JOIN venues v ON v.id = x.venue_id
               WHERE x.resident_id = r.id), '[]'::json),
  'inquiries', COALESCE((SELECT json_agg(s.j ORDER BY s.created_at DESC, s.id DESC) FROM (
                  SELECT i.id, i.created_at, json_build_object(
                    'id', i.id, 'resident_id', i.resident_id, 'call_id', i.call_key, 'user_id', i.user_id,
                    'username', COALESCE(u.username, ''),
                    'user_name', COALESCE(NULLIF(u.display_name, ''), u.username, ''),
                    'category', i.category, 'note', i.note,
                    'follow_up', i.follow_up <> 0, 'caller_kind', i.caller_kind,
                    'relationship', i.relationship, 'created_at', i.created_at) AS j
                  FROM inquiries i LEFT JOIN users u ON u.id = i.user_id
                  WHERE i.resident_id = r.id ORDER BY i.created_at DESC, i.id DESC LIMIT $2) s), '[]'::json),
  'calls', COALESCE((SELECT json_agg(s.j ORDER BY s.started_at DESC, s.id DESC) FROM (
              SELECT c.id, c.started_at, json_build_object(
                'id', c.call_key, 'direction', c.direction, 'caller_number', c.caller_number,
                'caller_e164', c.caller_e164, 'caller_name', c.caller_name, 'dialled', c.dialled,
                'queue', c.queue,
                'agents_offered', COALESCE(to_json(string_to_array(NULLIF(c.agents_offered, ''), ',')), '[]'::json),
                'answered_by', c.answered_by, 'answered_user_id', c.answered_user_id,
                'answered_by_name', (SELECT COALESCE(NULLIF(u.display_name, ''), u.username) FROM users u WHERE u.id = c.answered_user_id),
                'resident_id', c.resident_id, 'candidates', c.candidates, 'started_at', c.started_at,
                'queued_at', c.queued_at, 'rang_at', c.rang_at, 'answered_at', c.answered_at,
                'ended_at', c.ended_at, 'hold_s', c.hold_s, 'outcome', c.outcome) AS j
              FROM calls c WHERE c.resident_id = r.id
              ORDER BY c.started_at DESC, c.id DESC LIMIT $2) s), '[]'::json)
)::text AS record
FROM residents r
WHERE r.id IN (SELECT resident_id FROM phones WHERE e164 = $1)
ORDER BY r.birth_date, r.id
LIMIT 50
"#;

impl Store {
    /// True when [`Store::pop_candidates_now`] answers in place (SQLite with a direct reader).
    pub fn pop_lookup_in_place(&self) -> bool {
        matches!(self.reads(), Via::InPlace(_))
    }

    /// The pop lookup in place, on the calling thread, where the engine allows it (SQLite);
    /// `None` where it must go through the pool.
    pub fn pop_candidates_now(
        &self,
        phone: &PhoneNumber,
    ) -> Option<anyhow::Result<(String, Vec<i64>)>> {
        if !self.pop_lookup_in_place() {
            return None;
        }
        // In place, the lookup is done by the time its future is first polled.
        self.pop_candidates(phone).now_or_never()
    }

    /// Everyone on `phone` as a JSON array of records (the `candidates` of a screen pop), and
    /// their ids, in one query.
    pub async fn pop_candidates(&self, phone: &PhoneNumber) -> anyhow::Result<(String, Vec<i64>)> {
        let sql = match self.engine {
            Engine::Sqlite => SQLITE,
            Engine::Postgres => POSTGRES,
        };
        let rows = sqlx::query(sql)
            .bind(phone.as_str().to_string())
            .bind(HISTORY_LIMIT)
            .fetch_all(self.reads())
            .await?;
        let mut json = String::from("[");
        let mut ids = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            ids.push(row.try_get::<i64, _>("id")?);
            if i > 0 {
                json.push(',');
            }
            json.push_str(row.try_get::<&str, _>("record")?);
        }
        json.push(']');
        Ok((json, ids))
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::PhoneNumber;
    use crate::domain::{InquiryForm, NewInquiry};
    use crate::store::calls::CallRow;
    use crate::store::testing::{engines, sample_residents, TestDb};

    /// The one-query JSON equals serde's rendering of the general path, field for field.
    #[tokio::test]
    async fn pop_json_matches_the_general_path() {
        for engine in engines() {
            let db = TestDb::new(engine).await.unwrap();
            let s = &db.store;
            let residents = sample_residents(60);
            s.insert_residents(&residents).await.unwrap();
            let uid = s
                .upsert_user("a", "A", "x", crate::domain::Role::Agent, None)
                .await
                .unwrap();
            // A number shared by a household, with history on one of them.
            let shared = residents
                .iter()
                .flat_map(|r| r.phones.iter().map(|p| p.0.clone()))
                .find(|p| {
                    residents
                        .iter()
                        .filter(|r| r.phones.iter().any(|q| &q.0 == p))
                        .count()
                        > 1
                })
                .expect("a shared landline");
            let first = s.residents_by_phone(&shared).await.unwrap()[0].id;
            for k in 0..3 {
                s.insert_inquiry(
                    uid,
                    &NewInquiry::parse(InquiryForm {
                        resident_id: Some(first),
                        call_id: (k == 1).then(|| "ami:1.1".to_string()),
                        category: "transport".into(),
                        note: format!("メモ \"{k}\" \\ 改行\nあり"),
                        follow_up: k == 2,
                        caller_kind: if k == 0 {
                            "self".into()
                        } else {
                            "proxy".into()
                        },
                        relationship: if k == 0 {
                            String::new()
                        } else {
                            "長男".into()
                        },
                    })
                    .unwrap(),
                    &format!("2021-05-1{k}T09:00:00.000Z"),
                )
                .await
                .unwrap();
            }
            for (k, offered) in [
                vec![],
                vec!["201".to_string()],
                vec!["201".to_string(), "ID-7".to_string()],
            ]
            .into_iter()
            .enumerate()
            {
                s.upsert_call(&CallRow {
                    id: format!("ami:{k}.5"),
                    direction: "inbound".into(),
                    caller_number: "0773-62-0000".into(),
                    agents_offered: offered,
                    resident_id: Some(first),
                    started_at: format!("2021-05-1{k}T10:00:00.000Z"),
                    hold_s: (k > 0).then_some(k as i64),
                    outcome: Some("answered".into()),
                    answered_by: Some("201".into()),
                    // One answered by a login (named in the history), the others by a phone.
                    answered_user_id: (k == 1).then_some(uid),
                    ..CallRow::default()
                })
                .await
                .unwrap();
            }
            // Both doses booked, so the pop carries real bookings.
            let venue = s
                .insert_venue("中総合会館", "舞鶴市字浜", &["東"])
                .await
                .unwrap();
            let at = |d: &str| {
                chrono::DateTime::parse_from_rfc3339(d)
                    .unwrap()
                    .with_timezone(&chrono::Utc)
            };
            let slot = |starts: &str| crate::store::bookings::NewSlot {
                venue_id: venue,
                starts_at: at(starts),
                ends_at: at(starts) + chrono::Duration::minutes(30),
                product: crate::domain::Product::Pfizer,
                capacity: 5,
            };
            let slots = s
                .insert_slots(&[slot("2021-06-03T00:30:00Z"), slot("2021-06-24T00:30:00Z")])
                .await
                .unwrap();
            s.book(first, 1, slots[0]).await.unwrap().unwrap();
            s.book(first, 2, slots[1]).await.unwrap().unwrap();
            // Dose 1 given, then corrected: the pop carries both records.
            let actor = crate::store::vaccinations::Actor {
                user_id: Some(uid),
                remote_addr: "test",
            };
            let lot = crate::domain::dose::LotNo::parse("FA4597").unwrap();
            let opened = at("2021-06-03T00:00:00Z");
            let vial = s
                .receive_vials(
                    venue,
                    crate::domain::Product::Pfizer,
                    &lot,
                    1,
                    6,
                    opened,
                    actor,
                )
                .await
                .unwrap()[0];
            s.open_vial(vial, opened, actor).await.unwrap().unwrap();
            let mut dose = crate::store::vaccinations::NewVaccination {
                resident_id: first,
                dose: 1,
                product: crate::domain::Product::Pfizer,
                lot,
                vaccinator: "医師\u{3000}一".into(),
                injection_site: crate::domain::dose::InjectionSite::LeftArm,
                given_at: at("2021-06-03T00:35:00Z"),
                venue_id: None,
            };
            let given = s.record_vaccination(&dose, actor).await.unwrap().unwrap();
            dose.venue_id = Some(venue);
            dose.injection_site = crate::domain::dose::InjectionSite::RightArm;
            s.correct_vaccination(given.id, &dose, "部位の誤り", actor)
                .await
                .unwrap()
                .unwrap();
            for phone in [shared.clone(), PhoneNumber::parse("0120-000-000").unwrap()] {
                let (json, ids) = s.pop_candidates(&phone).await.unwrap();
                let fast: serde_json::Value = serde_json::from_str(&json).unwrap();
                let mut general = Vec::new();
                for r in s.residents_by_phone(&phone).await.unwrap() {
                    general.push(s.resident_record(r).await.unwrap());
                }
                assert_eq!(
                    ids,
                    general.iter().map(|r| r.resident.id).collect::<Vec<_>>(),
                    "{engine}"
                );
                assert_eq!(fast, serde_json::to_value(&general).unwrap(), "{engine}");
            }
            // On SQLite the direct reader answered, not the pool.
            assert_eq!(s.pop_lookup_in_place(), engine == "sqlite");
            let (json, _) = s.pop_candidates(&shared).await.unwrap();
            let v: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert!(
                v.to_string().contains(r#""answered_by_name":"A""#),
                "{engine}: the history names the agent who answered"
            );
            assert_eq!(
                v[0]["inquiries"].as_array().unwrap().len(),
                3,
                "{engine}: history present"
            );
            let bookings = v[0]["bookings"].as_array().unwrap();
            assert_eq!(bookings.len(), 2, "{engine}: bookings present");
            assert_eq!(bookings[1]["dose"], 2);
            assert_eq!(bookings[1]["starts_at"], "2021-06-24T00:30:00.000Z");
            let doses = v[0]["vaccinations"].as_array().unwrap();
            assert_eq!(doses.len(), 2, "{engine}: vaccinations present");
            assert_eq!(doses[1]["corrects_id"], doses[0]["id"]);
            assert_eq!(doses[1]["injection_site"], "right_arm");
            db.cleanup().await;
        }
    }
}
