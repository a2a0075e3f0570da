-- Files a run found but could not use (not an image, unreadable, over the upload limit, a broken
-- link…), so every input's outcome is in the ledger, not only in a run's stderr. A path that
-- later becomes a usable input leaves this table (record_inputs deletes it).

create table rejected_inputs (
    path    blob    not null primary key,
    -- 'skipped': not an image, inside a folder (expected); 'error': cannot be used (needs a fix).
    kind    text    not null check (kind in ('skipped', 'error')),
    reason  text    not null,
    run     integer not null,
    seen_at text    not null
) without rowid;

insert into tallies (name, n) values ('rejected_skipped', 0), ('rejected_error', 0);

create trigger rejected_tally_insert after insert on rejected_inputs
begin
    update tallies set n = n + 1 where name = 'rejected_' || new.kind;
end;

create trigger rejected_tally_delete after delete on rejected_inputs
begin
    update tallies set n = n - 1 where name = 'rejected_' || old.kind;
end;

create trigger rejected_tally_kind after update of kind on rejected_inputs
when old.kind <> new.kind
begin
    update tallies set n = n - 1 where name = 'rejected_' || old.kind;
    update tallies set n = n + 1 where name = 'rejected_' || new.kind;
end;

update meta set value = '5' where key = 'schema_version';
