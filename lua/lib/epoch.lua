-- server_epoch(): names the data set this script runs on: the run_id of the Redis server
-- process and its replication id (INFO server, INFO replication). A new process (a restart
-- in place, which may have lost its last writes: AOF fsynced every second, an older
-- snapshot) has a new run_id; a replica promoted by a failover is another process too, and
-- a server that took a full copy from another (an old primary resynced from the one that
-- replaced it) has a new replication id. Any of these is the barrier's signal that grants
-- the run's data rests on may be gone. nil when the server reports neither: callers refuse
-- to go on (J4_NO_EPOCH), since the barrier could not work there.
local function server_epoch()
  local id = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
  local replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
  if not id or not replid then return nil end
  return id .. ':' .. replid
end
