"""The Typer command-line interface: thin commands that parse options, call the library, render."""
