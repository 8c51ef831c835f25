"""The ``searchlib`` command line (click). Thin: parses options, calls the library, prints."""
