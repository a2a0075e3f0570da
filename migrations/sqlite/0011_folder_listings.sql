-- A rescan looked every file up in the ledger by path (about 2 µs of CPU each, as long as the
-- walk itself). A folder's listing (its files' names, sizes and mtimes, as a digest) is now
-- kept per OUT with the state of the inputs it was taken in; a later walk into the same OUT
-- that lists the folder the same way, in that same state, takes every file of it as the ledger
-- holds it without a lookup.
--
-- The state is the `inputs_changes` tally: raised in every transaction that adds, deletes or
-- changes an input (its path, size, mtime, image, missing mark or last-seen time). Updates and
-- deletes raise it here, by trigger; the store's one statement that inserts inputs raises it
-- itself. A listing is kept only by a run that made every change since its scan began itself.
-- A migration that rewrites `inputs` must raise it too.

insert into tallies (name, n) values ('inputs_changes', 0);

create table listings (
    out_root blob    not null,
    folder   blob    not null,
    -- SHA-256 of the folder's files, sorted by name: name, size, mtime (see the cli's walk).
    digest   blob    not null,
    files    integer not null,
    state    integer not null,
    primary key (out_root, folder)
) without rowid;

create trigger listings_input_delete after delete on inputs
begin
    update tallies set n = n + 1 where name = 'inputs_changes';
end;

create trigger listings_input_update
after update of path, size, mtime_ns, image_id, missing, last_seen on inputs
when old.path is not new.path
  or old.size is not new.size
  or old.mtime_ns is not new.mtime_ns
  or old.image_id is not new.image_id
  or old.missing is not new.missing
  or old.last_seen is not new.last_seen
begin
    update tallies set n = n + 1 where name = 'inputs_changes';
end;

update meta set value = '11' where key = 'schema_version';
