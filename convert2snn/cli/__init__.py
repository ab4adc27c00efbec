"""The command line: `main` (verbs and parser) and `data` (data files, model files, option flags)."""
