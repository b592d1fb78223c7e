"""Chat-only helpers that grew out of bot/conversation.py: presets offered as buttons, photo sets."""
