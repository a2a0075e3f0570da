-- The eraser ledger: what every input file holds (by content hash) and how far each image got.
--
-- Conventions (kept by the store crate, the only writer):
--   * timestamps are UTC text, fixed width 'YYYY-MM-DDTHH:MM:SS.ffffffZ', so they sort as text;
--   * sha256 values are 64 lower-case hex digits;
--   * paths are blobs holding the raw OS bytes, so names that are not UTF-8 round-trip.

-- One row per `eraser run`: the live-run registry `recover` consults before taking back a claim.
create table runs (
    id           integer primary key,
    host         text    not null,
    pid          integer not null,
    command      text    not null,
    started_at   text    not null,
    heartbeat_at text    not null,
    finished_at  text,
    -- How the run ended (chosen by the cli), and its summary as JSON text.
    outcome      text,
    summary      text
);

-- One row per unique content. `id` is a surrogate key in insertion order: it keeps the tables and
-- indexes that grow with every new image append-only, so the sha256 index is the only one a new
-- image lands in at a random place.
create table images (
    id             integer primary key,
    sha256         text    not null unique
                           check (length(sha256) = 64 and sha256 not glob '*[^0-9a-f]*'),
    size           integer not null check (size >= 0),
    format         text    not null,
    width          integer,
    height         integer,
    status         text    not null default 'new'
                           check (status in ('new', 'uploading', 'processing', 'done', 'failed')),
    -- The run holding the claim; set only while `uploading`.
    claimed_by     integer references runs (id) on delete set null
                           check (claimed_by is null or status = 'uploading'),
    job_id         text,
    output_url     text,
    output_path    blob,
    output_sha256  text,
    output_size    integer,
    -- Uploads sent (accepted by the service, or failed while sending).
    attempts       integer not null default 0,
    -- Claims taken back from dead runs: each is a possible repeat upload.
    repeat_uploads integer not null default 0,
    error_code     integer,
    error_message  text,
    retryable      integer check (retryable in (0, 1)),
    credits_states integer,
    need_credits   integer,
    p_credits      integer,
    s_credits      integer,
    raw_response   text,
    created_at     text    not null,
    updated_at     text    not null
);
-- Claims (oldest first) and failure groups.
create index images_status on images (status);
-- Lists of the small statuses, paged by sha256 (`new` and `done` lists walk the sha256 index).
create index images_unsettled on images (status, sha256) where status in ('uploading', 'processing', 'failed');
create index images_job_id on images (job_id) where job_id is not null;
create index images_claimed_by on images (claimed_by) where claimed_by is not null;

-- One row per input file path.
create table inputs (
    path           blob    not null primary key,
    size           integer not null check (size >= 0),
    mtime_ns       integer not null,
    -- The content this path held when last seen.
    image_id       integer not null references images (id),
    -- Where this input's result goes; once recorded it is kept (stable across runs).
    planned_output blob,
    -- Set once the result was written (or copied) for this input.
    output_path    blob,
    last_run       integer references runs (id) on delete set null,
    last_seen      text    not null
);
-- Inputs of an image (claims, `ledger show`); new images append here too.
create index inputs_image on inputs (image_id);
-- Inputs of a run, paged by path.
create index inputs_last_run on inputs (last_run, path);
create index inputs_planned_output on inputs (planned_output) where planned_output is not null;

-- Small facts about the ledger itself: `schema_version`, `product_serial`.
create table meta (
    key   text not null primary key,
    value text not null
) without rowid;

insert into meta (key, value) values ('schema_version', '1');
