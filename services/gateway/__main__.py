"""``python -m services.gateway``: run the HTTP and WebSocket gateway."""

from services.gateway.server import main

if __name__ == "__main__":
    main()
