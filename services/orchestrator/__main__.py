"""``python -m services.orchestrator``: run the orchestrator."""

from services.orchestrator.server import main

if __name__ == "__main__":
    main()
