// The J4 library: what a user's own scenario package depends on. It brings the scenario API
// (J4Scenario), the pure core it speaks in (J4Core: definitions, JSON values) and the whole
// command line (J4CLI). The cluster's internals (J4Runtime: worker, supervisor, the Redis
// protocol's typed clients) are imported `internal`, so they are not part of it.
@_exported import J4Core
@_exported import J4Scenario
