-- The intent survey (意向調査, `madoguchi import survey`): where a resident who needs the bus
-- would board it, as they wrote it (a stop's name or a landmark); blank when not asked.
ALTER TABLE residents ADD COLUMN pickup_pref TEXT NOT NULL DEFAULT '';
