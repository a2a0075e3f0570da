-- A rescan of an unchanged tree writes nothing per file. A run whose walk of an INPUT folder
-- completes records the folder here, and from then on every input under it that the walk found
-- is the run's without a `run_inputs` row. Inputs under the folder that the walk did not find
-- (deleted, moved, no longer usable) are marked `missing` instead, which is rare. `run_inputs`
-- keeps the rest: inputs recorded during the scan (new or changed content, found again after
-- being missing, not yet planned in the run's OUT) and inputs named one by one.

-- The run (a live run, or the last completed walk of the folder into that OUT, kept so that
-- `ledger show` can say when an input was last seen and a later rescan into the same OUT knows
-- which inputs are planned there) and the folder; `lo` and `hi` bound the paths below it (the
-- folder's bytes followed by '/' and by '0', the byte after '/').
--
-- Once a walk is complete every present input under its folder has a plan in its OUT (found
-- ones were planned, the others marked missing), so an input not recorded since
-- (`last_seen <= walked_at`) and not missing has one: no lookup of its plan per file.
create table run_roots (
    run       integer not null references runs (id) on delete cascade,
    lo        blob    not null,
    hi        blob    not null,
    out_root  blob    not null,
    walked_at text    not null,
    primary key (run, lo)
) without rowid;
create index run_roots_out on run_roots (out_root, lo);
create index run_roots_lo on run_roots (lo);

-- The run whose complete walk of a folder holding this input did not find it; null while it is
-- there. Cleared when a run finds the file again.
alter table inputs add column missing integer;
-- The few missing inputs, so the present ones under a folder are counted from the path index
-- alone (all of them, less these).
create index inputs_missing on inputs (path) where missing is not null;

-- Inputs with when they were last seen: by the run that recorded them, or by a later complete
-- walk of a folder holding them that found them there (such a walk writes nothing per input).
create view inputs_seen as
select p.path, p.size, p.mtime_ns, p.image_id, p.missing,
       coalesce((select w.run from run_roots as w
                 where p.missing is null and w.lo < p.path and p.path < w.hi
                   and w.walked_at > p.last_seen
                 order by w.walked_at desc limit 1), p.last_run) as last_run,
       max(p.last_seen, coalesce((select max(w.walked_at) from run_roots as w
                                  where p.missing is null and w.lo < p.path and p.path < w.hi),
                                 '')) as last_seen
from inputs as p;

update meta set value = '8' where key = 'schema_version';
