"""``python -m scalelab``: the ``scalelab`` command."""

from scalelab.cli.main import main

if __name__ == "__main__":
    main()
