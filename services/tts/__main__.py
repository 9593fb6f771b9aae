"""``python -m services.tts``: run the TTS server."""

from services.tts.server import main

main()
