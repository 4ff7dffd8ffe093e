#!/usr/bin/env python
from careline.cli import main

if __name__ == "__main__":
    main()
