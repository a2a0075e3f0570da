-- Which run's upload made each image's job, and when its result came: `ledger status` tells
-- per host the jobs in flight and the images done today, as on the shared ledger. Earlier jobs
-- have neither (they count under no host).
alter table images add column job_run integer references runs (id) on delete set null;
alter table images add column done_at text;
create index images_done_at on images (done_at) where done_at is not null;
create index images_in_flight_by_run on images (job_run) where status = 'processing';
