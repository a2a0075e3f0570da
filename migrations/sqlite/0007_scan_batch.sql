-- A scratch table for writing a scan's batches. Each write transaction that records a batch
-- first fills it with the batch's rows (bound parameters, a few statements per thousand rows),
-- then writes every ledger table from it in a handful of set-based statements, and empties it
-- before committing: outside a transaction it is always empty (a killed process's transaction
-- rolls back with its rows). Unpacking a JSON batch in each statement instead cost 3 to 6 times
-- the work of the statement itself.
create table scan_batch (
    path     blob    not null,
    -- Size, mtime, content and format: set for hashed inputs, null for unchanged ones (the
    -- ledger has them).
    size     integer,
    mtime_ns integer,
    sha256   text,
    format   text,
    planned  blob    not null
);

update meta set value = '7' where key = 'schema_version';
