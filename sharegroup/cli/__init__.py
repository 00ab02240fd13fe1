"""The ``sharegroup`` command line: the top layer, which may import every other package
(``docs/architecture.md``). ``sharegroup.cli.main`` builds the parser and runs the commands."""
