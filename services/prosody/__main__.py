"""``python -m services.prosody``: run the prosody server."""

from services.prosody.server import main

if __name__ == "__main__":
    main()
