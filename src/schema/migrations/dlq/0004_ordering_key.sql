-- The dead row's ordering key, so a redrive publishes it again under its key (at the end of the
-- key's line: a redrive is a new row).
ALTER TABLE {{dlq}} ADD COLUMN ordering_key text;
