"""Web plumbing: configuration, errors, security headers, rate limits, metrics, validation, OpenAPI."""
