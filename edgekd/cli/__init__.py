"""The Typer CLI: one module per command; commands turn options into configs and call the library."""
