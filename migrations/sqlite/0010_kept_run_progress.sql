-- A run ends by counting its images by status: a pass over all its inputs, most of the time
-- of a rescan that finds nothing changed (0.15 s of 0.65 s at 200,000 files). The count is now
-- kept on the run with the ledger state it was taken in, and a later run over the same folders
-- reads it back when that state has not moved since.
--
-- The state is the `changes` tally: raised in every transaction that changes which inputs are
-- present, which image an input holds, or an image's status, i.e. everything such a count
-- reads. Updates and deletes raise it here, by trigger; the store's one statement that inserts
-- inputs raises it itself (per-row insert triggers were dropped in 0009 for their cost).
-- Inserting or deleting an image changes no count: only the inputs holding it are counted.
-- A migration that rewrites `inputs` or `images` must raise it too.

insert into tallies (name, n) values ('changes', 0);

-- The key the count was taken under (the `changes` tally, then the run's walked folders) and
-- the count as JSON; null until the run has counted its end.
alter table runs add column progress_key blob;
alter table runs add column progress text;

create trigger changes_input_delete after delete on inputs
begin
    update tallies set n = n + 1 where name = 'changes';
end;

create trigger changes_input_update after update of path, image_id, missing on inputs
when old.path is not new.path
  or old.image_id is not new.image_id
  or old.missing is not new.missing
begin
    update tallies set n = n + 1 where name = 'changes';
end;

create trigger changes_image_status after update of status on images
when old.status <> new.status
begin
    update tallies set n = n + 1 where name = 'changes';
end;

update meta set value = '10' where key = 'schema_version';
