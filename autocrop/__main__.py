"""`python -m autocrop` runs the command-line tool."""

from autocrop.launch import main

if __name__ == "__main__":
    main()
