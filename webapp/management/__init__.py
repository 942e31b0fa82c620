"""The management API (/v1/admin), its schemas, the domain services behind it and the CLI."""
