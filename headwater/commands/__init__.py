"""The commands each service contributes to ``headwater``; the domain code stays in the services."""
