-- Transaction markers kept in PostgreSQL (issue 23). An object whose body is here is never
-- uploaded: a transaction's end writes its markers (one control batch per partition, tens of
-- bytes each) in the same PostgreSQL transaction that decides it, so EndTxn waits for no
-- S3 PUT. Index rows point into it as into any object; readers and the compactor take the
-- bytes from here, the garbage collector deletes nothing in S3 for it. NULL: the object is
-- in S3 at object_key.
ALTER TABLE objects ADD COLUMN body bytea;
