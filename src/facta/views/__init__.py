"""Views: incremental, mergeable aggregates over the log."""
