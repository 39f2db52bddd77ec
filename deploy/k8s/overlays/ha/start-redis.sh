#!/bin/sh
# Starts Redis as the primary only when no Sentinel knows one and this is pod 0; otherwise
# as a replica of the primary the Sentinels name, so a pod restarted after a failover
# never comes back as a second primary.
set -eu
# A primary that has heard from no replica for 2 to 3 s stops taking writes (NOREPLICAS;
# Redis counts the lag in whole seconds, replicas acknowledge every second), before the
# Sentinels may promote a replica (down-after-milliseconds 5 s): a worker partitioned
# together with an old primary gets no grant there once another primary can exist. (1 s
# would refuse writes now and then in normal operation.)
ha="--min-replicas-to-write 1 --min-replicas-max-lag 2"
primary=""
for i in 0 1 2; do
  primary=$(redis-cli -h "j4-sentinel-$i.j4-sentinel" -p 26379 --no-auth-warning \
    sentinel get-master-addr-by-name j4main 2>/dev/null | head -n 1 || true)
  [ -n "$primary" ] && break
done
me=$(hostname -i)
if [ -z "$primary" ] && [ "$(hostname)" = "j4-redis-0" ]; then
  exec redis-server /etc/redis/redis.conf $ha --masteruser j4-replica --masterauth "$REPLICA_PASSWORD" --replica-announce-ip "$me"
fi
[ -n "$primary" ] || primary="j4-redis-0.j4-redis"
if [ "$primary" = "$me" ]; then
  exec redis-server /etc/redis/redis.conf $ha --masteruser j4-replica --masterauth "$REPLICA_PASSWORD" --replica-announce-ip "$me"
fi
exec redis-server /etc/redis/redis.conf $ha --masteruser j4-replica --masterauth "$REPLICA_PASSWORD" \
  --replica-announce-ip "$me" --replicaof "$primary" 6379
