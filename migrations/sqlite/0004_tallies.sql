-- Inputs by their image's outcome and the credits of done images, kept by triggers like
-- status_counts, so `ledger status` reads a handful of rows at any ledger size.

create table tallies (
    name text    not null primary key,
    n    integer not null default 0
) without rowid;

insert into tallies (name, n) values
    ('inputs', (select count(*) from inputs)),
    ('inputs_done', (select count(*) from inputs as p join images as i on i.id = p.image_id where i.status = 'done')),
    ('inputs_failed', (select count(*) from inputs as p join images as i on i.id = p.image_id where i.status = 'failed')),
    ('p_credits', (select coalesce(sum(p_credits), 0) from images where status = 'done')),
    ('s_credits', (select coalesce(sum(s_credits), 0) from images where status = 'done')),
    ('need_credits', (select coalesce(sum(need_credits), 0) from images where status = 'done'));

-- 'inputs_' || status names a row only for done and failed; other statuses update nothing.
create trigger inputs_tally_insert after insert on inputs
begin
    update tallies set n = n + 1 where name = 'inputs';
    update tallies set n = n + 1
    where name = 'inputs_' || (select status from images where id = new.image_id);
end;

create trigger inputs_tally_delete after delete on inputs
begin
    update tallies set n = n - 1 where name = 'inputs';
    update tallies set n = n - 1
    where name = 'inputs_' || (select status from images where id = old.image_id);
end;

create trigger inputs_tally_move after update of image_id on inputs
when old.image_id <> new.image_id
begin
    update tallies set n = n - 1
    where name = 'inputs_' || (select status from images where id = old.image_id);
    update tallies set n = n + 1
    where name = 'inputs_' || (select status from images where id = new.image_id);
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

update meta set value = '4' where key = 'schema_version';
