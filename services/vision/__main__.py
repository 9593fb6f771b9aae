"""``python -m services.vision``: run the vision server."""

from services.vision.server import main

if __name__ == "__main__":
    main()
