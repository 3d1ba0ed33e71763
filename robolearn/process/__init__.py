"""Process settings every role applies at start: malloc behaviour, signal handling, library load order, device."""
