-- Click-to-dial from a callback (issue 11): the outbound call placed to call the number back,
-- the call log's key (`<link>:<Linkedid>`), set when the PBX reports the call placed. Same on
-- both engines.
ALTER TABLE callbacks ADD COLUMN dialled_call_key TEXT;
