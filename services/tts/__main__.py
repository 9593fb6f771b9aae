"""``python -m services.tts``: run the TTS server."""

from services.tts.server import main

if __name__ == "__main__":
    main()
