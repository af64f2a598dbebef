"""HTTP layer: routes, dependencies, and the one mapping from domain errors to problem+json."""
