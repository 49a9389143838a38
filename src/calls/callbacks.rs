//! 折り返し: every inbound caller who abandoned or was missed becomes a callback entry (one per
//! number per day in Japan); an answered call from the same number clears it. Written beside
//! the call log when a call ends, by one task of its own in the order the calls ended, so the
//! tracker never waits on it. A write the database refuses is logged and lost (the call log
//! itself, which is spooled, still holds the call).

use crate::domain::PhoneNumber;
use crate::store::calls::CallRow;
use crate::store::Store;

/// The outcomes that leave a caller to be called back.
const MISSED: &[&str] = &["abandoned", "timeout", "no_answer", "busy"];

/// What a call that ended means for the callbacks: `Some(true)` a miss to note, `Some(false)`
/// an answered call that clears the number's entry, `None` nothing (outbound, withheld, ended
/// unseen, failed).
pub fn effect(row: &CallRow) -> Option<bool> {
    if row.direction != "inbound" || PhoneNumber::from_caller_id(&row.caller_number).is_none() {
        return None;
    }
    match row.outcome.as_deref() {
        Some("answered") => Some(false),
        Some(o) if MISSED.contains(&o) => Some(true),
        _ => None,
    }
}

/// Writes the calls' effects on the callbacks in the order the calls ended.
#[derive(Clone)]
pub struct Writer {
    tx: Option<tokio::sync::mpsc::UnboundedSender<(Option<bool>, CallRow)>>,
}

impl Writer {
    /// Starts the writing task (inside a Tokio runtime; outside one, nothing is written).
    pub fn spawn(store: Store) -> Writer {
        if tokio::runtime::Handle::try_current().is_err() {
            return Writer { tx: None };
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Option<bool>, CallRow)>();
        tokio::spawn(async move {
            while let Some((missed, row)) = rx.recv().await {
                match missed {
                    Some(missed) => write(&store, missed, &row).await,
                    None => {
                        if let Err(e) = store
                            .callback_resident(&row.id, row.resident_id, row.candidates)
                            .await
                        {
                            tracing::warn!(call = %row.id, error = %e, "callback resident not written");
                        }
                    }
                }
            }
        });
        Writer { tx: Some(tx) }
    }

    /// A missed call's resident lookup finished after the call ended: its entry learns who.
    pub fn resident_known(&self, row: &CallRow) {
        if effect(row) != Some(true) {
            return;
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send((None, row.clone()));
        }
    }

    /// Notes the call's effect on the callbacks, in the background.
    pub fn note(&self, row: &CallRow) {
        let (Some(missed), Some(tx)) = (effect(row), &self.tx) else {
            return;
        };
        let _ = tx.send((Some(missed), row.clone()));
    }
}

async fn write(store: &Store, missed: bool, row: &CallRow) {
    {
        let at = crate::store::ts(chrono::Utc::now());
        let result = if missed {
            let started = crate::store::parse_ts(&row.started_at).unwrap_or_else(chrono::Utc::now);
            let day = crate::calls::Board::day_start(started) + chrono::Duration::hours(9);
            let day = day.date_naive().to_string();
            store
                .note_missed_call(
                    &row.caller_number,
                    &day,
                    &row.id,
                    row.queue.as_deref(),
                    row.resident_id,
                    row.candidates,
                    &at,
                )
                .await
                .map(|_| ())
        } else {
            store
                .clear_callbacks(&row.caller_number, &at)
                .await
                .map(|_| ())
        };
        if let Err(e) = result {
            tracing::warn!(call = %row.id, error = %e, "callback entry not written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missed_inbound_calls_with_a_number_become_callbacks() {
        let row = |dir: &str, number: &str, outcome: &str| CallRow {
            direction: dir.into(),
            caller_number: number.into(),
            outcome: Some(outcome.into()),
            ..CallRow::default()
        };
        assert_eq!(
            effect(&row("inbound", "0773620001", "abandoned")),
            Some(true)
        );
        assert_eq!(effect(&row("inbound", "0773620001", "timeout")), Some(true));
        assert_eq!(
            effect(&row("inbound", "0773620001", "answered")),
            Some(false)
        );
        assert_eq!(effect(&row("inbound", "0773620001", "unknown")), None);
        assert_eq!(
            effect(&row("inbound", "<unknown>", "abandoned")),
            None,
            "withheld"
        );
        assert_eq!(effect(&row("outbound", "0773620001", "no_answer")), None);
    }
}
