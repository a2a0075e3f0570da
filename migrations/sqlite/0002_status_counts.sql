-- Images by status, kept equal to a recount by triggers, so `ledger status` never scans.

create table status_counts (
    status text    not null primary key
                   check (status in ('new', 'uploading', 'processing', 'done', 'failed')),
    n      integer not null default 0 check (n >= 0)
) without rowid;

insert into status_counts (status, n)
select s.column1, (select count(*) from images i where i.status = s.column1)
from (values ('new'), ('uploading'), ('processing'), ('done'), ('failed')) as s;

create trigger images_count_insert after insert on images
begin
    update status_counts set n = n + 1 where status = new.status;
end;

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

update meta set value = '2' where key = 'schema_version';
