"""The RQ training worker: the process (`process`), its job (`jobs`), what it preloads."""
