-- Two runs over overlapping folders into different OUTs must each finish their own OUT, and a
-- rerun into a new OUT must fill it: an input's output is per OUT, and which inputs a run works
-- on is per run, not "whichever run saw the path last".

-- Each run's OUT (raw path bytes).
alter table runs add column out_root blob;

-- The inputs each run saw; emptied when the run finishes.
create table run_inputs (
    run  integer not null references runs (id) on delete cascade,
    path blob    not null references inputs (path) on delete cascade,
    primary key (run, path)
) without rowid;

-- Where an input's result goes in one OUT (planned once, then kept across reruns) and, once
-- written, where it is.
create table placements (
    path       blob not null references inputs (path) on delete cascade,
    out_root   blob not null,
    planned    blob not null,
    written    blob,
    updated_at text not null,
    primary key (path, out_root)
) without rowid;
create index placements_planned on placements (planned);

-- Plans made before this migration belong to an OUT nobody recorded: keep them under an empty root.
insert into placements (path, out_root, planned, written, updated_at)
select path, x'', planned_output, output_path, last_seen from inputs where planned_output is not null;

drop index inputs_planned_output;
alter table inputs drop column planned_output;
alter table inputs drop column output_path;

update meta set value = '3' where key = 'schema_version';
