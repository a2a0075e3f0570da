-- One mechanism per concern.
--
-- * Counters: one table, `counters`, kept by triggers alone (on insert, update and delete of
--   images, inputs and rejected files). It replaces `status_counts` and `tallies`, which were
--   kept partly by triggers and partly by the store's own statements.
-- * The version of the inputs: the counter `inputs_version`, raised by those triggers whenever
--   an input is added, deleted, moved to another image or marked missing, or changes its size
--   or mtime. Kept folder listings carry the version they were taken at (`listings.inputs_version`).
--   The `changes` tally and the end-of-run count kept under it (0010) go.
-- * A run's inputs: the present inputs under its roots. `run_roots` holds a row per folder and
--   per file a run was given, registered when its walk starts (`began_at`) and stamped with
--   `walked_at` once the walk has gone through all of it. `run_inputs` goes.
-- * Gone as well: the `scan_batch` scratch table (batches travel as JSON arrays),
--   `images.width` and `images.height` (never written) and `meta.schema_version`
--   (`_sqlx_migrations` says which migrations ran). The `inputs_seen` view is defined again
--   over the new roots.

-- Triggers of 0002, 0004, 0005, 0009, 0010 and 0011.
drop trigger images_count_delete;
drop trigger images_count_update;
drop trigger images_tally_status;
drop trigger images_tally_credits;
drop trigger inputs_tally_delete;
drop trigger inputs_tally_move;
drop trigger rejected_tally_insert;
drop trigger rejected_tally_delete;
drop trigger rejected_tally_kind;
drop trigger changes_input_delete;
drop trigger changes_input_update;
drop trigger changes_image_status;
drop trigger listings_input_delete;
drop trigger listings_input_update;

-- The counters, recounted once from the rows.
create table counters (
    name text    not null primary key,
    n    integer not null default 0
) without rowid;

insert into counters (name, n)
select 'images_' || s.column1, (select count(*) from images as i where i.status = s.column1)
from (values ('new'), ('uploading'), ('processing'), ('done'), ('failed')) as s;
insert into counters (name, n) values
    ('inputs', (select count(*) from inputs)),
    ('inputs_done', (select count(*) from inputs as p join images as i on i.id = p.image_id where i.status = 'done')),
    ('inputs_failed', (select count(*) from inputs as p join images as i on i.id = p.image_id where i.status = 'failed')),
    ('rejected_skipped', (select count(*) from rejected_inputs where kind = 'skipped')),
    ('rejected_error', (select count(*) from rejected_inputs where kind = 'error')),
    ('p_credits', (select coalesce(sum(p_credits), 0) from images where status = 'done')),
    ('s_credits', (select coalesce(sum(s_credits), 0) from images where status = 'done')),
    ('need_credits', (select coalesce(sum(need_credits), 0) from images where status = 'done')),
    ('inputs_version', 0);

drop table status_counts;
drop table tallies;

-- Images by status; the inputs of an image that changes status move with it; credits of done
-- images. 'inputs_' || status names a counter only for done and failed.
create trigger images_counted_insert after insert on images
begin
    update counters set n = n + 1 where name = 'images_' || new.status;
    update counters
    set n = n + case name when 'p_credits' then coalesce(new.p_credits, 0)
                          when 's_credits' then coalesce(new.s_credits, 0)
                          else coalesce(new.need_credits, 0) end
    where new.status = 'done' and name in ('p_credits', 's_credits', 'need_credits');
end;

create trigger images_counted_delete after delete on images
begin
    update counters set n = n - 1 where name = 'images_' || old.status;
    update counters
    set n = n - case name when 'p_credits' then coalesce(old.p_credits, 0)
                          when 's_credits' then coalesce(old.s_credits, 0)
                          else coalesce(old.need_credits, 0) end
    where old.status = 'done' and name in ('p_credits', 's_credits', 'need_credits');
end;

create trigger images_counted_status after update of status on images
when old.status <> new.status
begin
    update counters set n = n - 1 where name = 'images_' || old.status;
    update counters set n = n + 1 where name = 'images_' || new.status;
    update counters set n = n - (select count(*) from inputs where image_id = new.id)
    where name = 'inputs_' || old.status;
    update counters set n = n + (select count(*) from inputs where image_id = new.id)
    where name = 'inputs_' || new.status;
end;

create trigger images_counted_credits
after update of status, p_credits, s_credits, need_credits on images
begin
    update counters
    set n = n - case name when 'p_credits' then coalesce(old.p_credits, 0)
                          when 's_credits' then coalesce(old.s_credits, 0)
                          else coalesce(old.need_credits, 0) end
    where old.status = 'done' and name in ('p_credits', 's_credits', 'need_credits');
    update counters
    set n = n + case name when 'p_credits' then coalesce(new.p_credits, 0)
                          when 's_credits' then coalesce(new.s_credits, 0)
                          else coalesce(new.need_credits, 0) end
    where new.status = 'done' and name in ('p_credits', 's_credits', 'need_credits');
end;

-- Inputs, those of done and failed images, and the version of the inputs.
create trigger inputs_counted_insert after insert on inputs
begin
    update counters set n = n + 1
    where name in ('inputs', 'inputs_version',
                   'inputs_' || (select status from images where id = new.image_id));
end;

create trigger inputs_counted_delete after delete on inputs
begin
    update counters set n = n - 1
    where name in ('inputs', 'inputs_' || (select status from images where id = old.image_id));
    update counters set n = n + 1 where name = 'inputs_version';
end;

create trigger inputs_counted_move after update of image_id on inputs
when old.image_id <> new.image_id
begin
    update counters set n = n - 1
    where name = 'inputs_' || (select status from images where id = old.image_id);
    update counters set n = n + 1
    where name = 'inputs_' || (select status from images where id = new.image_id);
end;

create trigger inputs_version_update
after update of path, size, mtime_ns, image_id, missing on inputs
when old.path is not new.path
  or old.size is not new.size
  or old.mtime_ns is not new.mtime_ns
  or old.image_id is not new.image_id
  or old.missing is not new.missing
begin
    update counters set n = n + 1 where name = 'inputs_version';
end;

-- Files found but not used, by kind.
create trigger rejected_counted_insert after insert on rejected_inputs
begin
    update counters set n = n + 1 where name = 'rejected_' || new.kind;
end;

create trigger rejected_counted_delete after delete on rejected_inputs
begin
    update counters set n = n - 1 where name = 'rejected_' || old.kind;
end;

create trigger rejected_counted_kind after update of kind on rejected_inputs
when old.kind <> new.kind
begin
    update counters set n = n - 1 where name = 'rejected_' || old.kind;
    update counters set n = n + 1 where name = 'rejected_' || new.kind;
end;

-- Kept listings carry the version of the inputs; those kept under the old tally say nothing.
delete from listings;
alter table listings rename column state to inputs_version;

-- The view reads run_roots, rebuilt below.
drop view inputs_seen;

-- A run's roots. Rows of finished walks are kept (they say when their inputs were last seen);
-- rows of runs that did not get that far are dropped.
create table run_roots_v12 (
    run       integer not null references runs (id) on delete cascade,
    -- The root's paths are those p with lo <= p < hi: a folder's bytes followed by '/' and by
    -- '0' (the byte after '/'), or a file's bytes and the same followed by a zero byte.
    lo        blob    not null,
    hi        blob    not null,
    -- 1 for a folder, 0 for a file (a file given by name is recorded at every run that finds
    -- it, so only folders say when their inputs were last seen).
    folder    integer not null check (folder in (0, 1)),
    began_at  text    not null,
    walked_at text,
    primary key (run, lo)
) without rowid;
insert into run_roots_v12 (run, lo, hi, folder, began_at, walked_at)
select run, lo, hi, 1, walked_at, walked_at from run_roots;
drop table run_roots;
alter table run_roots_v12 rename to run_roots;
-- Folders holding a path (when it was last seen).
create index run_roots_folder on run_roots (lo) where folder = 1;

-- Inputs with when they were last seen: by the run that last recorded them, or later by a
-- finished walk of a folder holding them (a walk writes nothing per input it finds as the
-- ledger holds it). A file given by name is recorded at every run that finds it.
create view inputs_seen as
select p.path, p.size, p.mtime_ns, p.image_id, p.missing,
       coalesce((select w.run from run_roots as w
                 where p.missing is null and w.folder = 1 and w.lo <= p.path and p.path < w.hi
                   and w.walked_at > p.last_seen
                 order by w.walked_at desc limit 1), p.last_run) as last_run,
       max(p.last_seen, coalesce((select max(w.walked_at) from run_roots as w
                                  where p.missing is null and w.folder = 1
                                    and w.lo <= p.path and p.path < w.hi), '')) as last_seen
from inputs as p;

drop table run_inputs;
drop table scan_batch;

alter table runs drop column progress_key;
alter table runs drop column progress;
alter table images drop column width;
alter table images drop column height;

delete from meta where key = 'schema_version';
