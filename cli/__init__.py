"""The `pare` command line: the one package allowed to import both the service (app) and the workers."""
