-- The class of last_exception (exception_type in metrics), to list and redrive dead letters by cause.
ALTER TABLE {{dlq}} ADD COLUMN last_exception_type text;
