-- A first scan inserts every new image's sha256 at a random place in the unique index, and
-- that index, rewritten page by page at each commit, was most of a scan's ledger writes. The
-- sha256 is now stored as its 32 bytes (the index half the size, compared with one memcmp,
-- no per-row `glob` check), and the two per-row insert triggers are gone: the store's one
-- statement that inserts images and its one statement that inserts inputs add what they
-- inserted to `status_counts` and `tallies` themselves (a trigger per row cost as much as the
-- row). Updates and deletes keep their triggers.
--
-- `images` is rebuilt in place. `inputs.image_id` references it, and the foreign keys are on
-- inside this transaction, so they are deferred to the commit: dropping the old table orphans
-- every input for a moment, and inserting the same ids into the new one settles them again.

pragma defer_foreign_keys = on;

drop trigger images_count_insert;
drop trigger images_count_delete;
drop trigger images_count_update;
drop trigger images_tally_status;
drop trigger images_tally_credits;
drop trigger inputs_tally_insert;

create table images_v8 as select * from images;
drop table images;

create table images (
    id             integer primary key,
    -- The content's SHA-256, 32 bytes.
    sha256         blob    not null unique check (length(sha256) = 32),
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
    -- The result's SHA-256 as 64 hex digits (never searched).
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

insert into images (id, sha256, size, format, width, height, status, claimed_by, job_id,
                    output_url, output_path, output_sha256, output_size, attempts, repeat_uploads,
                    error_code, error_message, retryable, credits_states, need_credits, p_credits,
                    s_credits, raw_response, created_at, updated_at)
select id, unhex(sha256), size, format, width, height, status, claimed_by, job_id,
       output_url, output_path, output_sha256, output_size, attempts, repeat_uploads,
       error_code, error_message, retryable, credits_states, need_credits, p_credits,
       s_credits, raw_response, created_at, updated_at
from images_v8
order by id;
drop table images_v8;

create index images_status on images (status);
create index images_unsettled on images (status, sha256) where status in ('uploading', 'processing', 'failed');
create index images_job_id on images (job_id) where job_id is not null;
create index images_claimed_by on images (claimed_by) where claimed_by is not null;

create trigger images_count_delete after delete on images
begin
    update status_counts set n = n - 1 where status = old.status;
end;

create trigger images_count_update after update of status on images
when old.status <> new.status
begin
    update status_counts set n = n - 1 where status = old.status;
    update status_counts set n = n + 1 where status = new.status;
end;

create trigger images_tally_status after update of status on images
when old.status <> new.status
begin
    update tallies set n = n - (select count(*) from inputs where image_id = new.id)
    where name = 'inputs_' || old.status;
    update tallies set n = n + (select count(*) from inputs where image_id = new.id)
    where name = 'inputs_' || new.status;
end;

create trigger images_tally_credits after update of status, p_credits, s_credits, need_credits on images
begin
    update tallies set n = n - coalesce(old.p_credits, 0) where name = 'p_credits' and old.status = 'done';
    update tallies set n = n - coalesce(old.s_credits, 0) where name = 's_credits' and old.status = 'done';
    update tallies set n = n - coalesce(old.need_credits, 0) where name = 'need_credits' and old.status = 'done';
    update tallies set n = n + coalesce(new.p_credits, 0) where name = 'p_credits' and new.status = 'done';
    update tallies set n = n + coalesce(new.s_credits, 0) where name = 's_credits' and new.status = 'done';
    update tallies set n = n + coalesce(new.need_credits, 0) where name = 'need_credits' and new.status = 'done';
end;

-- The rebuild moved no image between statuses; recounted anyway, so the counts start exact.
update status_counts set n = (select count(*) from images where images.status = status_counts.status);

-- The scan's batches travel through `scan_batch`; its sha256 is the bytes too.
drop table scan_batch;
create table scan_batch (
    path     blob    not null,
    -- Size, mtime, content and format: set for hashed inputs, null for unchanged ones (the
    -- ledger has them).
    size     integer,
    mtime_ns integer,
    sha256   blob,
    format   text,
    planned  blob    not null
);

update meta set value = '9' where key = 'schema_version';
