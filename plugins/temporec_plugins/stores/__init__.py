"""First-party event stores: ``sqlite`` (embedded, one file) and ``redis`` (shared by replicas)."""
