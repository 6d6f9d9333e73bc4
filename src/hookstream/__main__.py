"""`python -m hookstream` runs the command line."""

from hookstream.cli import main

if __name__ == "__main__":
    main()
