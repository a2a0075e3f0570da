-- Since 0003 a run's inputs are found through run_inputs; nothing reads inputs by last_run any
-- more, and the index cost a delete and an insert on every rescan of every input.
drop index inputs_last_run;

update meta set value = '6' where key = 'schema_version';
