"""Pipeline stages: thin wrappers over the library, one function per CLI command."""
