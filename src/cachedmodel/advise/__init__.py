"""`cachedmodel-advise`: how big a Redis cache should be, measured on a real redis-server.

A request trace (recorded keys, request bodies keyed with the real decorator configuration, or a
synthetic Zipf workload) is replayed against a redis-server started for each maxmemory x eviction
policy; hits are counted and INFO is read. Beside each measurement, exact LRU and LFU simulations at
the same entry capacity show how far Redis's sampled eviction is from the ideal. See docs/advise.md.

Modules, one job each: units (redis.conf sizes), traces (reading and synthesising workloads),
offline (keying request bodies with a rest-model-service configuration), simulate (exact LRU/LFU),
replay (the real-Redis replay, raw RESP), report (advice.json, advice.md, hit_ratio.png), cli.
"""
