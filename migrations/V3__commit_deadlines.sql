-- Produce requests carry a commit deadline, in this server's clock: the gateway answers a
-- request that has not been acknowledged by then with REQUEST_TIMED_OUT, and librdkafka
-- may then re-send its records under a new producer epoch. A writer that was frozen or cut
-- off must not store such a request afterwards, or the records would be stored twice.
--
-- The commit sets `yaks.commit_deadline_ms` (transaction-local) to the earliest deadline of
-- the batches it stores; this deferred trigger checks it while COMMIT runs, after every
-- statement of the transaction, so no pause of the writer between its statements can slip
-- a commit past the deadline. Expects: one objects row inserted per storing commit.
CREATE FUNCTION yaks_check_commit_deadline() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    deadline text := current_setting('yaks.commit_deadline_ms', true);
BEGIN
    IF deadline IS NOT NULL AND deadline <> ''
       AND (extract(epoch FROM clock_timestamp()) * 1000)::bigint >= deadline::bigint THEN
        RAISE EXCEPTION 'commit deadline % passed', deadline USING ERRCODE = 'YK001';
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER objects_commit_deadline
    AFTER INSERT ON objects
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION yaks_check_commit_deadline();
