-- The shared ledger: the same tables as the embedded one (migrations/sqlite, as of 0012), for
-- several machines at once.
--
-- Differences from the SQLite ledger, and why:
-- * `machines`: inputs, their outputs, listings and files not used are per machine (a path
--   means a file on one machine only); runs belong to a machine.
-- * Times are the database's own (`now()`), never a machine's: liveness (a run's heartbeat
--   against its lease) is judged in one clock, whatever the machines' clocks say.
-- * Counters are sharded: every writer adds to its own row (`shard`, from its backend pid), so
--   no counter row serialises the fleet; a count is the sum of its shards. They are kept by
--   statement-level triggers (one row per counter and statement, however many rows changed).
-- * The version of a machine's inputs lives on its `machines` row (raised by the triggers on
--   its inputs only): machines never wait on each other for it.
-- * A done image's stored result is a file on one machine (`output_machine`).

create table machines (
    id             bigint generated always as identity primary key,
    name           text   not null unique,
    -- Raised at every change to which inputs this machine has and what they hold.
    inputs_version bigint not null default 0
);

create table runs (
    id           bigint      generated always as identity primary key,
    machine      bigint      not null references machines (id),
    pid          bigint      not null,
    command      text        not null,
    out_root     bytea       not null,
    started_at   timestamptz not null default now(),
    heartbeat_at timestamptz not null default now(),
    finished_at  timestamptz,
    outcome      text,
    summary      text
);
create index runs_unfinished on runs (machine) where finished_at is null;

create table images (
    id             bigint      generated always as identity primary key,
    sha256         bytea       not null unique check (length(sha256) = 32),
    size           bigint      not null check (size >= 0),
    format         text        not null,
    status         text        not null default 'new'
                               check (status in ('new', 'uploading', 'processing', 'done', 'failed')),
    -- The run holding the claim; set only while `uploading`.
    claimed_by     bigint      references runs (id) on delete set null
                               check (claimed_by is null or status = 'uploading'),
    job_id         text,
    -- The run whose upload the service accepted (jobs in flight and done, per machine).
    job_run        bigint      references runs (id) on delete set null,
    output_url     text,
    -- The result as first stored, on `output_machine`.
    output_path    bytea,
    output_machine bigint      references machines (id),
    output_sha256  text,
    output_size    bigint,
    attempts       integer     not null default 0,
    repeat_uploads integer     not null default 0,
    error_code     bigint,
    error_message  text,
    retryable      boolean,
    credits_states bigint,
    need_credits   bigint,
    p_credits      bigint,
    s_credits      bigint,
    raw_response   text,
    done_at        timestamptz,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now()
);
-- Claims (oldest first) and failure groups.
create index images_status on images (status, id);
create index images_unsettled on images (status, sha256) where status in ('uploading', 'processing', 'failed');
create index images_job_id on images (job_id) where job_id is not null;
create index images_claimed_by on images (claimed_by) where claimed_by is not null;
create index images_done_at on images (done_at) where done_at is not null;

create table inputs (
    -- The row's number, for a walk's set of inputs found (a bit per input).
    id        bigint      generated always as identity unique,
    machine   bigint      not null references machines (id),
    path      bytea       not null,
    size      bigint      not null check (size >= 0),
    mtime_ns  bigint      not null,
    image_id  bigint      not null references images (id),
    last_run  bigint      references runs (id) on delete set null,
    last_seen timestamptz not null default now(),
    -- The run whose complete walk of a root holding this input did not find it.
    missing   bigint,
    primary key (machine, path)
);
create index inputs_image on inputs (image_id);
create index inputs_missing on inputs (machine, path) where missing is not null;

create table placements (
    machine    bigint      not null,
    path       bytea       not null,
    out_root   bytea       not null,
    planned    bytea       not null,
    written    bytea,
    updated_at timestamptz not null default now(),
    primary key (machine, path, out_root),
    foreign key (machine, path) references inputs (machine, path) on delete cascade
);
create index placements_planned on placements (machine, planned);

create table run_roots (
    run       bigint      not null references runs (id) on delete cascade,
    lo        bytea       not null,
    hi        bytea       not null,
    folder    boolean     not null,
    began_at  timestamptz not null default now(),
    walked_at timestamptz,
    primary key (run, lo)
);
create index run_roots_folder on run_roots (lo) where folder;

create table listings (
    machine        bigint not null references machines (id),
    out_root       bytea  not null,
    folder         bytea  not null,
    digest         bytea  not null,
    files          bigint not null,
    inputs_version bigint not null,
    primary key (machine, out_root, folder)
);

create table rejected_inputs (
    machine bigint      not null references machines (id),
    path    bytea       not null,
    kind    text        not null check (kind in ('skipped', 'error')),
    reason  text        not null,
    run     bigint      not null,
    seen_at timestamptz not null default now(),
    primary key (machine, path)
);

create table meta (
    key   text not null primary key,
    value text not null
);

create table counters (
    name  text   not null,
    shard integer not null,
    n     bigint not null default 0,
    primary key (name, shard)
);

-- Inputs with when they were last seen (as in the SQLite ledger).
create view inputs_seen as
select p.id, p.machine, p.path, p.size, p.mtime_ns, p.image_id, p.missing,
       coalesce((select w.run from run_roots as w
                 where p.missing is null and w.folder and w.lo <= p.path and p.path < w.hi
                   and w.walked_at > p.last_seen
                   and w.run in (select r.id from runs as r where r.machine = p.machine)
                 order by w.walked_at desc limit 1), p.last_run) as last_run,
       greatest(p.last_seen, (select max(w.walked_at) from run_roots as w
                              where p.missing is null and w.folder and w.lo <= p.path
                                and p.path < w.hi
                                and w.run in (select r.id from runs as r
                                              where r.machine = p.machine))) as last_seen
from inputs as p;

-- Adds `deltas` (name, n) to this writer's shard of each counter, in name order (so two
-- writers that share a shard take its rows in the same order).
create function count_deltas(deltas jsonb) returns void language sql as $$
    insert into counters (name, shard, n)
    select d.key, pg_backend_pid() % 16, sum(d.value::bigint)
    from jsonb_each_text(deltas) as d
    group by d.key
    having sum(d.value::bigint) <> 0
    order by d.key
    on conflict (name, shard) do update set n = counters.n + excluded.n;
$$;

-- Raises the version of the inputs of each machine by how many of its inputs changed.
create function raise_versions(changed jsonb) returns void language sql as $$
    update machines as m set inputs_version = m.inputs_version + c.value::bigint
    from jsonb_each_text(changed) as c
    where m.id = c.key::bigint;
$$;

create function images_inserted() returns trigger language plpgsql as $$
begin
    perform count_deltas(coalesce((
        select jsonb_object_agg(name, n) from (
            select 'images_' || status as name, count(*) as n from new_rows group by status
            union all
            select 'p_credits', coalesce(sum(p_credits), 0) from new_rows where status = 'done'
            union all
            select 's_credits', coalesce(sum(s_credits), 0) from new_rows where status = 'done'
            union all
            select 'need_credits', coalesce(sum(need_credits), 0) from new_rows where status = 'done'
        ) as d), '{}'));
    return null;
end $$;

create function images_deleted() returns trigger language plpgsql as $$
begin
    perform count_deltas(coalesce((
        select jsonb_object_agg(name, n) from (
            select 'images_' || status as name, -count(*) as n from old_rows group by status
            union all
            select 'p_credits', -coalesce(sum(p_credits), 0) from old_rows where status = 'done'
            union all
            select 's_credits', -coalesce(sum(s_credits), 0) from old_rows where status = 'done'
            union all
            select 'need_credits', -coalesce(sum(need_credits), 0) from old_rows where status = 'done'
        ) as d), '{}'));
    return null;
end $$;

create function images_updated() returns trigger language plpgsql as $$
begin
    perform count_deltas(coalesce((
        select jsonb_object_agg(name, n) from (
            select name, sum(n) as n from (
                -- Images by status, and the inputs of those that changed status with them.
                select 'images_' || o.status as name, -count(*) as n
                from old_rows as o join new_rows as x on x.id = o.id
                where o.status <> x.status group by o.status
                union all
                select 'images_' || x.status, count(*)
                from old_rows as o join new_rows as x on x.id = o.id
                where o.status <> x.status group by x.status
                union all
                select 'inputs_' || o.status, -count(p.id)
                from old_rows as o join new_rows as x on x.id = o.id
                join inputs as p on p.image_id = x.id
                where o.status <> x.status and o.status in ('done', 'failed') group by o.status
                union all
                select 'inputs_' || x.status, count(p.id)
                from old_rows as o join new_rows as x on x.id = o.id
                join inputs as p on p.image_id = x.id
                where o.status <> x.status and x.status in ('done', 'failed') group by x.status
                -- Credits of done images.
                union all
                select 'p_credits', coalesce(sum(case when x.status = 'done' then coalesce(x.p_credits, 0) else 0 end)
                                             - sum(case when o.status = 'done' then coalesce(o.p_credits, 0) else 0 end), 0)
                from old_rows as o join new_rows as x on x.id = o.id
                union all
                select 's_credits', coalesce(sum(case when x.status = 'done' then coalesce(x.s_credits, 0) else 0 end)
                                             - sum(case when o.status = 'done' then coalesce(o.s_credits, 0) else 0 end), 0)
                from old_rows as o join new_rows as x on x.id = o.id
                union all
                select 'need_credits', coalesce(sum(case when x.status = 'done' then coalesce(x.need_credits, 0) else 0 end)
                                                - sum(case when o.status = 'done' then coalesce(o.need_credits, 0) else 0 end), 0)
                from old_rows as o join new_rows as x on x.id = o.id
            ) as all_deltas group by name
        ) as d), '{}'));
    return null;
end $$;

create trigger images_counted_insert after insert on images
referencing new table as new_rows for each statement execute function images_inserted();
create trigger images_counted_delete after delete on images
referencing old table as old_rows for each statement execute function images_deleted();
create trigger images_counted_update after update on images
referencing old table as old_rows new table as new_rows
for each statement execute function images_updated();

create function inputs_inserted() returns trigger language plpgsql as $$
begin
    perform count_deltas(coalesce((
        select jsonb_object_agg(name, n) from (
            select 'inputs' as name, count(*) as n from new_rows
            union all
            select 'inputs_' || i.status, count(*) from new_rows as x
            join images as i on i.id = x.image_id
            where i.status in ('done', 'failed') group by i.status
        ) as d), '{}'));
    perform raise_versions(coalesce((
        select jsonb_object_agg(machine, n) from (
            select machine, count(*) as n from new_rows group by machine
        ) as c), '{}'));
    return null;
end $$;

create function inputs_deleted() returns trigger language plpgsql as $$
begin
    perform count_deltas(coalesce((
        select jsonb_object_agg(name, n) from (
            select 'inputs' as name, -count(*) as n from old_rows
            union all
            select 'inputs_' || i.status, -count(*) from old_rows as o
            join images as i on i.id = o.image_id
            where i.status in ('done', 'failed') group by i.status
        ) as d), '{}'));
    perform raise_versions(coalesce((
        select jsonb_object_agg(machine, n) from (
            select machine, count(*) as n from old_rows group by machine
        ) as c), '{}'));
    return null;
end $$;

create function inputs_updated() returns trigger language plpgsql as $$
begin
    perform count_deltas(coalesce((
        select jsonb_object_agg(name, n) from (
            select name, sum(n) as n from (
                select 'inputs_' || i.status as name, -count(*) as n
                from old_rows as o join new_rows as x on x.id = o.id
                join images as i on i.id = o.image_id
                where o.image_id <> x.image_id and i.status in ('done', 'failed') group by i.status
                union all
                select 'inputs_' || i.status, count(*)
                from old_rows as o join new_rows as x on x.id = o.id
                join images as i on i.id = x.image_id
                where o.image_id <> x.image_id and i.status in ('done', 'failed') group by i.status
            ) as all_deltas group by name
        ) as d), '{}'));
    perform raise_versions(coalesce((
        select jsonb_object_agg(machine, n) from (
            select x.machine, count(*) as n
            from old_rows as o join new_rows as x on x.id = o.id
            where o.path <> x.path or o.size <> x.size or o.mtime_ns <> x.mtime_ns
               or o.image_id <> x.image_id or o.missing is distinct from x.missing
            group by x.machine
        ) as c), '{}'));
    return null;
end $$;

create trigger inputs_counted_insert after insert on inputs
referencing new table as new_rows for each statement execute function inputs_inserted();
create trigger inputs_counted_delete after delete on inputs
referencing old table as old_rows for each statement execute function inputs_deleted();
create trigger inputs_counted_update after update on inputs
referencing old table as old_rows new table as new_rows
for each statement execute function inputs_updated();

create function rejected_inserted() returns trigger language plpgsql as $$
begin
    perform count_deltas(coalesce((
        select jsonb_object_agg('rejected_' || kind, n)
        from (select kind, count(*) as n from new_rows group by kind) as d), '{}'));
    return null;
end $$;

create function rejected_removed() returns trigger language plpgsql as $$
begin
    perform count_deltas(coalesce((
        select jsonb_object_agg('rejected_' || kind, -n)
        from (select kind, count(*) as n from old_rows group by kind) as d), '{}'));
    return null;
end $$;

create function rejected_updated() returns trigger language plpgsql as $$
begin
    perform count_deltas(coalesce((
        select jsonb_object_agg(name, n) from (
            select name, sum(n) as n from (
                select 'rejected_' || o.kind as name, -count(*) as n
                from old_rows as o join new_rows as x on x.machine = o.machine and x.path = o.path
                where o.kind <> x.kind group by o.kind
                union all
                select 'rejected_' || x.kind, count(*)
                from old_rows as o join new_rows as x on x.machine = o.machine and x.path = o.path
                where o.kind <> x.kind group by x.kind
            ) as all_deltas group by name
        ) as d), '{}'));
    return null;
end $$;

create trigger rejected_counted_insert after insert on rejected_inputs
referencing new table as new_rows for each statement execute function rejected_inserted();
create trigger rejected_counted_delete after delete on rejected_inputs
referencing old table as old_rows for each statement execute function rejected_removed();
create trigger rejected_counted_update after update on rejected_inputs
referencing old table as old_rows new table as new_rows
for each statement execute function rejected_updated();
