"""First-party temporec plugins, registered through entry points like any other."""
