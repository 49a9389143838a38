-- Idempotency answers are kept a day (src/store/bookings.rs, Store::prune_booking_moves);
-- the periodic sweep deletes older ones by this index.
CREATE INDEX booking_moves_created ON booking_moves (created_at);
