// The J4 library: what a user's own scenario package depends on. It brings the scenario API
// (J4Runtime), the pure core (J4Core) and the whole command line (J4CLI).
@_exported import J4Core
@_exported import J4Runtime
